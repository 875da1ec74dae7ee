package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiffhq/skiff/internal/agent"
	"github.com/skiffhq/skiff/internal/agent/join"
	"github.com/skiffhq/skiff/internal/etcd"
	"github.com/skiffhq/skiff/internal/pki"
	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/internal/testutil"
)

// TestAgentFailsOver runs two API servers of one cluster (one etcd, one
// CA) and hollow nodes joined to the first. When the first stops, the
// nodes carry on through the second, which they learned from the
// `kubernetes` Endpoints: their Leases keep being renewed, they stay
// Ready, a pod running before keeps running untouched, and a pod bound
// afterwards starts — the pod watch moved too.
func TestAgentFailsOver(t *testing.T) {
	t.Parallel()
	const nodes = 2
	dir := t.TempDir()
	e, err := etcd.New(etcd.Config{
		DataDir:         filepath.Join(dir, "etcd"),
		ListenClientURL: fmt.Sprintf("http://127.0.0.1:%d", testutil.FreePort(t)),
		ListenPeerURL:   fmt.Sprintf("http://127.0.0.1:%d", testutil.FreePort(t)),
		Logger:          testutil.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	shared := func(c *server.Config) {
		c.EtcdEndpoints = e.Endpoints()
		// Pods here are bound by name; no scheduler needed.
		c.Disable = append(c.Disable, "scheduler")
	}
	cp1 := testutil.StartControlPlane(t, shared)
	// The second server gets the first's CA, as servers of one cluster
	// share theirs, and issues its own serving certificate from it.
	dir2 := t.TempDir()
	for _, f := range []string{pki.CACertFile, pki.CAKeyFile} {
		b, err := os.ReadFile(filepath.Join(cp1.DataDir, pki.TLSDirName, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir2, pki.TLSDirName), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir2, pki.TLSDirName, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cp2 := testutil.StartControlPlane(t, shared, func(c *server.Config) { c.DataDir = dir2 })
	testutil.Eventually(t, 15*time.Second, func() bool { return len(apiEndpoints(cp1.Client)) == 2 },
		"kubernetes endpoints list both servers; have %v", apiEndpoints(cp1.Client))

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	creds, err := join.Local(cp1.Server().Bundle(), join.Config{Server: cp1.Server().URL(), Dir: t.TempDir(), NodeName: "failover"})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", creds.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc.QPS, rc.Burst = 50, 100 // as `skiff agent` sets
	done := make(chan error, 1)
	go func() {
		done <- agent.RunHollow(ctx, agent.HollowConfig{
			Count: nodes, NamePrefix: "failover", DataDir: t.TempDir(), REST: rc,
			ServingCert: creds.ServingCert, ClientCAs: creds.ClientCAs, Version: "test", Logger: testutil.Logger(),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hollow nodes: %v", err)
		}
	})
	names := []string{"failover-0", "failover-1"}
	testutil.Eventually(t, 30*time.Second, func() bool { return nodesReady(ctx, cp1.Client, names) },
		"hollow nodes Ready")

	before := failoverPod("before", names[0])
	if _, err := cp1.Client.CoreV1().Pods("default").Create(ctx, before, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var running *corev1.Pod
	testutil.Eventually(t, 30*time.Second, func() bool {
		p, err := cp1.Client.CoreV1().Pods("default").Get(ctx, "before", metav1.GetOptions{})
		if err != nil || p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) != 1 {
			return false
		}
		running = p
		return true
	}, "pod running before the failover")

	stopped := time.Now()
	cp1.Stop()
	c := cp2.Client
	testutil.Eventually(t, 30*time.Second, func() bool {
		for _, n := range names {
			l, err := c.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, n, metav1.GetOptions{})
			if err != nil || l.Spec.RenewTime == nil || !l.Spec.RenewTime.After(stopped) {
				return false
			}
		}
		return true
	}, "node Leases renewed through the second server")
	t.Logf("Leases renewed through the second server %v after the first stopped", time.Since(stopped).Round(time.Millisecond))
	if !nodesReady(ctx, c, names) {
		t.Errorf("nodes not Ready after the failover")
	}

	after := failoverPod("after", names[1])
	if _, err := c.CoreV1().Pods("default").Create(ctx, after, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		p, err := c.CoreV1().Pods("default").Get(ctx, "after", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning
	}, "pod bound after the failover runs")
	t.Logf("pod bound after the failover running %v after the first server stopped", time.Since(stopped).Round(time.Millisecond))

	p, err := c.CoreV1().Pods("default").Get(ctx, "before", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	was, is := running.Status.ContainerStatuses[0], p.Status.ContainerStatuses[0]
	if p.Status.Phase != corev1.PodRunning || is.ContainerID != was.ContainerID || is.RestartCount != 0 {
		t.Errorf("pod from before the failover disturbed: phase %s, container %s (was %s), restarts %d",
			p.Status.Phase, is.ContainerID, was.ContainerID, is.RestartCount)
	}
}

// nodesReady reports whether every named node is Ready.
func nodesReady(ctx context.Context, c kubernetes.Interface, names []string) bool {
	for _, n := range names {
		node, err := c.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		if err != nil || !nodeReady(node) {
			return false
		}
	}
	return true
}

// failoverPod is a pod bound to node.
func failoverPod(name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}},
	}
}
