package nodeunschedulable_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/nodeunschedulable"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/plugintest"
	"github.com/skiffhq/skiff/internal/testutil"
)

func TestFilter(t *testing.T) {
	cordoned := testutil.MakeNode("cordoned").Unschedulable().Obj()
	open := testutil.MakeNode("open").Obj()
	key := corev1.TaintNodeUnschedulable
	cases := []struct {
		name string
		node *corev1.Node
		pod  *corev1.Pod
		fits bool
	}{
		{"schedulable node", open, testutil.MakePod("p").Obj(), true},
		{"cordoned node", cordoned, testutil.MakePod("p").Obj(), false},
		{"tolerates the unschedulable taint", cordoned, testutil.MakePod("p").Toleration(key, corev1.TolerationOpExists, "", corev1.TaintEffectNoSchedule).Obj(), true},
		{"tolerates every taint", cordoned, testutil.MakePod("p").Toleration("", corev1.TolerationOpExists, "", "").Obj(), true},
		{"toleration with the wrong effect", cordoned, testutil.MakePod("p").Toleration(key, corev1.TolerationOpExists, "", corev1.TaintEffectNoExecute).Obj(), false},
		{"toleration for another key", cordoned, testutil.MakePod("p").Toleration("other", corev1.TolerationOpExists, "", corev1.TaintEffectNoSchedule).Obj(), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := plugintest.New(t, nodeunschedulable.Name, nodeunschedulable.New, nil, []*corev1.Node{tc.node}, nil, nil)
			got, _ := env.Filter(tc.pod)
			st := got[tc.node.Name]
			if st.IsSuccess() != tc.fits {
				t.Fatalf("fits = %v (%q), want %v", st.IsSuccess(), st.Message(), tc.fits)
			}
			if !tc.fits && (st.Message() != nodeunschedulable.ErrReason || st.Code() != framework.UnschedulableAndUnresolvable) {
				t.Errorf("%v %q, want UnschedulableAndUnresolvable %q", st.Code(), st.Message(), nodeunschedulable.ErrReason)
			}
		})
	}
}
