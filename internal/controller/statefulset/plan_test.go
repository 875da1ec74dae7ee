package statefulset

import (
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/internal/controller/history"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func testSet(replicas int32, mut ...func(*appsv1.StatefulSet)) *appsv1.StatefulSet {
	s := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "sts-uid", Generation: 3},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            &replicas,
			ServiceName:         "web-svc",
			PodManagementPolicy: appsv1.OrderedReadyPodManagement,
			UpdateStrategy:      appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "v2"}}},
			},
		},
	}
	for _, m := range mut {
		m(s)
	}
	return s
}

type podOpt func(*corev1.Pod)

// member is a running, ready pod of revision rev ("cur" or "upd").
func member(ord int, rev string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName("web", ord), Labels: map[string]string{history.HashLabel: "web-" + rev}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0.Add(-time.Hour))},
		}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func pending(p *corev1.Pod) { p.Status = corev1.PodStatus{Phase: corev1.PodPending} }
func failed(p *corev1.Pod)  { p.Status.Phase = corev1.PodFailed }
func terminatingPod(p *corev1.Pod) {
	now := metav1.NewTime(t0)
	p.DeletionTimestamp = &now
}

func newTestState(sts *appsv1.StatefulSet, pods ...*corev1.Pod) *state {
	s := &state{sts: sts, pods: map[int]*corev1.Pod{}, now: t0,
		current: revision{name: "web-cur", template: &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "v1"}}}}},
		updated: revision{name: "web-upd", template: &sts.Spec.Template},
	}
	for _, p := range pods {
		ord, ok := ordinalOf("web", p.Name)
		if !ok {
			panic(p.Name)
		}
		s.pods[ord] = p
	}
	return s
}

func TestNext(t *testing.T) {
	t.Parallel()
	parallel := func(s *appsv1.StatefulSet) { s.Spec.PodManagementPolicy = appsv1.ParallelPodManagement }
	partition := func(n int32) func(*appsv1.StatefulSet) {
		return func(s *appsv1.StatefulSet) {
			s.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: &n}
		}
	}
	onDelete := func(s *appsv1.StatefulSet) {
		s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
	}
	tests := []struct {
		name       string
		sts        *appsv1.StatefulSet
		pods       []*corev1.Pod
		wantCreate []int
		wantDelete []string
	}{
		{"ordered: first pod", testSet(3), nil, []int{0}, nil},
		{"ordered: next once the previous is ready", testSet(3), []*corev1.Pod{member(0, "upd")}, []int{1}, nil},
		{"ordered: wait for a pending pod", testSet(3), []*corev1.Pod{member(0, "upd", pending)}, nil, nil},
		{"ordered: fill a gap first", testSet(3), []*corev1.Pod{member(0, "upd"), member(2, "upd")}, []int{1}, nil},
		{"ordinals start", testSet(2, func(s *appsv1.StatefulSet) { s.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: 5} }),
			[]*corev1.Pod{member(5, "upd")}, []int{6}, nil},
		{"parallel: all at once", testSet(3, parallel), nil, []int{0, 1, 2}, nil},
		{"ordered: scale down from the top, one at a time", testSet(1),
			[]*corev1.Pod{member(0, "upd"), member(1, "upd"), member(2, "upd")}, nil, []string{"web-2"}},
		{"ordered: wait for termination before the next", testSet(1),
			[]*corev1.Pod{member(0, "upd"), member(1, "upd"), member(2, "upd", terminatingPod)}, nil, nil},
		{"ordered: no scale down while another pod is unhealthy", testSet(1),
			[]*corev1.Pod{member(0, "upd", pending), member(1, "upd")}, nil, nil},
		{"parallel: scale down all at once", testSet(1, parallel),
			[]*corev1.Pod{member(0, "upd"), member(1, "upd", pending), member(2, "upd")}, nil, []string{"web-1", "web-2"}},
		{"failed pod is replaced", testSet(2), []*corev1.Pod{member(0, "upd", failed)}, nil, []string{"web-0"}},
		{"rolling update from the top", testSet(3),
			[]*corev1.Pod{member(0, "cur"), member(1, "cur"), member(2, "cur")}, nil, []string{"web-2"}},
		{"rolling update waits for the replacement", testSet(3, parallel),
			[]*corev1.Pod{member(0, "cur"), member(1, "cur"), member(2, "upd", pending)}, nil, nil},
		{"rolling update continues down", testSet(3),
			[]*corev1.Pod{member(0, "cur"), member(1, "cur"), member(2, "upd")}, nil, []string{"web-1"}},
		{"partition stops the update", testSet(3, partition(2)),
			[]*corev1.Pod{member(0, "cur"), member(1, "cur"), member(2, "upd")}, nil, nil},
		{"on delete never deletes for an update", testSet(3, onDelete),
			[]*corev1.Pod{member(0, "cur"), member(1, "cur"), member(2, "cur")}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := newTestState(tt.sts, tt.pods...).next()
			if !slices.Equal(st.create, tt.wantCreate) {
				t.Errorf("create = %v, want %v", st.create, tt.wantCreate)
			}
			var got []string
			for _, p := range st.delete {
				got = append(got, p.Name)
			}
			sort.Strings(got)
			if !slices.Equal(got, tt.wantDelete) {
				t.Errorf("delete = %v, want %v", got, tt.wantDelete)
			}
		})
	}
}

func TestRevisionFor(t *testing.T) {
	t.Parallel()
	p := int32(2)
	s := newTestState(testSet(4, func(s *appsv1.StatefulSet) {
		s.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: &p}
	}))
	for ord, want := range []string{"web-cur", "web-cur", "web-upd", "web-upd"} {
		if got := s.revisionFor(ord).name; got != want {
			t.Errorf("ordinal %d: revision %s, want %s", ord, got, want)
		}
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		sts  *appsv1.StatefulSet
		pods []*corev1.Pod
		want appsv1.StatefulSetStatus
	}{
		{"mid rollout", testSet(3), []*corev1.Pod{member(0, "cur"), member(1, "cur", pending), member(2, "upd")},
			appsv1.StatefulSetStatus{Replicas: 3, ReadyReplicas: 2, AvailableReplicas: 2, CurrentReplicas: 2, UpdatedReplicas: 1, CurrentRevision: "web-cur", UpdateRevision: "web-upd"}},
		{"complete rollout promotes the update revision", testSet(2), []*corev1.Pod{member(0, "upd"), member(1, "upd")},
			appsv1.StatefulSetStatus{Replicas: 2, ReadyReplicas: 2, AvailableReplicas: 2, CurrentReplicas: 2, UpdatedReplicas: 2, CurrentRevision: "web-upd", UpdateRevision: "web-upd"}},
		{"terminating pods count as replicas only", testSet(1), []*corev1.Pod{member(0, "upd"), member(1, "upd", terminatingPod)},
			appsv1.StatefulSetStatus{Replicas: 2, ReadyReplicas: 2, AvailableReplicas: 2, CurrentReplicas: 0, UpdatedReplicas: 1, CurrentRevision: "web-cur", UpdateRevision: "web-upd"}},
		{"minReadySeconds", testSet(1, func(s *appsv1.StatefulSet) { s.Spec.MinReadySeconds = 7200 }), []*corev1.Pod{member(0, "cur")},
			appsv1.StatefulSetStatus{Replicas: 1, ReadyReplicas: 1, AvailableReplicas: 0, CurrentReplicas: 1, UpdatedReplicas: 0, CurrentRevision: "web-cur", UpdateRevision: "web-upd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.want.ObservedGeneration = 3
			if got := newTestState(tt.sts, tt.pods...).status(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("status\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestOrdinalOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ord  int
		ok   bool
	}{
		{"web-0", 0, true}, {"web-12", 12, true}, {"web-01", 0, false}, {"web-+1", 0, false},
		{"web-x", 0, false}, {"web-", 0, false}, {"webby-1", 0, false}, {"web-web-1", 0, false},
	}
	for _, tt := range tests {
		ord, ok := ordinalOf("web", tt.name)
		if ord != tt.ord || ok != tt.ok {
			t.Errorf("ordinalOf(%q) = %d, %v; want %d, %v", tt.name, ord, ok, tt.ord, tt.ok)
		}
	}
}

func TestNewPod(t *testing.T) {
	t.Parallel()
	sts := testSet(3)
	p := newPod(sts, 2, revision{name: "web-abc", template: &sts.Spec.Template})
	want := map[string]string{"app": "web", "statefulset.kubernetes.io/pod-name": "web-2", "apps.kubernetes.io/pod-index": "2", "controller-revision-hash": "web-abc"}
	if !reflect.DeepEqual(p.Labels, want) {
		t.Errorf("labels = %v, want %v", p.Labels, want)
	}
	if p.Name != "web-2" || p.Spec.Hostname != "web-2" || p.Spec.Subdomain != "web-svc" {
		t.Errorf("name %q hostname %q subdomain %q", p.Name, p.Spec.Hostname, p.Spec.Subdomain)
	}
	if ref := metav1.GetControllerOf(p); ref == nil || ref.UID != sts.UID || ref.Kind != "StatefulSet" {
		t.Errorf("controller ref = %+v", ref)
	}
	if len(sts.Spec.Template.Labels) != 1 {
		t.Errorf("newPod changed the template's labels: %v", sts.Spec.Template.Labels)
	}
}
