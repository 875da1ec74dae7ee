package imagelocality_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/internal/scheduler/plugins/imagelocality"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/plugintest"
	"github.com/skiffhq/skiff/internal/testutil"
)

const mb = 1024 * 1024

func TestScore(t *testing.T) {
	cases := []struct {
		name  string
		nodes []*corev1.Node
		pod   *corev1.Pod
		want  map[string]int64
	}{
		// 500 MB on one node of two counts half (spread discount): 250 MB,
		// (250−23)/(1000−23) of 100.
		{"image on one node of two",
			[]*corev1.Node{testutil.MakeNode("has").Image("app:v1", 500*mb).Obj(), testutil.MakeNode("lacks").Obj()},
			testutil.MakePod("p").Image("app:v1").Obj(), map[string]int64{"has": 23, "lacks": 0}},
		{"image on every node counts in full",
			[]*corev1.Node{testutil.MakeNode("a").Image("app:v1", 500*mb).Obj(), testutil.MakeNode("b").Image("app:v1", 500*mb).Obj()},
			testutil.MakePod("p").Image("app:v1").Obj(), map[string]int64{"a": 48, "b": 48}},
		{"small images do not count",
			[]*corev1.Node{testutil.MakeNode("has").Image("tiny:v1", 10*mb).Obj(), testutil.MakeNode("lacks").Obj()},
			testutil.MakePod("p").Image("tiny:v1").Obj(), map[string]int64{"has": 0, "lacks": 0}},
		{"capped at 1000 MB per container",
			[]*corev1.Node{testutil.MakeNode("a").Image("huge:v1", 3000*mb).Obj(), testutil.MakeNode("b").Image("huge:v1", 3000*mb).Obj()},
			testutil.MakePod("p").Image("huge:v1").Obj(), map[string]int64{"a": 100, "b": 100}},
		{"untagged image is :latest",
			[]*corev1.Node{testutil.MakeNode("has").Image("nginx:latest", 500*mb).Obj(), testutil.MakeNode("lacks").Obj()},
			testutil.MakePod("p").Image("nginx").Obj(), map[string]int64{"has": 23, "lacks": 0}},
		{"other tag does not count",
			[]*corev1.Node{testutil.MakeNode("has").Image("app:v1", 500*mb).Obj(), testutil.MakeNode("lacks").Obj()},
			testutil.MakePod("p").Image("app:v2").Obj(), map[string]int64{"has": 0, "lacks": 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := plugintest.New(t, imagelocality.Name, imagelocality.New, nil, tc.nodes, nil, nil)
			got := env.Scores(t, tc.pod)
			for n, want := range tc.want {
				if got[n] != want {
					t.Errorf("node %s scored %d, want %d (all: %v)", n, got[n], want, got)
				}
			}
		})
	}
}
