package tainttoleration_test

import (
	"github.com/skiffhq/skiff/internal/scheduler/plugins/tainttoleration"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/plugintest"
	"github.com/skiffhq/skiff/internal/testutil"
)

func TestFilter(t *testing.T) {
	node := testutil.MakeNode("n").Taint("dedicated", "gpu", corev1.TaintEffectNoSchedule).Taint("soft", "x", corev1.TaintEffectPreferNoSchedule).Obj()
	exec := testutil.MakeNode("e").Taint("broken", "", corev1.TaintEffectNoExecute).Obj()
	cases := []struct {
		name    string
		node    *corev1.Node
		pod     *corev1.Pod
		wantMsg string // "" means fits
	}{
		{"untolerated", node, testutil.MakePod("p").Obj(), "node(s) had untolerated taint {dedicated: gpu}"},
		{"equal", node, testutil.MakePod("p").Toleration("dedicated", corev1.TolerationOpEqual, "gpu", corev1.TaintEffectNoSchedule).Obj(), ""},
		{"wrong value", node, testutil.MakePod("p").Toleration("dedicated", "", "cpu", corev1.TaintEffectNoSchedule).Obj(), "node(s) had untolerated taint {dedicated: gpu}"},
		{"exists any effect", node, testutil.MakePod("p").Toleration("dedicated", corev1.TolerationOpExists, "", "").Obj(), ""},
		{"exists everything", node, testutil.MakePod("p").Toleration("", corev1.TolerationOpExists, "", "").Obj(), ""},
		{"wrong effect", node, testutil.MakePod("p").Toleration("dedicated", corev1.TolerationOpExists, "", corev1.TaintEffectNoExecute).Obj(), "node(s) had untolerated taint {dedicated: gpu}"},
		{"NoExecute", exec, testutil.MakePod("p").Obj(), "node(s) had untolerated taint {broken: }"},
		{"NoExecute tolerated", exec, testutil.MakePod("p").Toleration("broken", corev1.TolerationOpExists, "", corev1.TaintEffectNoExecute).Obj(), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := plugintest.New(t, tainttoleration.Name, tainttoleration.New, nil, []*corev1.Node{tc.node}, nil, nil)
			got, _ := env.Filter(tc.pod)
			st := got[tc.node.Name]
			if tc.wantMsg == "" {
				if !st.IsSuccess() {
					t.Fatalf("rejected: %s", st.Message())
				}
				return
			}
			if st.Code() != framework.UnschedulableAndUnresolvable || st.Message() != tc.wantMsg {
				t.Fatalf("got %v %q, want %q", st.Code(), st.Message(), tc.wantMsg)
			}
		})
	}
}

func TestScorePreferNoSchedule(t *testing.T) {
	nodes := []*corev1.Node{
		testutil.MakeNode("clean").Obj(),
		testutil.MakeNode("one").Taint("a", "", corev1.TaintEffectPreferNoSchedule).Obj(),
		testutil.MakeNode("two").Taint("a", "", corev1.TaintEffectPreferNoSchedule).Taint("b", "", corev1.TaintEffectPreferNoSchedule).Obj(),
	}
	env := plugintest.New(t, tainttoleration.Name, tainttoleration.New, nil, nodes, nil, nil)
	got := env.Scores(t, testutil.MakePod("p").Obj())
	if got["clean"] != 100 || got["one"] != 50 || got["two"] != 0 {
		t.Errorf("scores %v, want clean 100, one 50, two 0", got)
	}
	got = env.Scores(t, testutil.MakePod("p").Toleration("b", corev1.TolerationOpExists, "", corev1.TaintEffectPreferNoSchedule).Obj())
	if got["one"] != 0 || got["two"] != 0 || got["clean"] != 100 {
		t.Errorf("with b tolerated: scores %v", got)
	}
}
