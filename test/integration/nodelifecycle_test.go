package integration

import (
	"context"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/skiffhq/skiff/internal/controller"
	"github.com/skiffhq/skiff/internal/controller/nodelifecycle"
	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/internal/testutil"
)

// nlReadyNode creates a node that has reported Ready, as a kubelet would.
func nlReadyNode(t *testing.T, c kubernetes.Interface, name string, taints ...corev1.Taint) {
	t.Helper()
	if _, err := c.CoreV1().Nodes().Create(testCtx(t), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{Taints: taints}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create node: %v", err)
	}
	// Node IPAM (spec.podCIDR) and node lifecycle (not-ready taint) write
	// a new node at once too.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.CoreV1().Nodes().Get(testCtx(t), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: now, LastTransitionTime: now}}
		_, err = c.CoreV1().Nodes().UpdateStatus(testCtx(t), n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("node status: %v", err)
	}
}

// nlRenewLease keeps the node's Lease renewed until stop is closed.
func nlRenewLease(t *testing.T, c kubernetes.Interface, node string, stop <-chan struct{}) {
	t.Helper()
	leases := c.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	rt := metav1.NewMicroTime(time.Now())
	l, err := leases.Create(testCtx(t), &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: node},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr(node), LeaseDurationSeconds: ptr(int32(1)), RenewTime: &rt}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create lease: %v", err)
	}
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				l.Spec.RenewTime = ptr(metav1.NewMicroTime(time.Now()))
				if got, err := leases.Update(context.Background(), l, metav1.UpdateOptions{}); err == nil {
					l = got
				}
			}
		}
	}()
}

func nlPod(t *testing.T, c kubernetes.Interface, ns, name, node string, tols ...corev1.Toleration) {
	t.Helper()
	p := makePod(name).Node(node).Obj()
	p.Spec.Tolerations = tols
	if _, err := c.CoreV1().Pods(ns).Create(testCtx(t), p, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod: %v", err)
	}
	podStatus(t, c, ns, name, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		setPodReady(p, true)
	})
}

// nlEvicted reports whether the pod has been deleted (it stays
// Terminating: no kubelet confirms the kill).
func nlEvicted(c kubernetes.Interface, ns, name string) bool {
	p, err := c.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	return apierrors.IsNotFound(err) || (err == nil && p.DeletionTimestamp != nil)
}

func TestNodeLifecycle(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t, func(cfg *server.Config) {
		cfg.DisableControllers = append(cfg.DisableControllers, nodelifecycle.Name)
	})
	testutil.RunController(t, cp, func(cc *controller.Context) (controller.Interface, error) {
		return nodelifecycle.New(cc, nodelifecycle.Config{GracePeriod: 2 * time.Second, MonitorPeriod: 100 * time.Millisecond})
	})
	c := cp.Client
	ns := newNamespace(t, c)

	t.Run("untolerated NoExecute taint evicts", func(t *testing.T) {
		t.Parallel()
		nlReadyNode(t, c, "nl-tainted", corev1.Taint{Key: "example.com/drain", Effect: corev1.TaintEffectNoExecute})
		nlPod(t, c, ns, "evict-me", "nl-tainted")
		nlPod(t, c, ns, "tolerant", "nl-tainted", corev1.Toleration{Key: "example.com/drain", Operator: corev1.TolerationOpExists})
		testutil.Eventually(t, 10*time.Second, func() bool { return nlEvicted(c, ns, "evict-me") }, "evict-me deleted")
		if nlEvicted(c, ns, "tolerant") {
			t.Errorf("a pod tolerating the taint was evicted")
		}
	})

	t.Run("lease stops", func(t *testing.T) {
		t.Parallel()
		nlReadyNode(t, c, "nl-silent")
		stop := make(chan struct{})
		nlRenewLease(t, c, "nl-silent", stop)
		unreachable := func(secs *int64) corev1.Toleration {
			return corev1.Toleration{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: secs}
		}
		nlPod(t, c, ns, "short", "nl-silent", unreachable(ptr(int64(1))))
		nlPod(t, c, ns, "forever", "nl-silent", unreachable(nil))
		nlPod(t, c, ns, "default", "nl-silent") // admission's default seconds

		// Renewals keep it healthy past the grace period.
		renewedUntil := time.Now().Add(3 * time.Second)
		testutil.Eventually(t, 5*time.Second, func() bool { return time.Now().After(renewedUntil) }, "renewals")
		n, err := c.CoreV1().Nodes().Get(testCtx(t), "nl-silent", metav1.GetOptions{})
		if err != nil || len(n.Spec.Taints) != 0 || n.Status.Conditions[0].Status != corev1.ConditionTrue {
			t.Fatalf("renewed node marked unhealthy: %v %v", n, err)
		}
		close(stop)

		testutil.Eventually(t, 10*time.Second, func() bool {
			n, err := c.CoreV1().Nodes().Get(context.Background(), "nl-silent", metav1.GetOptions{})
			if err != nil {
				return false
			}
			unknown, tainted := false, false
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionUnknown && cond.Reason == "NodeStatusUnknown" {
					unknown = true
				}
			}
			for _, tt := range n.Spec.Taints {
				if tt.Key == corev1.TaintNodeUnreachable && tt.Effect == corev1.TaintEffectNoExecute {
					tainted = true
				}
			}
			return unknown && tainted
		}, "node Ready=Unknown with the unreachable taint")
		testutil.Eventually(t, 10*time.Second, func() bool { return nlEvicted(c, ns, "short") }, "short evicted after 1s")
		testutil.Eventually(t, 5*time.Second, func() bool {
			p, err := c.CoreV1().Pods(ns).Get(context.Background(), "forever", metav1.GetOptions{})
			if err != nil {
				return false
			}
			for _, pc := range p.Status.Conditions {
				if pc.Type == corev1.PodReady {
					return pc.Status == corev1.ConditionFalse
				}
			}
			return false
		}, "pods on the node marked not ready")
		if nlEvicted(c, ns, "forever") || nlEvicted(c, ns, "default") {
			t.Errorf("pods tolerating the taint (forever, default seconds) were evicted")
		}

		// The node comes back: its Lease is renewed and it reports Ready
		// again, so the health taints go and the pods stay.
		again := make(chan struct{})
		t.Cleanup(func() { close(again) })
		nlResumeLease(t, c, "nl-silent", again)
		n, err = c.CoreV1().Nodes().Get(testCtx(t), "nl-silent", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		now := metav1.Now()
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: now, LastTransitionTime: now}}
		if _, err := c.CoreV1().Nodes().UpdateStatus(testCtx(t), n, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("node ready again: %v", err)
		}
		testutil.Eventually(t, 10*time.Second, func() bool {
			n, err := c.CoreV1().Nodes().Get(context.Background(), "nl-silent", metav1.GetOptions{})
			return err == nil && len(n.Spec.Taints) == 0
		}, "taints removed from the node that came back")
		// Stays clean across several health checks while renewing.
		checkUntil := time.Now().Add(time.Second)
		testutil.Eventually(t, 5*time.Second, func() bool {
			n, err := c.CoreV1().Nodes().Get(context.Background(), "nl-silent", metav1.GetOptions{})
			if err != nil || len(n.Spec.Taints) != 0 {
				t.Fatalf("returned node tainted again: %v %v", n.Spec.Taints, err)
			}
			return time.Now().After(checkUntil)
		}, "node stays untainted")
		if nlEvicted(c, ns, "default") {
			t.Errorf("pod on the returned node was evicted")
		}
	})
}

// nlResumeLease renews the node's existing Lease until stop is closed.
func nlResumeLease(t *testing.T, c kubernetes.Interface, node string, stop <-chan struct{}) {
	t.Helper()
	leases := c.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	renew := func() {
		l, err := leases.Get(context.Background(), node, metav1.GetOptions{})
		if err != nil {
			return
		}
		l.Spec.RenewTime = ptr(metav1.NewMicroTime(time.Now()))
		_, _ = leases.Update(context.Background(), l, metav1.UpdateOptions{})
	}
	renew()
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				renew()
			}
		}
	}()
}
