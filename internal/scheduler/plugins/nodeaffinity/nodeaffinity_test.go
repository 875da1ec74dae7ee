package nodeaffinity_test

import (
	"github.com/skiffhq/skiff/internal/scheduler/plugins/nodeaffinity"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/plugintest"
	"github.com/skiffhq/skiff/internal/testutil"
)

func req(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
}

func TestFilter(t *testing.T) {
	nodes := []*corev1.Node{
		testutil.MakeNode("a").Label("zone", "z1").Label("gen", "3").Obj(),
		testutil.MakeNode("b").Label("zone", "z2").Label("gen", "7").Label("gpu", "").Obj(),
		testutil.MakeNode("c").Obj(),
	}
	cases := []struct {
		name string
		pod  *corev1.Pod
		want []string
	}{
		{"none", testutil.MakePod("p").Obj(), []string{"a", "b", "c"}},
		{"selector", testutil.MakePod("p").NodeSelector("zone", "z1").Obj(), []string{"a"}},
		{"In", testutil.MakePod("p").NodeAffinity(req("zone", corev1.NodeSelectorOpIn, "z1", "z2")).Obj(), []string{"a", "b"}},
		{"NotIn matches missing", testutil.MakePod("p").NodeAffinity(req("zone", corev1.NodeSelectorOpNotIn, "z1")).Obj(), []string{"b", "c"}},
		{"Exists", testutil.MakePod("p").NodeAffinity(req("gpu", corev1.NodeSelectorOpExists)).Obj(), []string{"b"}},
		{"DoesNotExist", testutil.MakePod("p").NodeAffinity(req("gpu", corev1.NodeSelectorOpDoesNotExist)).Obj(), []string{"a", "c"}},
		{"Gt", testutil.MakePod("p").NodeAffinity(req("gen", corev1.NodeSelectorOpGt, "5")).Obj(), []string{"b"}},
		{"Lt", testutil.MakePod("p").NodeAffinity(req("gen", corev1.NodeSelectorOpLt, "5")).Obj(), []string{"a"}},
		{"Gt bad value", testutil.MakePod("p").NodeAffinity(req("gen", corev1.NodeSelectorOpGt, "x")).Obj(), nil},
		{"terms ORed", testutil.MakePod("p").NodeAffinityIn("zone", "z1").NodeAffinity(req("gpu", corev1.NodeSelectorOpExists)).Obj(), []string{"a", "b"}},
		{"expressions ANDed", testutil.MakePod("p").NodeAffinity(req("zone", corev1.NodeSelectorOpExists), req("gen", corev1.NodeSelectorOpLt, "5")).Obj(), []string{"a"}},
		{"matchFields", testutil.MakePod("p").NodeAffinityFieldName("c").Obj(), []string{"c"}},
		{"selector and affinity", testutil.MakePod("p").NodeSelector("zone", "z2").NodeAffinityIn("zone", "z1").Obj(), nil},
	}
	env := plugintest.New(t, nodeaffinity.Name, nodeaffinity.New, nil, nodes, nil, nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := env.Filter(tc.pod)
			fits := plugintest.Fits(got)
			if len(fits) != len(tc.want) {
				t.Fatalf("fits %v, want %v", fits, tc.want)
			}
			for _, n := range tc.want {
				if !fits[n] {
					t.Fatalf("fits %v, want %v", fits, tc.want)
				}
			}
			for n, s := range got {
				if !s.IsSuccess() && (s.Code() != framework.UnschedulableAndUnresolvable || s.Message() != nodeaffinity.ErrReason) {
					t.Errorf("node %s: status %v %q", n, s.Code(), s.Message())
				}
			}
		})
	}
}

func TestScorePreferred(t *testing.T) {
	nodes := []*corev1.Node{
		testutil.MakeNode("a").Label("disk", "ssd").Obj(),
		testutil.MakeNode("b").Label("disk", "ssd").Label("zone", "z1").Obj(),
		testutil.MakeNode("c").Obj(),
	}
	env := plugintest.New(t, nodeaffinity.Name, nodeaffinity.New, nil, nodes, nil, nil)
	got := env.Scores(t, testutil.MakePod("p").PreferredNodeAffinity(20, "disk", "ssd").PreferredNodeAffinity(80, "zone", "z1").Obj())
	want := map[string]int64{"a": 20, "b": 100, "c": 0}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("score %s = %d, want %d (all %v)", n, got[n], w, got)
		}
	}
}
