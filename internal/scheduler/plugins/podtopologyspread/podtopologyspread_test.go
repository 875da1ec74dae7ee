package podtopologyspread_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/internal/scheduler/plugins/plugintest"
	pts "github.com/skiffhq/skiff/internal/scheduler/plugins/podtopologyspread"
	"github.com/skiffhq/skiff/internal/testutil"
)

func TestFilter(t *testing.T) {
	zone := corev1.LabelTopologyZone
	nodes := []*corev1.Node{
		testutil.MakeNode("a1").Zone("a").Obj(),
		testutil.MakeNode("a2").Zone("a").Obj(),
		testutil.MakeNode("b1").Zone("b").Obj(),
		testutil.MakeNode("c1").Zone("c").Label("role", "edge").Obj(),
		testutil.MakeNode("nozone").Obj(),
	}
	on := func(name, node string) *corev1.Pod { return testutil.MakePod(name).Label("app", "s").Node(node).Obj() }
	three := int32(5)
	cases := []struct {
		name     string
		existing []*corev1.Pod
		pod      *corev1.Pod
		fits     []string
	}{
		{"empty: anywhere with the key", nil,
			testutil.MakePod("p").Label("app", "s").SpreadConstraint(1, zone, corev1.DoNotSchedule, "app", "s", nil).Obj(), []string{"a1", "a2", "b1", "c1"}},
		{"skew", []*corev1.Pod{on("x", "a1"), on("y", "b1")},
			testutil.MakePod("p").Label("app", "s").SpreadConstraint(1, zone, corev1.DoNotSchedule, "app", "s", nil).Obj(), []string{"c1"}},
		{"maxSkew 2", []*corev1.Pod{on("x", "a1"), on("y", "b1")},
			testutil.MakePod("p").Label("app", "s").SpreadConstraint(2, zone, corev1.DoNotSchedule, "app", "s", nil).Obj(), []string{"a1", "a2", "b1", "c1"}},
		{"node affinity honoured", []*corev1.Pod{on("x", "a1"), on("y", "b1")},
			// c1 is outside the pod's node affinity, so zone c is no domain
			// and the minimum is 1: zones a and b stay open. (c1 itself is
			// NodeAffinity's to reject, not this plugin's.)
			testutil.MakePod("p").Label("app", "s").NodeAffinity(corev1.NodeSelectorRequirement{Key: "role", Operator: corev1.NodeSelectorOpDoesNotExist}).SpreadConstraint(1, zone, corev1.DoNotSchedule, "app", "s", nil).Obj(), []string{"a1", "a2", "b1", "c1"}},
		{"minDomains above domains", []*corev1.Pod{on("x", "a1"), on("y", "b1"), on("z", "c1")},
			testutil.MakePod("p").Label("app", "s").SpreadConstraint(1, zone, corev1.DoNotSchedule, "app", "s", &three).Obj(), nil},
		{"ScheduleAnyway does not filter", []*corev1.Pod{on("x", "a1"), on("y", "a1")},
			testutil.MakePod("p").Label("app", "s").SpreadConstraint(1, zone, corev1.ScheduleAnyway, "app", "s", nil).Obj(), []string{"a1", "a2", "b1", "c1", "nozone"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := plugintest.New(t, pts.Name, pts.New, nil, nodes, tc.existing, nil)
			got, _ := env.Filter(tc.pod)
			fits := plugintest.Fits(got)
			if len(fits) != len(tc.fits) {
				t.Fatalf("fits %v, want %v", fits, tc.fits)
			}
			for _, n := range tc.fits {
				if !fits[n] {
					t.Fatalf("fits %v, want %v", fits, tc.fits)
				}
			}
			if st := got["nozone"]; !st.IsSuccess() && st.Message() != pts.ErrReasonNodeLabelNotMatch {
				t.Errorf("nozone: %q", st.Message())
			}
		})
	}
}

func TestScoreScheduleAnyway(t *testing.T) {
	nodes := []*corev1.Node{testutil.MakeNode("a").Obj(), testutil.MakeNode("b").Obj(), testutil.MakeNode("c").Obj()}
	existing := []*corev1.Pod{
		testutil.MakePod("x").Label("app", "s").Node("a").Obj(),
		testutil.MakePod("y").Label("app", "s").Node("a").Obj(),
		testutil.MakePod("z").Label("app", "s").Node("b").Obj(),
	}
	env := plugintest.New(t, pts.Name, pts.New, nil, nodes, existing, nil)
	got := env.Scores(t, testutil.MakePod("p").Label("app", "s").SpreadConstraint(1, corev1.LabelHostname, corev1.ScheduleAnyway, "app", "s", nil).Obj())
	if !(got["c"] > got["b"] && got["b"] > got["a"]) || got["c"] != 100 {
		t.Errorf("scores %v, want c (100) > b > a", got)
	}
}

// TestFilterIndexed covers the path where every node carries the key and
// the pod has no node constraints: counts come from the snapshot's pod
// index rather than a walk over the nodes, and must agree with it.
func TestFilterIndexed(t *testing.T) {
	zone := corev1.LabelTopologyZone
	nodes := []*corev1.Node{
		testutil.MakeNode("a1").Zone("a").Obj(),
		testutil.MakeNode("a2").Zone("a").Obj(),
		testutil.MakeNode("b1").Zone("b").Obj(),
		testutil.MakeNode("c1").Zone("c").Obj(),
	}
	on := func(name, node string) *testutil.PodWrapper {
		return testutil.MakePod(name).Label("app", "s").Node(node)
	}
	spread := func(maxSkew int32) *corev1.Pod {
		return testutil.MakePod("p").Label("app", "s").SpreadConstraint(maxSkew, zone, corev1.DoNotSchedule, "app", "s", nil).Obj()
	}
	cases := []struct {
		name     string
		existing []*corev1.Pod
		pod      *corev1.Pod
		fits     []string
	}{
		{"empty domains are the minimum", []*corev1.Pod{on("x", "a1").Obj(), on("y", "b1").Obj()}, spread(1), []string{"c1"}},
		{"pods of another namespace do not count", []*corev1.Pod{on("x", "a1").Namespace("other").Obj(), on("y", "b1").Obj()}, spread(1), []string{"a1", "a2", "c1"}},
		{"unselected pods do not count", []*corev1.Pod{testutil.MakePod("x").Label("app", "t").Node("a1").Obj(), on("y", "b1").Obj()}, spread(1), []string{"a1", "a2", "c1"}},
		{"both nodes of a zone count", []*corev1.Pod{on("x", "a1").Obj(), on("y", "a2").Obj(), on("z", "b1").Obj()}, spread(1), []string{"c1"}},
		{"maxSkew 2", []*corev1.Pod{on("x", "a1").Obj(), on("y", "a2").Obj(), on("z", "b1").Obj()}, spread(2), []string{"b1", "c1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := plugintest.New(t, pts.Name, pts.New, nil, nodes, tc.existing, nil)
			got, _ := env.Filter(tc.pod)
			fits := plugintest.Fits(got)
			if len(fits) != len(tc.fits) {
				t.Fatalf("fits %v, want %v", fits, tc.fits)
			}
			for _, n := range tc.fits {
				if !fits[n] {
					t.Fatalf("fits %v, want %v", fits, tc.fits)
				}
			}
		})
	}
}
