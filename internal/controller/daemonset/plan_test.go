package daemonset

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiffhq/skiff/internal/controller/history"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func testDS(mut ...func(*appsv1.DaemonSet)) *appsv1.DaemonSet {
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "ns", UID: "ds-uid", Generation: 2},
		Spec: appsv1.DaemonSetSpec{
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "a"}}}},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				Type:          appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: new(intstr.FromInt32(1)), MaxSurge: new(intstr.FromInt32(0))},
			},
		},
	}
	for _, m := range mut {
		m(ds)
	}
	return ds
}

func node(name string, labels map[string]string, taints ...corev1.Taint) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: corev1.NodeSpec{Taints: taints}}
}

// pod is a daemon pod "<node>-<hash>-<n>" on node; ready pods have been
// ready since t0.
type podOpt func(*corev1.Pod)

func pod(nodeName, hash string, age int, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-%s-%d", nodeName, hash, age), Namespace: "ns",
			UID:               types.UID(fmt.Sprintf("%s-%s-%d", nodeName, hash, age)),
			Labels:            map[string]string{history.HashLabel: hash},
			CreationTimestamp: metav1.NewTime(t0.Add(-time.Duration(age) * time.Minute)),
		},
		Spec: corev1.PodSpec{NodeName: nodeName},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0.Add(-time.Hour))},
		}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func readySince(d time.Duration) podOpt {
	return func(p *corev1.Pod) { p.Status.Conditions[0].LastTransitionTime = metav1.NewTime(t0.Add(-d)) }
}
func notReady(p *corev1.Pod) { p.Status.Conditions[0].Status = corev1.ConditionFalse }
func failed(p *corev1.Pod)   { p.Status.Phase = corev1.PodFailed }
func terminating(p *corev1.Pod) {
	now := metav1.NewTime(t0)
	p.DeletionTimestamp = &now
}
func unbound(p *corev1.Pod) {
	pinToNode(&p.Spec, p.Spec.NodeName)
	p.Spec.NodeName = ""
}

func TestPlace(t *testing.T) {
	t.Parallel()
	taint := func(key string, effect corev1.TaintEffect) corev1.Taint {
		return corev1.Taint{Key: key, Value: "x", Effect: effect}
	}
	tests := []struct {
		name string
		mut  func(*appsv1.DaemonSet)
		node *corev1.Node
		want placement
	}{
		{"plain node", nil, node("n", nil), placement{run: true, keep: true}},
		{"node selector matches", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.NodeSelector = map[string]string{"role": "w"} },
			node("n", map[string]string{"role": "w"}), placement{run: true, keep: true}},
		{"node selector excludes", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.NodeSelector = map[string]string{"role": "w"} },
			node("n", map[string]string{"role": "edge"}), placement{}},
		{"affinity NotIn excludes", withAffinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"a"}}}}),
			node("n", map[string]string{"zone": "a"}), placement{}},
		{"affinity terms are ORed", withAffinity(
			corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"b"}}}},
			corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "cpus", Operator: corev1.NodeSelectorOpGt, Values: []string{"4"}}}}),
			node("n", map[string]string{"zone": "a", "cpus": "8"}), placement{run: true, keep: true}},
		{"affinity matchFields by name", withAffinity(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"other"}}}}),
			node("n", nil), placement{}},
		{"empty term matches nothing", withAffinity(corev1.NodeSelectorTerm{}), node("n", nil), placement{}},
		{"NoSchedule taint: no new pod, existing stays", nil, node("n", nil, taint("dedicated", corev1.TaintEffectNoSchedule)), placement{keep: true}},
		{"NoExecute taint evicts", nil, node("n", nil, taint("dedicated", corev1.TaintEffectNoExecute)), placement{}},
		{"PreferNoSchedule is ignored", nil, node("n", nil, taint("dedicated", corev1.TaintEffectPreferNoSchedule)), placement{run: true, keep: true}},
		{"template toleration", func(ds *appsv1.DaemonSet) {
			ds.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "x"}}
		}, node("n", nil, taint("dedicated", corev1.TaintEffectNoExecute)), placement{run: true, keep: true}},
		{"toleration with other value", func(ds *appsv1.DaemonSet) {
			ds.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Value: "y", Effect: corev1.TaintEffectNoSchedule}}
		}, node("n", nil, taint("dedicated", corev1.TaintEffectNoSchedule)), placement{keep: true}},
		{"default tolerations: cordoned and not ready", nil,
			node("n", nil, taint(corev1.TaintNodeUnschedulable, corev1.TaintEffectNoSchedule), taint(corev1.TaintNodeNotReady, corev1.TaintEffectNoExecute), taint(corev1.TaintNodeMemoryPressure, corev1.TaintEffectNoSchedule)),
			placement{run: true, keep: true}},
		{"network unavailable without host network", nil, node("n", nil, taint(corev1.TaintNodeNetworkUnavailable, corev1.TaintEffectNoSchedule)), placement{keep: true}},
		{"network unavailable with host network", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.HostNetwork = true },
			node("n", nil, taint(corev1.TaintNodeNetworkUnavailable, corev1.TaintEffectNoSchedule)), placement{run: true, keep: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ds := testDS()
			if tt.mut != nil {
				tt.mut(ds)
			}
			if got := place(ds, tt.node); got != tt.want {
				t.Errorf("place = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func withAffinity(terms ...corev1.NodeSelectorTerm) func(*appsv1.DaemonSet) {
	return func(ds *appsv1.DaemonSet) {
		ds.Spec.Template.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
		}}
	}
}

func names(pods []*corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	sort.Strings(out)
	return out
}

func TestManage(t *testing.T) {
	t.Parallel()
	excluded := func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.NodeSelector = map[string]string{"role": "w"} }
	worker := map[string]string{"role": "w"}
	tests := []struct {
		name       string
		mut        func(*appsv1.DaemonSet)
		nodes      []*corev1.Node
		pods       []*corev1.Pod
		wantCreate []string
		wantDelete []string
	}{
		{"every eligible node gets a pod", excluded,
			[]*corev1.Node{node("a", worker), node("b", worker), node("c", nil)}, nil,
			[]string{"a", "b"}, nil},
		{"pod where the daemon no longer belongs goes", excluded,
			[]*corev1.Node{node("a", worker), node("c", nil)}, []*corev1.Pod{pod("a", "h", 1), pod("c", "h", 1)},
			nil, []string{"c-h-1"}},
		{"pod of a deleted node goes", nil,
			[]*corev1.Node{node("a", nil)}, []*corev1.Pod{pod("a", "h", 1), pod("gone", "h", 1, unbound)},
			nil, []string{"gone-h-1"}},
		{"unbound pod counts for its target node", nil,
			[]*corev1.Node{node("a", nil)}, []*corev1.Pod{pod("a", "h", 1, unbound, notReady)}, nil, nil},
		{"duplicates: the oldest stays", nil,
			[]*corev1.Node{node("a", nil)}, []*corev1.Pod{pod("a", "h", 1), pod("a", "h", 5), pod("a", "old", 3)},
			nil, []string{"a-h-1", "a-old-3"}},
		{"failed pod is replaced", nil,
			[]*corev1.Node{node("a", nil)}, []*corev1.Pod{pod("a", "h", 1, failed)},
			nil, []string{"a-h-1"}},
		{"terminating pod blocks its replacement", nil,
			[]*corev1.Node{node("a", nil)}, []*corev1.Pod{pod("a", "h", 1, terminating)}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ds := testDS()
			if tt.mut != nil {
				tt.mut(ds)
			}
			p := newState(ds, tt.nodes, tt.pods, "h", t0).manage()
			if !slices.Equal(p.create, tt.wantCreate) {
				t.Errorf("create = %v, want %v", p.create, tt.wantCreate)
			}
			if got := names(p.delete); !slices.Equal(got, tt.wantDelete) {
				t.Errorf("delete = %v, want %v", got, tt.wantDelete)
			}
		})
	}
}

func TestRollingUpdate(t *testing.T) {
	t.Parallel()
	nodes := []*corev1.Node{node("a", nil), node("b", nil), node("c", nil), node("d", nil)}
	surge := func(n int32) func(*appsv1.DaemonSet) {
		return func(ds *appsv1.DaemonSet) {
			ds.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: new(intstr.FromInt32(0)), MaxSurge: new(intstr.FromInt32(n))}
		}
	}
	unavailable := func(s string) func(*appsv1.DaemonSet) {
		return func(ds *appsv1.DaemonSet) {
			ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = new(intstr.FromString(s))
		}
	}
	tests := []struct {
		name        string
		mut         func(*appsv1.DaemonSet)
		pods        []*corev1.Pod
		wantCreate  []string
		wantDelete  []string
		wantRecheck time.Duration
	}{
		{"one at a time", nil,
			[]*corev1.Pod{pod("a", "old", 1), pod("b", "old", 1), pod("c", "old", 1), pod("d", "old", 1)},
			nil, []string{"a-old-1"}, 0},
		{"percentage rounds up", unavailable("30%"),
			[]*corev1.Pod{pod("a", "old", 1), pod("b", "old", 1), pod("c", "old", 1), pod("d", "old", 1)},
			nil, []string{"a-old-1", "b-old-1"}, 0},
		{"a replacement still starting uses the budget", nil,
			[]*corev1.Pod{pod("a", "h", 1, notReady), pod("b", "old", 1), pod("c", "old", 1), pod("d", "old", 1)},
			nil, nil, 0},
		{"a node still without its replacement uses the budget", nil,
			[]*corev1.Pod{pod("a", "old", 1, terminating), pod("b", "old", 1), pod("c", "old", 1), pod("d", "old", 1)},
			nil, nil, 0},
		{"unavailable old pods go at once", nil,
			[]*corev1.Pod{pod("a", "old", 1, notReady), pod("b", "old", 1, notReady), pod("c", "h", 1), pod("d", "old", 1)},
			nil, []string{"a-old-1", "b-old-1"}, 0},
		{"done", nil,
			[]*corev1.Pod{pod("a", "h", 1), pod("b", "h", 1), pod("c", "h", 1), pod("d", "h", 1)}, nil, nil, 0},
		{"minReadySeconds: wait for availability", func(ds *appsv1.DaemonSet) { ds.Spec.MinReadySeconds = 3600 },
			[]*corev1.Pod{pod("a", "h", 1, readySince(30*time.Minute)), pod("b", "old", 1), pod("c", "old", 1), pod("d", "old", 1)},
			nil, nil, 30 * time.Minute},
		{"surge starts new pods beside old ones", surge(2),
			[]*corev1.Pod{pod("a", "old", 1), pod("b", "old", 1), pod("c", "old", 1), pod("d", "old", 1)},
			[]string{"a", "b"}, nil, 0},
		{"surge deletes old pods once new ones are available", surge(2),
			[]*corev1.Pod{pod("a", "old", 2), pod("a", "h", 1), pod("b", "old", 2), pod("b", "h", 1, notReady), pod("c", "old", 1), pod("d", "old", 1)},
			[]string{"c"}, []string{"a-old-2"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ds := testDS()
			if tt.mut != nil {
				tt.mut(ds)
			}
			s := newState(ds, nodes, tt.pods, "h", t0)
			if m := s.manage(); !m.empty() {
				t.Fatalf("manage has work first: %+v", m)
			}
			p := s.rollingUpdate()
			if !slices.Equal(p.create, tt.wantCreate) {
				t.Errorf("create = %v, want %v", p.create, tt.wantCreate)
			}
			if got := names(p.delete); !slices.Equal(got, tt.wantDelete) {
				t.Errorf("delete = %v, want %v", got, tt.wantDelete)
			}
			if p.recheck != tt.wantRecheck {
				t.Errorf("recheck = %v, want %v", p.recheck, tt.wantRecheck)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	ds := testDS(func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.NodeSelector = map[string]string{"role": "w"} })
	w := map[string]string{"role": "w"}
	nodes := []*corev1.Node{node("a", w), node("b", w), node("c", w), node("d", w), node("x", nil)}
	pods := []*corev1.Pod{
		pod("a", "h", 1),
		pod("b", "old", 1),
		pod("c", "h", 1, notReady),
		pod("x", "h", 1), // misscheduled
	}
	got := newState(ds, nodes, pods, "h", t0).status()
	want := appsv1.DaemonSetStatus{
		ObservedGeneration: 2, DesiredNumberScheduled: 4, CurrentNumberScheduled: 3, NumberMisscheduled: 1,
		NumberReady: 2, NumberAvailable: 2, UpdatedNumberScheduled: 2, NumberUnavailable: 2,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("status\n got %+v\nwant %+v", got, want)
	}
}

func TestNewPod(t *testing.T) {
	t.Parallel()
	ds := testDS(func(ds *appsv1.DaemonSet) {
		ds.Spec.Template.Labels = map[string]string{"app": "agent"}
		withAffinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpExists}}})(ds)
	})
	p := newPod(ds, "n1", "abc")
	if targetNode(p) != "n1" || p.Spec.NodeName != "" {
		t.Errorf("pod not pinned to n1 through affinity: nodeName %q affinity %+v", p.Spec.NodeName, p.Spec.Affinity)
	}
	if p.Labels["app"] != "agent" || p.Labels[history.HashLabel] != "abc" || p.GenerateName != "agent-" {
		t.Errorf("labels %v generateName %q", p.Labels, p.GenerateName)
	}
	if ref := metav1.GetControllerOf(p); ref == nil || ref.UID != ds.UID || ref.Kind != "DaemonSet" {
		t.Errorf("controller ref = %+v", ref)
	}
	if len(p.Spec.Tolerations) != 6 {
		t.Errorf("tolerations = %v, want the 6 defaults", p.Spec.Tolerations)
	}
	if ds.Spec.Template.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchFields != nil {
		t.Errorf("newPod changed the DaemonSet's template")
	}
}
