package integration

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"

	"github.com/skiffhq/skiff/internal/testutil"
)

// podFate says how the fake kubelet ends a pod: phase Succeeded or
// Failed with the container's exit code; "" leaves it running.
type podFate func(pod *corev1.Pod) (corev1.PodPhase, int32)

// fakeKubelet plays the node agent for the pods of one namespace: each
// new pod is marked Running and Ready, and after runFor it ends as fate
// decides. It records the most pods it ever saw running at once.
type fakeKubelet struct {
	mu        sync.Mutex
	maxActive int
}

func (k *fakeKubelet) MaxActive() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.maxActive
}

func startFakeKubelet(t *testing.T, c kubernetes.Interface, ns string, runFor time.Duration, fate podFate) *fakeKubelet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	k := &fakeKubelet{}
	f := informers.NewSharedInformerFactoryWithOptions(c, 0, informers.WithNamespace(ns))
	t.Cleanup(func() { cancel(); f.Shutdown() })
	inf := f.Core().V1().Pods()
	lister := inf.Lister()
	_, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(obj any) {
		pod := obj.(*corev1.Pod)
		if pod.Status.Phase != "" && pod.Status.Phase != corev1.PodPending {
			return
		}
		pods, _ := lister.List(labels.Everything())
		n := 0
		for _, p := range pods {
			if p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				n++
			}
		}
		k.mu.Lock()
		k.maxActive = max(k.maxActive, n)
		k.mu.Unlock()
		go k.run(ctx, c, pod, runFor, fate)
	}})
	if err != nil {
		t.Fatal(err)
	}
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	return k
}

// run simulates one pod's life: running for d (the simulated runtime of
// its container), then ending as fate says.
func (k *fakeKubelet) run(ctx context.Context, c kubernetes.Interface, pod *corev1.Pod, d time.Duration, fate podFate) {
	now := metav1.Now()
	name := pod.Spec.Containers[0].Name
	err := setPodStatus(ctx, c, pod, func(st *corev1.PodStatus) {
		st.Phase = corev1.PodRunning
		st.StartTime = &now
		st.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}
		st.ContainerStatuses = []corev1.ContainerStatus{{Name: name, Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}
	})
	if err != nil {
		return
	}
	phase, code := fate(pod)
	if phase == "" {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(d):
	}
	end := metav1.Now()
	_ = setPodStatus(ctx, c, pod, func(st *corev1.PodStatus) {
		st.Phase = phase
		st.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: end}}
		st.ContainerStatuses = []corev1.ContainerStatus{{Name: name, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: code, StartedAt: now, FinishedAt: end,
		}}}}
	})
}

// setPodStatus writes a pod's status as a kubelet does: on the latest
// version, again on conflict (other components touch pods too).
func setPodStatus(ctx context.Context, c kubernetes.Interface, pod *corev1.Pod, mutate func(*corev1.PodStatus)) error {
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		cur, err := c.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		mutate(&cur.Status)
		_, err = c.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
}

func succeed(*corev1.Pod) (corev1.PodPhase, int32)    { return corev1.PodSucceeded, 0 }
func runForever(*corev1.Pod) (corev1.PodPhase, int32) { return "", 0 }
func failWith(code int32) podFate {
	return func(*corev1.Pod) (corev1.PodPhase, int32) { return corev1.PodFailed, code }
}

func makeJob(name string, completions, parallelism int32) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			Completions: &completions,
			Parallelism: &parallelism,
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{{Name: "main", Image: "busybox"}},
			}},
		},
	}
}

// waitJobCondition waits for a true condition of type ct and returns the Job.
func waitJobCondition(t *testing.T, c kubernetes.Interface, ns, name string, ct batchv1.JobConditionType) *batchv1.Job {
	t.Helper()
	var job *batchv1.Job
	testutil.Eventually(t, 30*time.Second, func() bool {
		j, err := c.BatchV1().Jobs(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		job = j
		for _, cd := range j.Status.Conditions {
			if cd.Type == ct && cd.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	}, "job %s/%s condition %s", ns, name, ct)
	return job
}

func failedReason(job *batchv1.Job) string {
	for _, cd := range job.Status.Conditions {
		if cd.Type == batchv1.JobFailed && cd.Status == corev1.ConditionTrue {
			return cd.Reason
		}
	}
	return ""
}

// jobPods lists the Job's pods by its generated selector label.
func jobPods(t *testing.T, c kubernetes.Interface, job *batchv1.Job) []corev1.Pod {
	t.Helper()
	list, err := c.CoreV1().Pods(job.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: batchv1.ControllerUidLabel + "=" + string(job.UID)})
	if err != nil {
		t.Fatalf("list pods: %v", err)
	}
	return list.Items
}

func TestJobController(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t)
	c := cp.Client

	create := func(t *testing.T, ns string, job *batchv1.Job) *batchv1.Job {
		t.Helper()
		out, err := c.BatchV1().Jobs(ns).Create(context.Background(), job, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create job: %v", err)
		}
		return out
	}

	t.Run("completions 3 parallelism 2", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, c)
		k := startFakeKubelet(t, c, ns, 200*time.Millisecond, succeed)
		create(t, ns, makeJob("pi", 3, 2))
		job := waitJobCondition(t, c, ns, "pi", batchv1.JobComplete)
		if job.Status.Succeeded != 3 || job.Status.Active != 0 || job.Status.CompletionTime == nil || job.Status.StartTime == nil {
			t.Errorf("status = %+v, want 3 succeeded, none active, start and completion times", job.Status)
		}
		if got := k.MaxActive(); got > 2 || got == 0 {
			t.Errorf("at most %d pods ran at once, want 1..2", got)
		}
		pods := jobPods(t, c, job)
		if len(pods) != 3 {
			t.Errorf("job has %d pods, want 3", len(pods))
		}
		for _, p := range pods {
			ref := metav1.GetControllerOf(&p)
			if ref == nil || ref.UID != job.UID || p.Labels[batchv1.JobNameLabel] != "pi" {
				t.Errorf("pod %s: controller %v labels %v", p.Name, ref, p.Labels)
			}
			if len(p.Finalizers) != 0 {
				t.Errorf("pod %s still has finalizers %v after being counted", p.Name, p.Finalizers)
			}
		}
		if job.Status.UncountedTerminatedPods != nil && len(job.Status.UncountedTerminatedPods.Succeeded) > 0 {
			t.Errorf("uncounted pods left: %+v", job.Status.UncountedTerminatedPods)
		}
	})

	t.Run("indexed", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, c)
		startFakeKubelet(t, c, ns, 50*time.Millisecond, succeed)
		j := makeJob("idx", 3, 3)
		j.Spec.CompletionMode = ptr(batchv1.IndexedCompletion)
		create(t, ns, j)
		job := waitJobCondition(t, c, ns, "idx", batchv1.JobComplete)
		if job.Status.CompletedIndexes != "0-2" {
			t.Errorf("completedIndexes = %q, want 0-2", job.Status.CompletedIndexes)
		}
		seen := map[string]bool{}
		for _, p := range jobPods(t, c, job) {
			ix := p.Annotations[batchv1.JobCompletionIndexAnnotation]
			seen[ix] = true
			if p.Labels[batchv1.JobCompletionIndexAnnotation] != ix || p.Spec.Hostname != "idx-"+ix || !strings.HasPrefix(p.Name, "idx-"+ix+"-") {
				t.Errorf("pod %s: index %q label %q hostname %q", p.Name, ix, p.Labels[batchv1.JobCompletionIndexAnnotation], p.Spec.Hostname)
			}
		}
		if len(seen) != 3 {
			t.Errorf("indexes seen %v, want 0, 1, 2", seen)
		}
	})

	t.Run("backoff limit", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, c)
		startFakeKubelet(t, c, ns, 50*time.Millisecond, failWith(1))
		// Two pods fail at once: two failures exceed the limit of one
		// without waiting out the 10 s back-off before a retry.
		j := makeJob("flaky", 2, 2)
		j.Spec.BackoffLimit = ptr[int32](1)
		create(t, ns, j)
		job := waitJobCondition(t, c, ns, "flaky", batchv1.JobFailed)
		if r := failedReason(job); r != batchv1.JobReasonBackoffLimitExceeded || job.Status.Failed != 2 {
			t.Errorf("reason %q failed %d, want BackoffLimitExceeded and 2", r, job.Status.Failed)
		}
		if job.Status.CompletionTime != nil {
			t.Errorf("failed job has completionTime %v", job.Status.CompletionTime)
		}
		waitEvent(t, c, ns, "flaky", batchv1.JobReasonBackoffLimitExceeded)
	})

	t.Run("active deadline", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, c)
		startFakeKubelet(t, c, ns, 0, runForever)
		j := makeJob("slow", 1, 1)
		j.Spec.ActiveDeadlineSeconds = ptr[int64](1)
		create(t, ns, j)
		job := waitJobCondition(t, c, ns, "slow", batchv1.JobFailed)
		if r := failedReason(job); r != batchv1.JobReasonDeadlineExceeded {
			t.Errorf("reason %q, want DeadlineExceeded", r)
		}
		testutil.Eventually(t, 20*time.Second, func() bool { return len(jobPods(t, c, job)) == 0 }, "active pods deleted")
		waitEvent(t, c, ns, "slow", batchv1.JobReasonDeadlineExceeded)
	})

	t.Run("pod failure policy", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, c)
		startFakeKubelet(t, c, ns, 50*time.Millisecond, failWith(42))
		j := makeJob("policy", 1, 1)
		j.Spec.BackoffLimit = ptr[int32](5)
		j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
			Action:      batchv1.PodFailurePolicyActionFailJob,
			OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{42}},
		}}}
		create(t, ns, j)
		job := waitJobCondition(t, c, ns, "policy", batchv1.JobFailed)
		if r := failedReason(job); r != batchv1.JobReasonPodFailurePolicy || job.Status.Failed != 1 {
			t.Errorf("reason %q failed %d, want PodFailurePolicy after 1 failure", r, job.Status.Failed)
		}
	})

	t.Run("ttl after finished", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, c)
		startFakeKubelet(t, c, ns, 50*time.Millisecond, succeed)
		j := makeJob("short-lived", 1, 1)
		j.Spec.TTLSecondsAfterFinished = ptr[int32](0)
		job := create(t, ns, j)
		testutil.Eventually(t, 30*time.Second, func() bool {
			_, err := c.BatchV1().Jobs(ns).Get(context.Background(), "short-lived", metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		}, "job deleted after finishing")
		testutil.Eventually(t, 20*time.Second, func() bool { return len(jobPods(t, c, job)) == 0 }, "pods deleted with the job")
	})

	t.Run("suspend", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, c)
		startFakeKubelet(t, c, ns, 0, runForever)
		job := create(t, ns, makeJob("paused", 2, 2))
		testutil.Eventually(t, 20*time.Second, func() bool { return len(jobPods(t, c, job)) == 2 }, "two pods running")
		err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
			cur, err := c.BatchV1().Jobs(ns).Get(context.Background(), "paused", metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.Spec.Suspend = ptr(true)
			_, err = c.BatchV1().Jobs(ns).Update(context.Background(), cur, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		job = waitJobCondition(t, c, ns, "paused", batchv1.JobSuspended)
		testutil.Eventually(t, 20*time.Second, func() bool { return len(jobPods(t, c, job)) == 0 }, "pods deleted on suspend")
		if job.Status.Failed != 0 {
			t.Errorf("suspension counted %d failures", job.Status.Failed)
		}
	})
}

// waitEvent waits for an Event with reason about the object named name.
func waitEvent(t *testing.T, c kubernetes.Interface, ns, name, reason string) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() bool {
		list, err := c.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false
		}
		for _, e := range list.Items {
			if e.InvolvedObject.Name == name && e.Reason == reason {
				return true
			}
		}
		return false
	}, "event %s for %s/%s", reason, ns, name)
}
