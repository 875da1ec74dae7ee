package balancedallocation_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/internal/scheduler/plugins/balancedallocation"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/plugintest"
	"github.com/skiffhq/skiff/internal/testutil"
)

func TestScore(t *testing.T) {
	// Every node has 4 CPUs and 8Gi.
	nodes := []*corev1.Node{testutil.MakeNode("empty").Obj(), testutil.MakeNode("cpu-busy").Obj(), testutil.MakeNode("mem-busy").Obj()}
	existing := []*corev1.Pod{
		testutil.MakePod("cpu").Req("2", "").Node("cpu-busy").Obj(),
		testutil.MakePod("mem").Req("", "4Gi").Node("mem-busy").Obj(),
	}
	cases := []struct {
		name string
		pod  *corev1.Pod
		want map[string]int64
	}{
		// 1 CPU of 4 and 2Gi of 8 leave the empty node at 25% / 25%: even.
		// On cpu-busy: 75% CPU, 25% memory, deviation 0.25 → 75.
		{"proportional request", testutil.MakePod("p").Req("1", "2Gi").Obj(), map[string]int64{"empty": 100, "cpu-busy": 75, "mem-busy": 75}},
		// Memory only: the empty node goes 0% / 50% (75), cpu-busy 50% / 50%
		// (100), mem-busy 0% / 100% (50).
		{"memory-only request evens out the CPU-heavy node", testutil.MakePod("p").Req("", "4Gi").Obj(), map[string]int64{"empty": 75, "cpu-busy": 100, "mem-busy": 50}},
		// Fractions are capped at 1: 8 CPUs on a 4-CPU node count as 100%.
		{"over-request capped", testutil.MakePod("p").Req("8", "8Gi").Obj(), map[string]int64{"empty": 100, "cpu-busy": 100, "mem-busy": 100}},
		// As upstream, a pod requesting neither is skipped: no score at all.
		{"no requests skipped", testutil.MakePod("p").Obj(), map[string]int64{"empty": 0, "cpu-busy": 0, "mem-busy": 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := plugintest.New(t, balancedallocation.Name, balancedallocation.New, nil, nodes, existing, nil)
			got := env.Scores(t, tc.pod)
			for n, want := range tc.want {
				if got[n] != want {
					t.Errorf("node %s scored %d, want %d (all: %v)", n, got[n], want, got)
				}
			}
		})
	}
}
