package nodeports_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/internal/scheduler/plugins/nodeports"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/plugintest"
	"github.com/skiffhq/skiff/internal/testutil"
)

func TestFilter(t *testing.T) {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	cases := []struct {
		name     string
		existing *corev1.Pod // bound to node "n"
		pod      *corev1.Pod
		fits     bool
	}{
		{"no host ports", testutil.MakePod("x").HostPort(80, tcp, "").Obj(), testutil.MakePod("p").Obj(), true},
		{"free port", testutil.MakePod("x").HostPort(80, tcp, "").Obj(), testutil.MakePod("p").HostPort(8080, tcp, "").Obj(), true},
		{"same port and protocol", testutil.MakePod("x").HostPort(80, tcp, "").Obj(), testutil.MakePod("p").HostPort(80, tcp, "").Obj(), false},
		{"protocol defaults to TCP", testutil.MakePod("x").HostPort(80, tcp, "").Obj(), testutil.MakePod("p").HostPort(80, "", "").Obj(), false},
		{"other protocol", testutil.MakePod("x").HostPort(53, tcp, "").Obj(), testutil.MakePod("p").HostPort(53, udp, "").Obj(), true},
		{"different host IPs", testutil.MakePod("x").HostPort(80, tcp, "10.0.0.1").Obj(), testutil.MakePod("p").HostPort(80, tcp, "10.0.0.2").Obj(), true},
		{"same host IP", testutil.MakePod("x").HostPort(80, tcp, "10.0.0.1").Obj(), testutil.MakePod("p").HostPort(80, tcp, "10.0.0.1").Obj(), false},
		{"wildcard wants every address", testutil.MakePod("x").HostPort(80, tcp, "10.0.0.1").Obj(), testutil.MakePod("p").HostPort(80, tcp, "0.0.0.0").Obj(), false},
		{"wildcard taken", testutil.MakePod("x").HostPort(80, tcp, "").Obj(), testutil.MakePod("p").HostPort(80, tcp, "10.0.0.1").Obj(), false},
		{"any of the pod's ports", testutil.MakePod("x").HostPort(80, tcp, "").Obj(), testutil.MakePod("p").HostPort(8080, tcp, "").HostPort(80, tcp, "").Obj(), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			existing := tc.existing.DeepCopy()
			existing.Spec.NodeName = "n"
			env := plugintest.New(t, nodeports.Name, nodeports.New, nil,
				[]*corev1.Node{testutil.MakeNode("n").Obj(), testutil.MakeNode("empty").Obj()}, []*corev1.Pod{existing}, nil)
			got, _ := env.Filter(tc.pod)
			if st := got["n"]; st.IsSuccess() != tc.fits {
				t.Fatalf("fits = %v (%v), want %v", st.IsSuccess(), st.Message(), tc.fits)
			}
			if st := got["n"]; !tc.fits && st.Message() != nodeports.ErrReason {
				t.Errorf("reason %q, want %q", st.Message(), nodeports.ErrReason)
			}
			if !got["empty"].IsSuccess() {
				t.Errorf("a node without pods rejects the pod: %v", got["empty"].Message())
			}
		})
	}
}
