package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiffhq/skiff/internal/agent"
	"github.com/skiffhq/skiff/internal/agent/join"
	"github.com/skiffhq/skiff/internal/testutil"
)

// TestHollowNodesRunPods runs hollow nodes — real kubelets on the
// simulated runtime — against a real control plane: they register, keep
// Leases, run a Deployment's pods to Ready, answer logs and exec, and
// confirm deletions.
func TestHollowNodesRunPods(t *testing.T) {
	t.Parallel()
	const nodes, replicas = 10, 30
	cp := testutil.StartControlPlane(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	creds, err := join.Local(cp.Server().Bundle(), join.Config{Server: cp.Server().URL(), Dir: t.TempDir(), NodeName: "hollow"})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", creds.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- agent.RunHollow(ctx, agent.HollowConfig{
			Count: nodes, NamePrefix: "hollow", DataDir: t.TempDir(), REST: rc,
			ServingCert: creds.ServingCert, ClientCAs: creds.ClientCAs, Version: "test", Logger: testutil.Logger(),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hollow nodes: %v", err)
		}
	})

	c := cp.Client
	testutil.Eventually(t, 30*time.Second, func() bool {
		list, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "skiff.io/hollow=true"})
		if err != nil || len(list.Items) != nodes {
			return false
		}
		for _, n := range list.Items {
			if !nodeReady(&n) {
				return false
			}
		}
		leases, err := c.CoordinationV1().Leases(corev1.NamespaceNodeLease).List(ctx, metav1.ListOptions{})
		return err == nil && len(leases.Items) == nodes
	}, "%d hollow nodes Ready with Leases", nodes)

	labels := map[string]string{"app": "hollow"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(replicas)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "example.com/app:1",
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}, PeriodSeconds: 1},
				}}},
			},
		},
	}
	if _, err := c.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods []corev1.Pod
	testutil.Eventually(t, 60*time.Second, func() bool {
		list, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=hollow"})
		if err != nil || len(list.Items) != replicas {
			return false
		}
		for _, p := range list.Items {
			if p.Status.Phase != corev1.PodRunning || !podReady(&p) || p.Status.PodIP == "" {
				return false
			}
		}
		pods = list.Items
		return true
	}, "%d pods Running and Ready on hollow nodes", replicas)

	k := newCLI(t, cp)
	p := pods[0]
	if out := k.ok("logs", p.Name); !strings.Contains(out, "simulated container app started") {
		t.Errorf("kubectl logs %s = %q", p.Name, out)
	}
	if out := k.ok("exec", p.Name, "--", "echo", "hi"); !strings.Contains(out, "simulated exec: echo hi") {
		t.Errorf("kubectl exec %s = %q", p.Name, out)
	}

	if err := c.AppsV1().Deployments("default").Delete(ctx, "web", metav1.DeleteOptions{PropagationPolicy: ptr(metav1.DeletePropagationForeground)}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 60*time.Second, func() bool {
		list, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=hollow"})
		return err == nil && len(list.Items) == 0
	}, "pods deleted once their kubelets confirm")
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
