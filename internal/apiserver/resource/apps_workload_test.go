package resource

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// wlTestTemplate is a minimal valid pod template labelled app=web.
func wlTestTemplate() corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}},
	}
}

// wlTestSelector selects wlTestTemplate's pods.
func wlTestSelector() *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
}

// wlCreate runs the create path the generic server runs: defaults, then
// PrepareCreate, then Validate.
func wlCreate(r *Resource, obj runtime.Object) field.ErrorList {
	if r.Default != nil {
		r.Default(obj)
	}
	if r.PrepareCreate != nil {
		r.PrepareCreate(obj)
	}
	return r.Validate(obj)
}

// wlUpdate runs the update path: defaults, then ValidateUpdate.
func wlUpdate(r *Resource, obj, old runtime.Object) field.ErrorList {
	if r.Default != nil {
		r.Default(obj)
	}
	return r.ValidateUpdate(obj, old)
}

// wlAssertFields fails unless errs name exactly the given field paths.
func wlAssertFields(t *testing.T, errs field.ErrorList, want ...string) {
	t.Helper()
	got := make([]string, 0, len(errs))
	for _, e := range errs {
		got = append(got, e.Field)
	}
	slices.Sort(got)
	got = slices.Compact(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("error fields = %v, want %v\nerrors: %v", got, want, errs.ToAggregate())
	}
}

// wlAssertHas fails unless some error is at path with the given type.
func wlAssertHas(t *testing.T, errs field.ErrorList, typ field.ErrorType, path string) {
	t.Helper()
	for _, e := range errs {
		if e.Type == typ && e.Field == path {
			return
		}
	}
	t.Errorf("no %s error at %s in %v", typ, path, errs.ToAggregate())
}

// wlAssertRow fails unless row equals want and has one cell per column.
func wlAssertRow(t *testing.T, r *Resource, obj runtime.Object, want []any) {
	t.Helper()
	row := r.Row(obj)
	if len(row) != len(r.Columns) {
		t.Fatalf("row has %d cells for %d columns", len(row), len(r.Columns))
	}
	if !slices.Equal(row, want) {
		t.Errorf("row = %#v, want %#v", row, want)
	}
}

// wlColumnNames returns "NAME" style headers, split by priority.
func wlColumnNames(r *Resource) (normal, wide []string) {
	for _, c := range r.Columns {
		name := c.Name
		b := []byte(name)
		for i, ch := range b {
			if 'a' <= ch && ch <= 'z' {
				b[i] = ch - 'a' + 'A'
			}
		}
		if c.Priority == 0 {
			normal = append(normal, string(b))
		} else {
			wide = append(wide, string(b))
		}
	}
	return normal, wide
}

func TestWorkloadColumns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		r            *Resource
		normal, wide []string
	}{
		{"deployments", Deployments(), []string{"NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"}, []string{"CONTAINERS", "IMAGES", "SELECTOR"}},
		{"replicasets", ReplicaSets(), []string{"NAME", "DESIRED", "CURRENT", "READY", "AGE"}, []string{"CONTAINERS", "IMAGES", "SELECTOR"}},
		{"daemonsets", DaemonSets(), []string{"NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"}, []string{"CONTAINERS", "IMAGES", "SELECTOR"}},
		{"statefulsets", StatefulSets(), []string{"NAME", "READY", "AGE"}, []string{"CONTAINERS", "IMAGES"}},
		{"controllerrevisions", ControllerRevisions(), []string{"NAME", "CONTROLLER", "REVISION", "AGE"}, nil},
		{"jobs", Jobs(), []string{"NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"}, []string{"CONTAINERS", "IMAGES", "SELECTOR"}},
		{"cronjobs", CronJobs(), []string{"NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"}, []string{"CONTAINERS", "IMAGES", "SELECTOR"}},
		{"leases", Leases(), []string{"NAME", "HOLDER", "AGE"}, nil},
		{"endpointslices", EndpointSlices(), []string{"NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"}, nil},
		{"events.k8s.io", Events(), []string{"LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"}, []string{"SUBOBJECT", "SOURCE", "FIRST SEEN", "COUNT", "NAME"}},
		{"priorityclasses", PriorityClasses(), []string{"NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			normal, wide := wlColumnNames(tt.r)
			if !slices.Equal(normal, tt.normal) || !slices.Equal(wide, tt.wide) {
				t.Errorf("columns = %v | wide %v, want %v | wide %v", normal, wide, tt.normal, tt.wide)
			}
		})
	}
}

func TestWorkloadDiscovery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		r          *Resource
		gvr        string
		namespaced bool
		short      []string
		categories []string
		subs       []string
	}{
		{"deployments", Deployments(), "apps/v1, Resource=deployments", true, []string{"deploy"}, []string{"all"}, []string{"status", "scale"}},
		{"replicasets", ReplicaSets(), "apps/v1, Resource=replicasets", true, []string{"rs"}, []string{"all"}, []string{"status", "scale"}},
		{"daemonsets", DaemonSets(), "apps/v1, Resource=daemonsets", true, []string{"ds"}, []string{"all"}, []string{"status"}},
		{"statefulsets", StatefulSets(), "apps/v1, Resource=statefulsets", true, []string{"sts"}, []string{"all"}, []string{"status", "scale"}},
		{"controllerrevisions", ControllerRevisions(), "apps/v1, Resource=controllerrevisions", true, nil, nil, nil},
		{"jobs", Jobs(), "batch/v1, Resource=jobs", true, nil, []string{"all"}, []string{"status"}},
		{"cronjobs", CronJobs(), "batch/v1, Resource=cronjobs", true, []string{"cj"}, []string{"all"}, []string{"status"}},
		{"leases", Leases(), "coordination.k8s.io/v1, Resource=leases", true, nil, nil, nil},
		{"endpointslices", EndpointSlices(), "discovery.k8s.io/v1, Resource=endpointslices", true, nil, nil, nil},
		{"events", Events(), "events.k8s.io/v1, Resource=events", true, []string{"ev"}, nil, nil},
		{"priorityclasses", PriorityClasses(), "scheduling.k8s.io/v1, Resource=priorityclasses", false, []string{"pc"}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := tt.r
			if got := r.Resource().String(); got != tt.gvr {
				t.Errorf("resource = %q, want %q", got, tt.gvr)
			}
			if r.Namespaced != tt.namespaced {
				t.Errorf("namespaced = %v, want %v", r.Namespaced, tt.namespaced)
			}
			if !slices.Equal(r.ShortNames, tt.short) || !slices.Equal(r.Categories, tt.categories) || !slices.Equal(r.Subresources(), tt.subs) {
				t.Errorf("short %v categories %v subresources %v, want %v %v %v", r.ShortNames, r.Categories, r.Subresources(), tt.short, tt.categories, tt.subs)
			}
			if gvk := r.New().GetObjectKind(); gvk == nil || r.NewList() == nil {
				t.Errorf("New/NewList returned nil")
			}
		})
	}
}

func TestWlControllerName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		refs []metav1.OwnerReference
		want string
	}{
		{"none", nil, "<none>"},
		{"not controller", []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "x"}}, "<none>"},
		{"apps", []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "fluentd", Controller: new(true)}}, "daemonset.apps/fluentd"},
		{"core", []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: "p", Controller: new(true)}}, "pod/p"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := wlControllerName(&metav1.ObjectMeta{OwnerReferences: tt.refs}); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// wlFields lists the field paths of errs in order.
func wlFields(errs []*field.Error) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Field)
	}
	return out
}
