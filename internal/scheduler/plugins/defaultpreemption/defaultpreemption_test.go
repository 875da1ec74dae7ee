package defaultpreemption_test

import (
	"context"
	"slices"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	schedcache "github.com/skiffhq/skiff/internal/scheduler/cache"
	"github.com/skiffhq/skiff/internal/scheduler/framework"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/defaultpreemption"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/noderesourcesfit"
	"github.com/skiffhq/skiff/internal/testutil"
)

// preempt runs a filter pass (NodeResourcesFit) and then preemption, as
// the scheduler does when no node fits, against a fake API holding the
// bound pods. It returns the nominated node, the pods deleted, and the
// status.
func preempt(t *testing.T, nodes []*corev1.Node, bound []*corev1.Pod, pod *corev1.Pod) (string, []string, *framework.Status) {
	t.Helper()
	ctx := context.Background()
	c := schedcache.New()
	objs := []runtime.Object{}
	for _, n := range nodes {
		c.AddNode(n)
	}
	for _, p := range bound {
		c.AddPod(p)
		objs = append(objs, p)
	}
	client := fake.NewSimpleClientset(objs...)
	snap := schedcache.NewSnapshot()
	c.UpdateSnapshot(snap)
	fwk, err := framework.New(framework.Registry{noderesourcesfit.Name: noderesourcesfit.New, defaultpreemption.Name: defaultpreemption.New},
		framework.Profile{Filters: []string{noderesourcesfit.Name}, PostFilters: []string{defaultpreemption.Name}},
		framework.Options{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	fwk.SetSnapshot(snap)
	state := framework.NewCycleState()
	if _, st := fwk.RunPreFilterPlugins(ctx, state, pod); !st.IsSuccess() {
		t.Fatalf("PreFilter: %v", st.Message())
	}
	filtered := framework.NodeToStatus{}
	for _, ni := range snap.List() {
		st := fwk.RunFilterPlugins(ctx, state, pod, ni)
		if st.IsSuccess() {
			t.Fatalf("node %s fits already; the case is wrong", ni.Node().Name)
		}
		filtered[ni.Node().Name] = st
	}
	res, st := fwk.RunPostFilterPlugins(ctx, state, pod, filtered)
	left, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, p := range bound {
		if !slices.ContainsFunc(left.Items, func(q corev1.Pod) bool { return q.Name == p.Name }) {
			deleted = append(deleted, p.Name)
		}
	}
	sort.Strings(deleted)
	nominated := ""
	if res != nil {
		nominated = res.NominatedNodeName
	}
	return nominated, deleted, st
}

func TestPostFilter(t *testing.T) {
	// Nodes have 4 CPUs each.
	nodes := []*corev1.Node{testutil.MakeNode("a").Obj(), testutil.MakeNode("b").Obj()}
	pod := func(name, node, cpu string, prio int32) *corev1.Pod {
		return testutil.MakePod(name).Req(cpu, "").Priority(prio).Node(node).Obj()
	}
	started := func(p *corev1.Pod, sec int64) *corev1.Pod {
		ts := metav1.Unix(1_700_000_000+sec, 0)
		p.Status.StartTime = &ts
		return p
	}
	cases := []struct {
		name      string
		bound     []*corev1.Pod
		preemptor *corev1.Pod
		nominated string   // "" means preemption fails
		victims   []string // pods deleted
		reason    string   // substring of the status message when it fails
	}{
		{"fewest victims; of equals the most recently started goes",
			[]*corev1.Pod{pod("a1", "a", "1", 1), pod("a2", "a", "1", 1), pod("a3", "a", "1", 1), pod("a4", "a", "1", 1), pod("b1", "b", "2", 1), started(pod("b2", "b", "2", 1), 60)},
			testutil.MakePod("p").Req("2", "").Priority(10).Obj(), "b", []string{"b2"}, ""},
		{"lowest priority victims",
			[]*corev1.Pod{pod("a1", "a", "4", 5), pod("b1", "b", "4", 3)},
			testutil.MakePod("p").Req("2", "").Priority(10).Obj(), "b", []string{"b1"}, ""},
		{"lowest highest priority wins over fewer victims",
			[]*corev1.Pod{pod("a1", "a", "2", 1), pod("a2", "a", "2", 1), pod("b1", "b", "4", 2)},
			testutil.MakePod("p").Req("4", "").Priority(10).Obj(), "a", []string{"a1", "a2"}, ""},
		{"only as many victims as needed, least important first",
			[]*corev1.Pod{pod("low", "a", "1", 1), pod("mid", "a", "1", 2), pod("high", "a", "2", 3), pod("b1", "b", "4", 50)},
			testutil.MakePod("p").Req("1", "").Priority(10).Obj(), "a", []string{"low"}, ""},
		{"equal or higher priority pods are never victims",
			[]*corev1.Pod{pod("a1", "a", "4", 10), pod("b1", "b", "4", 20)},
			testutil.MakePod("p").Req("1", "").Priority(10).Obj(), "", nil, defaultpreemption.ReasonNoVictims},
		{"preemptionPolicy Never",
			[]*corev1.Pod{pod("a1", "a", "4", 1), pod("b1", "b", "4", 1)},
			testutil.MakePod("p").Req("1", "").Priority(10).PreemptNever().Obj(), "", nil, "preemptionPolicy=Never"},
		{"no node could ever fit",
			[]*corev1.Pod{pod("a1", "a", "4", 1), pod("b1", "b", "4", 1)},
			testutil.MakePod("p").Req("8", "").Priority(10).Obj(), "", nil, defaultpreemption.ReasonNotHelpful},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nominated, deleted, st := preempt(t, nodes, tc.bound, tc.preemptor)
			if nominated != tc.nominated {
				t.Fatalf("nominated %q, want %q (status %v)", nominated, tc.nominated, st.Message())
			}
			if !slices.Equal(deleted, tc.victims) {
				t.Errorf("deleted %v, want %v", deleted, tc.victims)
			}
			if tc.nominated == "" && (st.IsSuccess() || !strings.Contains(st.Message(), tc.reason)) {
				t.Errorf("status %v %q, want a failure saying %q", st.Code(), st.Message(), tc.reason)
			}
		})
	}
}
