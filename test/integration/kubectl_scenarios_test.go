package integration

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/internal/controller"
	"github.com/skiffhq/skiff/internal/controller/job"
	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/internal/testutil"
)

// TestKubectlScenarios drives user stories of issue 4 through the real
// `skiff kubectl` binary: cascading deletion of a Deployment, deleting a
// namespace with everything in it, and a Job whose first pod fails being
// retried to completion.
func TestKubectlScenarios(t *testing.T) {
	t.Parallel()
	skiffBinary(t) // build now, before any kubectl deadline starts
	cp := testutil.StartControlPlane(t, func(cfg *server.Config) {
		cfg.DisableControllers = append(cfg.DisableControllers, job.Name)
	})
	// The Job controller with a short retry back-off: upstream's first
	// retry waits 10 s.
	testutil.RunController(t, cp, func(cc *controller.Context) (controller.Interface, error) {
		return job.New(cc, job.WithBackoff(100*time.Millisecond, time.Second))
	})
	c := cp.Client
	k := newCLI(t, cp)
	countPods := func(ns string) int {
		pods, err := c.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return -1
		}
		return len(pods.Items)
	}
	readyPods := func(ns string) int {
		pods, err := c.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return -1
		}
		n := 0
		for i := range pods.Items {
			if podReady(&pods.Items[i]) && pods.Items[i].DeletionTimestamp == nil {
				n++
			}
		}
		return n
	}

	t.Run("delete deployment cascades to replica sets and pods", func(t *testing.T) {
		t.Parallel()
		k := k.in(t)
		ns := newNamespace(t, c)
		readyKubelet(t, c, ns)
		k.ok("create", "deployment", "web", "--image=nginx", "--replicas=2", "-n", ns)
		testutil.Eventually(t, 20*time.Second, func() bool { return readyPods(ns) == 2 }, "2 ready pods")
		if rs := strings.Fields(k.ok("get", "rs", "-n", ns, "-o", "name")); len(rs) != 1 {
			t.Fatalf("replica sets = %v, want one", rs)
		}
		out := k.ok("delete", "deploy", "web", "-n", ns)
		if !strings.Contains(out, `deployment.apps "web" deleted`) {
			t.Errorf("delete printed %q", out)
		}
		testutil.Eventually(t, 20*time.Second, func() bool {
			rs, err := c.AppsV1().ReplicaSets(ns).List(context.Background(), metav1.ListOptions{})
			return err == nil && len(rs.Items) == 0 && countPods(ns) == 0
		}, "replica sets and pods deleted; %d pods left", countPods(ns))
		res := k.run("get", "deploy,rs,pods", "-n", ns)
		if res.code != 0 || strings.TrimSpace(res.stdout) != "" || !strings.Contains(res.stderr, "No resources found") {
			t.Errorf("kubectl get after delete: exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
		}
	})

	t.Run("delete namespace removes everything in it then the namespace", func(t *testing.T) {
		t.Parallel()
		k := k.in(t)
		ns := "doomed"
		k.ok("create", "namespace", ns)
		readyKubelet(t, c, ns)
		k.ok("create", "deployment", "web", "--image=nginx", "--replicas=2", "-n", ns)
		k.ok("create", "configmap", "settings", "--from-literal=k=v", "-n", ns)
		k.ok("create", "service", "clusterip", "web", "--tcp=80:80", "-n", ns)
		testutil.Eventually(t, 20*time.Second, func() bool { return readyPods(ns) == 2 }, "2 ready pods")

		// kubectl waits for the namespace to be gone before it returns.
		out := k.ok("delete", "namespace", ns)
		if !strings.Contains(out, `namespace "doomed" deleted`) {
			t.Errorf("delete printed %q", out)
		}
		if _, err := c.CoreV1().Namespaces().Get(testCtx(t), ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("namespace still there after kubectl delete returned: %v", err)
		}
		if msg := k.fails("get", "namespace", ns); !strings.Contains(msg, `namespaces "doomed" not found`) {
			t.Errorf("kubectl get namespace: %q", msg)
		}
		// Nothing of it survives in storage (a namespace of the same name
		// would otherwise inherit it).
		cms, err := c.CoreV1().ConfigMaps(ns).List(testCtx(t), metav1.ListOptions{})
		svcs, err2 := c.CoreV1().Services(ns).List(testCtx(t), metav1.ListOptions{})
		deps, err3 := c.AppsV1().Deployments(ns).List(testCtx(t), metav1.ListOptions{})
		if err != nil || err2 != nil || err3 != nil || len(cms.Items)+len(svcs.Items)+len(deps.Items)+countPods(ns) != 0 {
			t.Errorf("left behind: %d configmaps, %d services, %d deployments, %d pods (%v %v %v)",
				len(cms.Items), len(svcs.Items), len(deps.Items), countPods(ns), err, err2, err3)
		}
	})

	t.Run("job with a failing pod is retried to completion", func(t *testing.T) {
		t.Parallel()
		k := k.in(t)
		ns := newNamespace(t, c)
		var started atomic.Int32
		startFakeKubelet(t, c, ns, 100*time.Millisecond, func(*corev1.Pod) (corev1.PodPhase, int32) {
			if started.Add(1) == 1 {
				return corev1.PodFailed, 1
			}
			return corev1.PodSucceeded, 0
		})
		k.ok("create", "job", "pi", "--image=busybox", "-n", ns)
		k.ok("wait", "--for=condition=complete", "job/pi", "-n", ns, "--timeout=30s")
		got := k.ok("get", "job", "pi", "-n", ns, "-o", "jsonpath={.status.succeeded} {.status.failed}")
		if got != "1 1" {
			t.Errorf("succeeded failed = %q, want \"1 1\"", got)
		}
		pods := k.ok("get", "pods", "-n", ns, "--no-headers", "-o", "custom-columns=PHASE:.status.phase")
		if f := strings.Fields(pods); len(f) != 2 || !strings.Contains(pods, "Failed") || !strings.Contains(pods, "Succeeded") {
			t.Errorf("pods = %q, want one Failed and one Succeeded", pods)
		}
	})
}
