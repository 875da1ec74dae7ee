package nodename_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/nodename"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/plugintest"
	"github.com/skiffhq/skiff/internal/testutil"
)

func TestFilter(t *testing.T) {
	nodes := []*corev1.Node{testutil.MakeNode("a").Obj(), testutil.MakeNode("b").Obj()}
	cases := []struct {
		name string
		pod  *corev1.Pod
		fits []string
	}{
		{"no node name fits everywhere", testutil.MakePod("p").Obj(), []string{"a", "b"}},
		{"named node only", testutil.MakePod("p").Node("b").Obj(), []string{"b"}},
		{"unknown node fits nowhere", testutil.MakePod("p").Node("gone").Obj(), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := plugintest.New(t, nodename.Name, nodename.New, nil, nodes, nil, nil)
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
			for n, st := range got {
				if !st.IsSuccess() && (st.Message() != nodename.ErrReason || st.Code() != framework.UnschedulableAndUnresolvable) {
					t.Errorf("node %s: %v %q, want UnschedulableAndUnresolvable %q", n, st.Code(), st.Message(), nodename.ErrReason)
				}
			}
		})
	}
}
