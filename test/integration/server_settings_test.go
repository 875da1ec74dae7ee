package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/internal/testutil"
)

// TestServerSettings checks that `skiff server`'s controller and admission
// settings reach what they configure: the cluster CIDR reaches node IPAM
// and the default toleration seconds reach new pods.
func TestServerSettings(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t, func(c *server.Config) {
		c.ClusterCIDR = "10.99.0.0/16"
		c.DefaultNotReadyTolerationSeconds = 7
		c.DefaultUnreachableTolerationSeconds = 9
	})
	c := cp.Client
	ns := newNamespace(t, c)

	p, err := c.CoreV1().Pods(ns).Create(testCtx(t), makePod("tol").Obj(), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, tol := range p.Spec.Tolerations {
		if tol.Effect == corev1.TaintEffectNoExecute && tol.TolerationSeconds != nil {
			got[tol.Key] = *tol.TolerationSeconds
		}
	}
	if got[corev1.TaintNodeNotReady] != 7 || got[corev1.TaintNodeUnreachable] != 9 || len(got) != 2 {
		t.Errorf("default tolerations = %v, want not-ready 7 s and unreachable 9 s", got)
	}

	if _, err := c.CoreV1().Nodes().Create(testCtx(t), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cidr-node"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var cidr string
	testutil.Eventually(t, 10*time.Second, func() bool {
		n, err := c.CoreV1().Nodes().Get(context.Background(), "cidr-node", metav1.GetOptions{})
		cidr = n.Spec.PodCIDR
		return err == nil && cidr != ""
	}, "node gets a pod CIDR")
	if !strings.HasPrefix(cidr, "10.99.") || !strings.HasSuffix(cidr, "/24") {
		t.Errorf("pod CIDR %q, want a /24 of 10.99.0.0/16", cidr)
	}
}
