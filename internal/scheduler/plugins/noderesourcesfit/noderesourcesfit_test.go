package noderesourcesfit_test

import (
	"github.com/skiffhq/skiff/internal/scheduler/plugins/noderesourcesfit"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/plugintest"
	"github.com/skiffhq/skiff/internal/testutil"
)

func TestFilter(t *testing.T) {
	gpu := corev1.ResourceName("example.com/gpu")
	node := testutil.MakeNode("n").Capacity("4", "8Gi", 3).Resource(gpu, "2").Obj()
	used := []*corev1.Pod{testutil.MakePod("used").Node("n").Req("2", "4Gi").Obj()}
	cases := []struct {
		name     string
		existing []*corev1.Pod
		pod      *corev1.Pod
		code     framework.Code
		reasons  []string
	}{
		{"fits", used, testutil.MakePod("p").Req("2", "4Gi").Obj(), framework.Success, nil},
		{"cpu", used, testutil.MakePod("p").Req("3", "").Obj(), framework.Unschedulable, []string{"Insufficient cpu"}},
		{"cpu and memory", used, testutil.MakePod("p").Req("3", "5Gi").Obj(), framework.Unschedulable, []string{"Insufficient cpu", "Insufficient memory"}},
		{"more than the node has", nil, testutil.MakePod("p").Req("5", "").Obj(), framework.UnschedulableAndUnresolvable, []string{"Insufficient cpu"}},
		{"extended", nil, testutil.MakePod("p").ReqList(corev1.ResourceList{gpu: resource.MustParse("1")}, "", "").Obj(), framework.Success, nil},
		{"extended short", nil, testutil.MakePod("p").ReqList(corev1.ResourceList{gpu: resource.MustParse("3")}, "", "").Obj(), framework.UnschedulableAndUnresolvable, []string{"Insufficient example.com/gpu"}},
		{"ephemeral", nil, testutil.MakePod("p").ReqList(corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("200Gi")}, "", "").Obj(), framework.UnschedulableAndUnresolvable, []string{"Insufficient ephemeral-storage"}},
		{"pods", []*corev1.Pod{testutil.MakePod("a").Node("n").Obj(), testutil.MakePod("b").Node("n").Obj(), testutil.MakePod("c").Node("n").Obj()}, testutil.MakePod("p").Obj(), framework.Unschedulable, []string{"Too many pods"}},
		// Init containers run one at a time before the app: the max counts.
		{"init max not sum", used, testutil.MakePod("p").Req("1", "").InitContainer("2", "", false).InitContainer("2", "", false).Obj(), framework.Success, nil},
		{"init over", used, testutil.MakePod("p").Req("1", "").InitContainer("3", "", false).Obj(), framework.Unschedulable, []string{"Insufficient cpu"}},
		// Sidecars keep running, so they add to the app containers.
		{"sidecar adds", used, testutil.MakePod("p").Req("1500m", "").InitContainer("1", "", true).Obj(), framework.Unschedulable, []string{"Insufficient cpu"}},
		{"overhead", used, testutil.MakePod("p").Req("1500m", "").Overhead("1", "").Obj(), framework.Unschedulable, []string{"Insufficient cpu"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := plugintest.New(t, noderesourcesfit.Name, noderesourcesfit.New, nil, []*corev1.Node{node}, tc.existing, nil)
			got, _ := env.Filter(tc.pod)
			st := got["n"]
			if st.Code() != tc.code {
				t.Fatalf("code %v (%q), want %v", st.Code(), st.Message(), tc.code)
			}
			if len(st.Reasons()) != len(tc.reasons) {
				t.Fatalf("reasons %q, want %q", st.Reasons(), tc.reasons)
			}
			for i := range tc.reasons {
				if st.Reasons()[i] != tc.reasons[i] {
					t.Fatalf("reasons %q, want %q", st.Reasons(), tc.reasons)
				}
			}
		})
	}
}

func TestScoreStrategies(t *testing.T) {
	nodes := []*corev1.Node{testutil.MakeNode("empty").Obj(), testutil.MakeNode("half").Obj()}
	pods := []*corev1.Pod{testutil.MakePod("x").Node("half").Req("2", "4Gi").Obj()}
	pod := testutil.MakePod("p").Req("1", "2Gi").Obj()
	cases := []struct {
		strategy    string
		empty, half int64
	}{
		{noderesourcesfit.LeastAllocated, 75, 25},
		{noderesourcesfit.MostAllocated, 25, 75},
	}
	for _, tc := range cases {
		t.Run(tc.strategy, func(t *testing.T) {
			env := plugintest.New(t, noderesourcesfit.Name, noderesourcesfit.New, noderesourcesfit.Args{ScoringStrategy: tc.strategy}, nodes, pods, nil)
			got := env.Scores(t, pod)
			if got["empty"] != tc.empty || got["half"] != tc.half {
				t.Errorf("scores %v, want empty %d half %d", got, tc.empty, tc.half)
			}
		})
	}
	if _, err := noderesourcesfit.New(noderesourcesfit.Args{ScoringStrategy: "Random"}, nil); err == nil {
		t.Error("unknown strategy accepted")
	}
}
