package integration

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffhq/skiff/internal/controller"
	"github.com/skiffhq/skiff/internal/controller/podgc"
	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/internal/testutil"
)

func podGone(c kubernetes.Interface, ns, name string) bool {
	_, err := c.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	return apierrors.IsNotFound(err)
}

func TestPodGC(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t, func(cfg *server.Config) {
		cfg.DisableControllers = append(cfg.DisableControllers, podgc.Name)
	})
	c := cp.Client
	ns := newNamespace(t, c)
	if _, err := c.CoreV1().Nodes().Create(testCtx(t), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "gc-node"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Three finished pods, oldest first (names break creation-time ties
	// within a second the same way), one running, one on a node that was
	// never there.
	for _, name := range []string{"done-a", "done-b", "done-c"} {
		if _, err := c.CoreV1().Pods(ns).Create(testCtx(t), makePod(name).Node("gc-node").Obj(), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		podStatus(t, c, ns, name, func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded })
	}
	for name, node := range map[string]string{"running": "gc-node", "orphan": "gc-ghost"} {
		if _, err := c.CoreV1().Pods(ns).Create(testCtx(t), makePod(name).Node(node).Obj(), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		podStatus(t, c, ns, name, func(p *corev1.Pod) { p.Status.Phase = corev1.PodRunning })
	}

	started := time.Now()
	testutil.RunController(t, cp, func(cc *controller.Context) (controller.Interface, error) {
		return podgc.New(cc, podgc.Config{TerminatedPodThreshold: 2, Period: 200 * time.Millisecond, Quarantine: 2 * time.Second})
	})

	testutil.Eventually(t, 10*time.Second, func() bool { return podGone(c, ns, "done-a") }, "oldest terminated pod collected")
	testutil.Eventually(t, 10*time.Second, func() bool { return podGone(c, ns, "orphan") }, "pod of a missing node collected")
	if took := time.Since(started); took < 2*time.Second {
		t.Errorf("pod of a missing node collected after %v, before its 2s quarantine", took)
	}
	for _, name := range []string{"done-b", "done-c", "running"} {
		if podGone(c, ns, name) {
			t.Errorf("pod %s collected, want kept", name)
		}
	}
}
