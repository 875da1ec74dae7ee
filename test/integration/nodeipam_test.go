package integration

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffhq/skiff/internal/controller"
	"github.com/skiffhq/skiff/internal/controller/nodeipam"
	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/internal/testutil"
)

// ipamCIDRs waits for the nodes to have pod CIDRs and returns them.
func ipamCIDRs(t *testing.T, c kubernetes.Interface, names ...string) map[string]string {
	t.Helper()
	got := map[string]string{}
	testutil.Eventually(t, 30*time.Second, func() bool {
		for _, n := range names {
			node, err := c.CoreV1().Nodes().Get(context.Background(), n, metav1.GetOptions{})
			if err != nil || node.Spec.PodCIDR == "" {
				return false
			}
			if len(node.Spec.PodCIDRs) != 1 || node.Spec.PodCIDRs[0] != node.Spec.PodCIDR {
				t.Fatalf("node %s: podCIDR %q podCIDRs %v", n, node.Spec.PodCIDR, node.Spec.PodCIDRs)
			}
			got[n] = node.Spec.PodCIDR
		}
		return true
	}, "pod CIDRs for %v", names)
	return got
}

func TestNodeIPAM(t *testing.T) {
	t.Parallel()
	// The test runs the controller itself so it can stop and start it
	// quickly; the manager's copy is off.
	cp := testutil.StartControlPlane(t, func(cfg *server.Config) {
		cfg.DisableControllers = append(cfg.DisableControllers, nodeipam.Name)
	})
	build := func(cc *controller.Context) (controller.Interface, error) { return nodeipam.New(cc, nodeipam.Config{}) }
	c := cp.Client
	_, cluster, _ := net.ParseCIDR("10.42.0.0/16")
	mk := func(t *testing.T, name string) {
		if _, err := c.CoreV1().Nodes().Create(testCtx(t), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create node: %v", err)
		}
	}
	seen := map[string]string{}
	t.Run("distinct subnets", func(t *testing.T) {
		testutil.RunController(t, cp, build) // stops when this subtest ends
		var names []string
		for i := 0; i < 3; i++ {
			names = append(names, fmt.Sprintf("ipam-%d", i))
			mk(t, names[i])
		}
		for n, cidr := range ipamCIDRs(t, c, names...) {
			ip, sub, err := net.ParseCIDR(cidr)
			if ones, _ := sub.Mask.Size(); err != nil || ones != 24 || !cluster.Contains(ip) {
				t.Errorf("node %s got %s, want a /24 of %s", n, cidr, cluster)
			}
			if other, dup := seen[cidr]; dup {
				t.Errorf("%s given to both %s and %s", cidr, other, n)
			}
			seen[cidr] = n
		}
	})
	t.Run("restarted controller rebuilds from nodes", func(t *testing.T) {
		testutil.RunController(t, cp, build)
		mk(t, "ipam-after")
		cidr := ipamCIDRs(t, c, "ipam-after")["ipam-after"]
		if other, dup := seen[cidr]; dup {
			t.Errorf("after restart %s given again (already %s's)", cidr, other)
		}
	})
}
