package integration

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/skiffhq/skiff/internal/testutil"
)

// waitDeploymentDone waits until name's rollout of want replicas is
// complete as `kubectl rollout status` judges it, and returns it.
func waitDeploymentDone(t *testing.T, c kubernetes.Interface, ns, name string, want int32) *appsv1.Deployment {
	t.Helper()
	var d *appsv1.Deployment
	testutil.Eventually(t, 30*time.Second, func() bool {
		var err error
		d, err = c.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		s := d.Status
		return s.ObservedGeneration == d.Generation && *d.Spec.Replicas == want && s.Replicas == want &&
			s.UpdatedReplicas == want && s.ReadyReplicas == want && s.AvailableReplicas == want && s.UnavailableReplicas == 0 &&
			len(livePods(t, c, ns, "app="+name)) == int(want)
	}, "deployment %s complete at %d replicas; last status %+v", name, want, func() any {
		if d == nil {
			return nil
		}
		return d.Status
	}())
	return d
}

// ownedReplicaSets lists the ReplicaSets d controls, keyed by name.
func ownedReplicaSets(t *testing.T, c kubernetes.Interface, d *appsv1.Deployment) map[string]*appsv1.ReplicaSet {
	t.Helper()
	list, err := c.AppsV1().ReplicaSets(d.Namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*appsv1.ReplicaSet{}
	for i := range list.Items {
		rs := &list.Items[i]
		if ref := metav1.GetControllerOf(rs); ref != nil && ref.UID == d.UID {
			out[rs.Name] = rs
		}
	}
	return out
}

// readyFloor samples the ready, non-terminating pods of app until stop is
// called and returns the smallest count seen.
func readyFloor(t *testing.T, c kubernetes.Interface, ns, app string) (stop func() int) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	lowest := 1 << 30
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond) // sampling rate, not synchronisation
		defer tick.Stop()
		for ; ctx.Err() == nil; <-tick.C {
			list, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
			if err != nil {
				continue
			}
			n := 0
			for i := range list.Items {
				if list.Items[i].DeletionTimestamp == nil && isReady(&list.Items[i]) {
					n++
				}
			}
			lowest = min(lowest, n)
		}
	})
	return func() int { cancel(); wg.Wait(); return lowest }
}

func setImage(t *testing.T, c kubernetes.Interface, ns, name, image string) {
	t.Helper()
	// The controller writes the deployment too (revision annotation), so
	// retry on conflict as any client must.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := c.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		d.Spec.Template.Spec.Containers[0].Image = image
		_, err = c.AppsV1().Deployments(ns).Update(context.Background(), d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestDeploymentRollingUpdate(t *testing.T) {
	t.Parallel()
	skiffBinary(t) // build now, before any kubectl deadline starts
	cp := testutil.StartControlPlane(t)
	c := cp.Client
	ns := newNamespace(t, c)
	ctx := testCtx(t)
	readyKubelet(t, c, ns)

	dep := makeDeployment("web", 3)
	dep.Spec.Strategy = appsv1.DeploymentStrategy{
		Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{
			MaxUnavailable: ptr(intstr.FromInt32(0)),
			MaxSurge:       ptr(intstr.FromInt32(1)),
		},
	}
	if _, err := c.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d := waitDeploymentDone(t, c, ns, "web", 3)
	rss := ownedReplicaSets(t, c, d)
	if len(rss) != 1 {
		t.Fatalf("%d replica sets, want 1", len(rss))
	}
	var first *appsv1.ReplicaSet
	for _, rs := range rss {
		first = rs
	}
	hash := first.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	if hash == "" || first.Name != "web-"+hash || first.Spec.Selector.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] != hash {
		t.Fatalf("replica set %s: labels %v selector %v, want web-<pod-template-hash>", first.Name, first.Labels, first.Spec.Selector)
	}
	if got := first.Annotations["deployment.kubernetes.io/revision"]; got != "1" {
		t.Errorf("replica set revision %q, want 1", got)
	}
	if got := d.Annotations["deployment.kubernetes.io/revision"]; got != "1" {
		t.Errorf("deployment revision %q, want 1", got)
	}
	for _, p := range livePods(t, c, ns, "app=web") {
		if p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != hash {
			t.Errorf("pod %s lacks pod-template-hash=%s: %v", p.Name, hash, p.Labels)
		}
	}
	assertCondition(t, d, appsv1.DeploymentAvailable, corev1.ConditionTrue, "MinimumReplicasAvailable")
	assertCondition(t, d, appsv1.DeploymentProgressing, corev1.ConditionTrue, "NewReplicaSetAvailable")

	t.Run("scale", func(t *testing.T) {
		kubectlOK(t, cp, "-n", ns, "scale", "deployment/web", "--replicas=5")
		waitDeploymentDone(t, c, ns, "web", 5)
		kubectlOK(t, cp, "-n", ns, "scale", "deployment/web", "--replicas=1")
		waitDeploymentDone(t, c, ns, "web", 1)
		kubectlOK(t, cp, "-n", ns, "scale", "deployment/web", "--replicas=3")
		waitDeploymentDone(t, c, ns, "web", 3)
	})

	t.Run("rolling update keeps 3 ready", func(t *testing.T) {
		stop := readyFloor(t, c, ns, "web")
		setImage(t, c, ns, "web", "nginx:2")
		kubectlOK(t, cp, "-n", ns, "rollout", "status", "deployment/web", "--timeout=30s")
		d := waitDeploymentDone(t, c, ns, "web", 3)
		if low := stop(); low < 3 {
			t.Errorf("ready pods fell to %d during the rollout, want at least 3 (maxUnavailable=0)", low)
		}
		rss := ownedReplicaSets(t, c, d)
		if len(rss) != 2 {
			t.Fatalf("%d replica sets, want 2", len(rss))
		}
		if old := rss[first.Name]; old == nil || *old.Spec.Replicas != 0 {
			t.Errorf("old replica set %s not scaled to 0: %+v", first.Name, old)
		}
		if got := d.Annotations["deployment.kubernetes.io/revision"]; got != "2" {
			t.Errorf("deployment revision %q, want 2", got)
		}
		for _, p := range livePods(t, c, ns, "app=web") {
			if p.Spec.Containers[0].Image != "nginx:2" {
				t.Errorf("pod %s runs %s after the rollout", p.Name, p.Spec.Containers[0].Image)
			}
		}
		waitEventMessage(t, c, ns, "web", "ScalingReplicaSet", "Scaled down replica set "+first.Name+" from 1 to 0")
	})

	t.Run("rollout history and undo", func(t *testing.T) {
		out := kubectlOK(t, cp, "-n", ns, "rollout", "history", "deployment/web")
		if !historyHas(out, "1") {
			t.Errorf("history lacks revision 1:\n%s", out)
		}
		if !historyHas(out, "2") {
			t.Errorf("history lacks revision 2:\n%s", out)
		}
		kubectlOK(t, cp, "-n", ns, "rollout", "undo", "deployment/web")
		kubectlOK(t, cp, "-n", ns, "rollout", "status", "deployment/web", "--timeout=30s")
		d := waitDeploymentDone(t, c, ns, "web", 3)
		if img := d.Spec.Template.Spec.Containers[0].Image; img != "nginx" {
			t.Errorf("template image %s after undo, want nginx", img)
		}
		rss := ownedReplicaSets(t, c, d)
		old := rss[first.Name]
		if old == nil || *old.Spec.Replicas != 3 || old.Annotations["deployment.kubernetes.io/revision"] != "3" {
			t.Fatalf("first replica set after undo: %+v, want 3 replicas at revision 3", old)
		}
		if got := d.Annotations["deployment.kubernetes.io/revision"]; got != "3" {
			t.Errorf("deployment revision %q, want 3", got)
		}
		if len(rss) != 2 {
			t.Errorf("%d replica sets after undo, want 2", len(rss))
		}
	})

	t.Run("pause and resume", func(t *testing.T) {
		kubectlOK(t, cp, "-n", ns, "rollout", "pause", "deployment/web")
		setImage(t, c, ns, "web", "nginx:3")
		testutil.Eventually(t, 30*time.Second, func() bool {
			d, err := c.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
			cond := condFor(d, appsv1.DeploymentProgressing)
			return err == nil && d.Status.ObservedGeneration == d.Generation && cond != nil && cond.Reason == "DeploymentPaused"
		}, "paused deployment observed")
		d, _ := c.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if n := len(ownedReplicaSets(t, c, d)); n != 2 {
			t.Fatalf("%d replica sets while paused, want still 2", n)
		}
		kubectlOK(t, cp, "-n", ns, "rollout", "resume", "deployment/web")
		kubectlOK(t, cp, "-n", ns, "rollout", "status", "deployment/web", "--timeout=30s")
		d = waitDeploymentDone(t, c, ns, "web", 3)
		if n := len(ownedReplicaSets(t, c, d)); n != 3 {
			t.Fatalf("%d replica sets after resume, want 3", n)
		}
		for _, p := range livePods(t, c, ns, "app=web") {
			if p.Spec.Containers[0].Image != "nginx:3" {
				t.Errorf("pod %s runs %s after resume", p.Name, p.Spec.Containers[0].Image)
			}
		}
	})

	t.Run("restart", func(t *testing.T) {
		before := map[string]bool{}
		for _, p := range livePods(t, c, ns, "app=web") {
			before[p.Name] = true
		}
		kubectlOK(t, cp, "-n", ns, "rollout", "restart", "deployment/web")
		kubectlOK(t, cp, "-n", ns, "rollout", "status", "deployment/web", "--timeout=30s")
		d := waitDeploymentDone(t, c, ns, "web", 3)
		if d.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] == "" {
			t.Errorf("template lacks restartedAt: %v", d.Spec.Template.Annotations)
		}
		for _, p := range livePods(t, c, ns, "app=web") {
			if before[p.Name] {
				t.Errorf("pod %s survived the restart", p.Name)
			}
		}
	})
}

func TestDeploymentRecreate(t *testing.T) {
	t.Parallel()
	skiffBinary(t) // build now, before any kubectl deadline starts
	cp := testutil.StartControlPlane(t)
	c := cp.Client
	ns := newNamespace(t, c)
	ctx := testCtx(t)
	readyKubelet(t, c, ns)

	dep := makeDeployment("db", 2)
	dep.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	if _, err := c.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitDeploymentDone(t, c, ns, "db", 2)

	// Sample every pod, terminating ones included: the two versions must
	// never exist at the same time.
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var overlap string
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond) // sampling rate, not synchronisation
		defer tick.Stop()
		for ; sctx.Err() == nil; <-tick.C {
			list, err := c.CoreV1().Pods(ns).List(sctx, metav1.ListOptions{LabelSelector: "app=db"})
			if err != nil {
				continue
			}
			images := map[string]bool{}
			for _, p := range list.Items {
				images[p.Spec.Containers[0].Image] = true
			}
			if len(images) > 1 && overlap == "" {
				overlap = strings.Join(podNames(list.Items), ",")
			}
		}
	})
	setImage(t, c, ns, "db", "postgres:17")
	kubectlOK(t, cp, "-n", ns, "rollout", "status", "deployment/db", "--timeout=30s")
	d := waitDeploymentDone(t, c, ns, "db", 2)
	cancel()
	wg.Wait()
	if overlap != "" {
		t.Errorf("old and new pods existed together: %s", overlap)
	}
	for _, p := range livePods(t, c, ns, "app=db") {
		if p.Spec.Containers[0].Image != "postgres:17" {
			t.Errorf("pod %s runs %s", p.Name, p.Spec.Containers[0].Image)
		}
	}
	if n := len(ownedReplicaSets(t, c, d)); n != 2 {
		t.Errorf("%d replica sets, want 2", n)
	}
}

func TestDeploymentProgressDeadline(t *testing.T) {
	t.Parallel()
	skiffBinary(t) // build now, before any kubectl deadline starts
	cp := testutil.StartControlPlane(t)
	c := cp.Client
	ns := newNamespace(t, c)
	ctx := testCtx(t)
	// No kubelet: the pods never become ready.
	dep := makeDeployment("stuck", 2)
	dep.Spec.ProgressDeadlineSeconds = ptr(int32(2))
	if _, err := c.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var d *appsv1.Deployment
	testutil.Eventually(t, 20*time.Second, func() bool {
		var err error
		d, err = c.AppsV1().Deployments(ns).Get(ctx, "stuck", metav1.GetOptions{})
		cond := condFor(d, appsv1.DeploymentProgressing)
		return err == nil && cond != nil && cond.Status == corev1.ConditionFalse && cond.Reason == "ProgressDeadlineExceeded"
	}, "Progressing=False ProgressDeadlineExceeded")
	assertCondition(t, d, appsv1.DeploymentAvailable, corev1.ConditionFalse, "MinimumReplicasUnavailable")
	if d.Status.UnavailableReplicas != 2 || d.Status.AvailableReplicas != 0 {
		t.Errorf("status %+v, want 2 unavailable", d.Status)
	}
	out, err := kubectlRun(t, cp, "-n", ns, "rollout", "status", "deployment/stuck", "--timeout=20s")
	if err == nil || !strings.Contains(out, "exceeded its progress deadline") {
		t.Errorf("rollout status: err %v, output:\n%s", err, out)
	}
}

func condFor(d *appsv1.Deployment, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	if d == nil {
		return nil
	}
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == t {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

func assertCondition(t *testing.T, d *appsv1.Deployment, ct appsv1.DeploymentConditionType, status corev1.ConditionStatus, reason string) {
	t.Helper()
	c := condFor(d, ct)
	if c == nil || c.Status != status || c.Reason != reason {
		t.Errorf("condition %s = %+v, want %s %s", ct, c, status, reason)
	}
}

// waitEventMessage waits for an event on deployment name with reason and
// a message containing msg.
func waitEventMessage(t *testing.T, c kubernetes.Interface, ns, name, reason, msg string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() bool {
		evs, err := c.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Kind == "Deployment" && e.InvolvedObject.Name == name && e.Reason == reason && strings.Contains(e.Message, msg) {
				return true
			}
		}
		return false
	}, "event %s %q on deployment %s", reason, msg, name)
}

func podNames(pods []corev1.Pod) []string {
	out := make([]string, len(pods))
	for i, p := range pods {
		out[i] = p.Name + "=" + p.Spec.Containers[0].Image
	}
	return out
}

// historyHas reports whether `rollout history` output lists revision rev.
func historyHas(out, rev string) bool {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == rev {
			return true
		}
	}
	return false
}
