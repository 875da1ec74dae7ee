package integration

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiffhq/skiff/internal/agent"
	"github.com/skiffhq/skiff/internal/agent/join"
	"github.com/skiffhq/skiff/internal/runtime/sim"
	"github.com/skiffhq/skiff/internal/testutil"
)

// TestAgentUsesGivenRuntimeEndpoint runs the whole agent against a CRI
// socket it did not start (--container-runtime-endpoint): here the
// simulated runtime served on a unix socket. The node registers with that
// runtime's version, hands it the node's pod CIDR, and runs a pod.
func TestAgentUsesGivenRuntimeEndpoint(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	dir := t.TempDir()
	sock := filepath.Join(dir, "cri.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	rt := sim.New(sim.Config{PodCIDR: netip.MustParsePrefix("10.88.0.0/16")})
	served := make(chan error, 1)
	go func() { served <- rt.Serve(ctx, ln) }()

	creds, err := join.Local(cp.Server().Bundle(), join.Config{Server: cp.Server().URL(), Dir: filepath.Join(dir, "pki"), NodeName: "ext"})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", creds.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		DataDir: filepath.Join(dir, "agent"), NodeName: "ext", NodeIP: net.IPv4(127, 0, 0, 1),
		KubeletPort: testutil.FreePort(t), RuntimeEndpoint: "unix://" + sock,
		REST: rc, ServingCert: creds.ServingCert, ClientCAs: creds.ClientCAs,
		Version: "test", Logger: testutil.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("agent: %v", err)
		}
		<-served
	})

	c := cp.Client
	var node *corev1.Node
	testutil.Eventually(t, 30*time.Second, func() bool {
		n, err := c.CoreV1().Nodes().Get(ctx, "ext", metav1.GetOptions{})
		if err != nil || !nodeReady(n) || n.Spec.PodCIDR == "" {
			return false
		}
		node = n
		return true
	}, "node ext Ready with a pod CIDR")
	if v := node.Status.NodeInfo.ContainerRuntimeVersion; !strings.HasPrefix(v, sim.RuntimeName+"://") {
		t.Errorf("containerRuntimeVersion = %q, want the given runtime's", v)
	}

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "on-ext", Namespace: "default"},
		Spec:       corev1.PodSpec{NodeName: "ext", Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}},
	}
	if _, err := c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, cidr, _ := net.ParseCIDR(node.Spec.PodCIDR)
	testutil.Eventually(t, 30*time.Second, func() bool {
		p, err := c.CoreV1().Pods("default").Get(ctx, "on-ext", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning && cidr.Contains(net.ParseIP(p.Status.PodIP))
	}, "pod Running with an IP from the node's pod CIDR %s", node.Spec.PodCIDR)
}
