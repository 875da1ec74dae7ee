package integration

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffhq/skiff/internal/testutil"
)

// readyKubelet stands in for a node agent in namespace ns until the test
// ends: it binds every pod to a fake node, reports it Running and Ready
// with a pod IP, and finishes the deletion of terminating pods, which a
// real kubelet would do once their containers stopped.
func readyKubelet(t *testing.T, c kubernetes.Interface, ns string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		ip := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				continue
			}
			for i := range pods.Items {
				p := &pods.Items[i]
				switch {
				case p.DeletionTimestamp != nil:
					zero := int64(0)
					_ = c.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
				case p.Spec.NodeName == "":
					_ = c.CoreV1().Pods(ns).Bind(ctx, &corev1.Binding{
						ObjectMeta: metav1.ObjectMeta{Name: p.Name, UID: p.UID},
						Target:     corev1.ObjectReference{Kind: "Node", Name: "fake-node"},
					}, metav1.CreateOptions{})
				case p.Status.Phase != corev1.PodRunning:
					ip++
					now := metav1.Now()
					p.Status.Phase = corev1.PodRunning
					p.Status.PodIP = fmt.Sprintf("10.42.%d.%d", ip/250, ip%250+2)
					p.Status.PodIPs = []corev1.PodIP{{IP: p.Status.PodIP}}
					p.Status.StartTime = &now
					p.Status.Conditions = []corev1.PodCondition{
						{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
						{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
						{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
					}
					_, _ = c.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
				}
			}
		}
	}()
}

// livePods lists the pods of ns that are not terminating and match sel.
func livePods(t *testing.T, c kubernetes.Interface, ns, sel string) []corev1.Pod {
	t.Helper()
	list, err := c.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		t.Fatalf("list pods: %v", err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// kubectlRun runs the real `skiff kubectl` against cp and returns its
// combined output and error.
func kubectlRun(t *testing.T, cp *testutil.ControlPlane, args ...string) (string, error) {
	t.Helper()
	bin := skiffBinary(t) // before the deadline starts: the first call builds
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"kubectl", "--kubeconfig", cp.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// kubectlOK is kubectlRun that fails the test unless kubectl exits 0.
func kubectlOK(t *testing.T, cp *testutil.ControlPlane, args ...string) string {
	t.Helper()
	out, err := kubectlRun(t, cp, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func makeReplicaSet(name string, replicas int32) *appsv1.ReplicaSet {
	labels := map[string]string{"app": name}
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}},
			},
		},
	}
}

func TestReplicaSetLifecycle(t *testing.T) {
	t.Parallel()
	skiffBinary(t) // build now, before any kubectl deadline starts
	cp := testutil.StartControlPlane(t)
	c := cp.Client
	ns := newNamespace(t, c)
	ctx := testCtx(t)
	readyKubelet(t, c, ns)

	rs, err := c.AppsV1().ReplicaSets(ns).Create(ctx, makeReplicaSet("web", 3), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitRS := func(want int32) {
		t.Helper()
		testutil.Eventually(t, 20*time.Second, func() bool {
			got, err := c.AppsV1().ReplicaSets(ns).Get(ctx, "web", metav1.GetOptions{})
			return err == nil && got.Status.ObservedGeneration == got.Generation &&
				got.Status.Replicas == want && got.Status.ReadyReplicas == want && got.Status.AvailableReplicas == want &&
				got.Status.FullyLabeledReplicas == want && len(livePods(t, c, ns, "app=web")) == int(want)
		}, "replica set web at %d ready replicas", want)
	}
	waitRS(3)
	for _, p := range livePods(t, c, ns, "app=web") {
		ref := metav1.GetControllerOf(&p)
		if ref == nil || ref.UID != rs.UID || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
			t.Errorf("pod %s: controller ref %+v, want web with blockOwnerDeletion", p.Name, ref)
		}
		if !strings.HasPrefix(p.Name, "web-") {
			t.Errorf("pod name %s lacks the web- prefix", p.Name)
		}
	}

	t.Run("deleted pod is replaced", func(t *testing.T) {
		victim := livePods(t, c, ns, "app=web")[0]
		if err := c.CoreV1().Pods(ns).Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 20*time.Second, func() bool {
			pods := livePods(t, c, ns, "app=web")
			for _, p := range pods {
				if p.Name == victim.Name {
					return false
				}
			}
			return len(pods) == 3
		}, "pod %s replaced", victim.Name)
		waitRS(3)
	})

	t.Run("kubectl scale", func(t *testing.T) {
		kubectlOK(t, cp, "-n", ns, "scale", "rs", "web", "--replicas=5")
		waitRS(5)
		kubectlOK(t, cp, "-n", ns, "scale", "rs", "web", "--replicas=1")
		waitRS(1)
	})

	t.Run("adopts orphan and releases relabelled pod", func(t *testing.T) {
		// The orphan exists first, so the new ReplicaSet adopts it instead
		// of creating a pod of its own.
		if _, err := c.CoreV1().Pods(ns).Create(ctx, makePod("orphan").Labels("app", "adopt").Obj(), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		adopter, err := c.AppsV1().ReplicaSets(ns).Create(ctx, makeReplicaSet("adopt", 1), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 20*time.Second, func() bool {
			p, err := c.CoreV1().Pods(ns).Get(ctx, "orphan", metav1.GetOptions{})
			if err != nil {
				return false
			}
			ref := metav1.GetControllerOf(p)
			got, err := c.AppsV1().ReplicaSets(ns).Get(ctx, "adopt", metav1.GetOptions{})
			return ref != nil && ref.UID == adopter.UID && err == nil && got.Status.ReadyReplicas == 1
		}, "orphan adopted by rs/adopt")
		if n := len(livePods(t, c, ns, "app=adopt")); n != 1 {
			t.Fatalf("%d pods after adoption, want the orphan alone", n)
		}
		// Relabelled, it is released and replaced.
		patch := `{"metadata":{"labels":{"app":"other"}}}`
		if _, err := c.CoreV1().Pods(ns).Patch(ctx, "orphan", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 20*time.Second, func() bool {
			p, err := c.CoreV1().Pods(ns).Get(ctx, "orphan", metav1.GetOptions{})
			pods := livePods(t, c, ns, "app=adopt")
			return err == nil && metav1.GetControllerOf(p) == nil && len(pods) == 1 && pods[0].Name != "orphan"
		}, "relabelled pod released and replaced")
	})

	t.Run("events", func(t *testing.T) {
		testutil.Eventually(t, 30*time.Second, func() bool {
			evs, err := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false
			}
			seen := map[string]bool{}
			for _, e := range evs.Items {
				if e.InvolvedObject.Name == "web" && e.InvolvedObject.Kind == "ReplicaSet" {
					seen[e.Reason] = true
				}
			}
			return seen["SuccessfulCreate"] && seen["SuccessfulDelete"]
		}, "SuccessfulCreate and SuccessfulDelete events on rs/web")
	})

	t.Run("deleting the replica set", func(t *testing.T) {
		if err := c.AppsV1().ReplicaSets(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err := c.AppsV1().ReplicaSets(ns).Get(ctx, "web", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Fatalf("replica set still there: %v", err)
		}
	})
}

// TestReplicaSetNoOverCreation checks the expectations: a ReplicaSet of 20
// created at once never has more than 20 pods, however the watch lags.
func TestReplicaSetNoOverCreation(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t)
	c := cp.Client
	ns := newNamespace(t, c)
	ctx := testCtx(t)
	if _, err := c.AppsV1().ReplicaSets(ns).Create(ctx, makeReplicaSet("big", 20), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Sample until 20 pods exist (however slow the machine), then for a
	// while longer: an over-creation shows up once the lagging watch
	// delivers the first pods, after the first 20 are there.
	var reached time.Time
	deadline := time.Now().Add(30 * time.Second)
	for reached.IsZero() || time.Since(reached) < 3*time.Second {
		n := len(livePods(t, c, ns, "app=big"))
		if n > 20 {
			t.Fatalf("%d pods for a ReplicaSet of 20", n)
		}
		if n == 20 && reached.IsZero() {
			reached = time.Now()
		}
		if reached.IsZero() && time.Now().After(deadline) {
			t.Fatalf("never reached 20 pods within 30s (%d)", n)
		}
		time.Sleep(50 * time.Millisecond) // sampling interval, not synchronisation
	}
}
