package job

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/skiffhq/skiff/internal/controller"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

// fixture is a controller over a fake clientset whose informer caches
// the test fills by hand (refresh), so each sync sees exactly that state.
type fixture struct {
	c      *Controller
	client *fake.Clientset
	inf    informers.SharedInformerFactory
	clk    *clocktesting.FakeClock
	rec    *record.FakeRecorder
}

func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	client := fake.NewClientset(objs...)
	// The fake tracker does not generate names.
	n := 0
	client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		pod := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		if pod.Name == "" {
			n++
			pod.Name = fmt.Sprintf("%s%05d", pod.GenerateName, n)
			pod.UID = types.UID(pod.Name)
		}
		return false, nil, nil
	})
	f := &fixture{
		client: client,
		inf:    informers.NewSharedInformerFactory(client, 0),
		clk:    clocktesting.NewFakeClock(t0),
		rec:    record.NewFakeRecorder(100),
	}
	c, err := New(&controller.Context{
		Client: client, Informers: f.inf,
		Recorder: func(string) record.EventRecorder { return f.rec },
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, WithClock(f.clk))
	if err != nil {
		t.Fatal(err)
	}
	f.c = c
	f.refresh(t)
	return f
}

// refresh loads the informer caches from the fake API, as a watch would.
func (f *fixture) refresh(t *testing.T) {
	t.Helper()
	jobs, _ := f.client.BatchV1().Jobs("").List(context.Background(), metav1.ListOptions{})
	pods, _ := f.client.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
	var js, ps []any
	for i := range jobs.Items {
		js = append(js, &jobs.Items[i])
	}
	for i := range pods.Items {
		ps = append(ps, &pods.Items[i])
	}
	if err := f.inf.Batch().V1().Jobs().Informer().GetIndexer().Replace(js, ""); err != nil {
		t.Fatal(err)
	}
	if err := f.inf.Core().V1().Pods().Informer().GetIndexer().Replace(ps, ""); err != nil {
		t.Fatal(err)
	}
	f.c.expect.forget("ns/j")
}

func (f *fixture) sync(t *testing.T) {
	t.Helper()
	if err := f.c.sync(context.Background(), "ns/j"); err != nil {
		t.Fatalf("sync: %v", err)
	}
}

func (f *fixture) job(t *testing.T) *batchv1.Job {
	t.Helper()
	j, err := f.client.BatchV1().Jobs("ns").Get(context.Background(), "j", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func (f *fixture) pods(t *testing.T) []corev1.Pod {
	t.Helper()
	l, err := f.client.CoreV1().Pods("ns").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func (f *fixture) events() string {
	var out []string
	for {
		select {
		case e := <-f.rec.Events:
			out = append(out, e)
		default:
			return strings.Join(out, "\n")
		}
	}
}

// newJob is a defaulted Job as the API server stores it.
func newJob(completions, parallelism int32, mutate ...func(*batchv1.Job)) *batchv1.Job {
	j := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "j", Namespace: "ns", UID: "job-uid"},
		Spec: batchv1.JobSpec{
			Completions:    &completions,
			Parallelism:    &parallelism,
			BackoffLimit:   ptr.To[int32](6),
			CompletionMode: ptr.To(batchv1.NonIndexedCompletion),
			Selector:       &metav1.LabelSelector{MatchLabels: map[string]string{batchv1.ControllerUidLabel: "job-uid"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{batchv1.ControllerUidLabel: "job-uid", batchv1.JobNameLabel: "j"}},
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{Name: "main", Image: "busybox"}}},
			},
		},
		Status: batchv1.JobStatus{StartTime: ptr.To(metav1.NewTime(t0))},
	}
	for _, m := range mutate {
		m(j)
	}
	return j
}

// newJobPod is a pod of job in phase, with the tracking finalizer.
func newJobPod(job *batchv1.Job, name string, phase corev1.PodPhase, exitCode int32, index int) *corev1.Pod {
	p := newPod(job, index, 0)
	p.Name, p.UID, p.GenerateName = name, types.UID(name), ""
	p.Status.Phase = phase
	if phase == corev1.PodFailed || phase == corev1.PodSucceeded {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exitCode}}}}
	}
	return p
}

func hasCondition(j *batchv1.Job, t batchv1.JobConditionType, reason string) bool {
	cd := condition(j, t)
	return cd != nil && cd.Status == corev1.ConditionTrue && (reason == "" || cd.Reason == reason)
}

func TestSync(t *testing.T) {
	t.Parallel()
	type setup struct {
		job  *batchv1.Job
		pods func(*batchv1.Job) []*corev1.Pod
	}
	tests := []struct {
		name  string
		setup setup
		check func(t *testing.T, f *fixture)
	}{{
		name:  "starts parallelism pods with finalizer and owner",
		setup: setup{job: newJob(3, 2, func(j *batchv1.Job) { j.Status.StartTime = nil })},
		check: func(t *testing.T, f *fixture) {
			pods := f.pods(t)
			if len(pods) != 2 {
				t.Fatalf("%d pods, want 2", len(pods))
			}
			for _, p := range pods {
				ref := metav1.GetControllerOf(&p)
				if ref == nil || ref.UID != "job-uid" || !hasFinalizer(&p) || p.Labels[batchv1.JobNameLabel] != "j" || !strings.HasPrefix(p.Name, "j-") {
					t.Errorf("pod %s: ref %v finalizers %v labels %v", p.Name, ref, p.Finalizers, p.Labels)
				}
			}
			j := f.job(t)
			if j.Status.Active != 2 || j.Status.StartTime == nil || !j.Status.StartTime.Time.Equal(t0) {
				t.Errorf("status %+v", j.Status)
			}
			if ev := f.events(); strings.Count(ev, "SuccessfulCreate") != 2 {
				t.Errorf("events %q", ev)
			}
		},
	}, {
		name:  "remaining completions cap new pods",
		setup: setup{job: newJob(3, 2, func(j *batchv1.Job) { j.Status.Succeeded = 2 })},
		check: func(t *testing.T, f *fixture) {
			if n := len(f.pods(t)); n != 1 {
				t.Errorf("%d pods, want 1", n)
			}
		},
	}, {
		name: "finished pod is counted and released",
		setup: setup{job: newJob(1, 1), pods: func(j *batchv1.Job) []*corev1.Pod {
			return []*corev1.Pod{newJobPod(j, "p1", corev1.PodSucceeded, 0, -1)}
		}},
		check: func(t *testing.T, f *fixture) {
			j := f.job(t)
			if j.Status.Succeeded != 1 || len(j.Status.UncountedTerminatedPods.Succeeded) != 0 || !hasCondition(j, batchv1.JobComplete, "") || j.Status.CompletionTime == nil {
				t.Errorf("status %+v", j.Status)
			}
			if p := f.pods(t); len(p) != 1 || hasFinalizer(&p[0]) {
				t.Errorf("pod not released: %+v", p)
			}
			if ev := f.events(); !strings.Contains(ev, "Normal Completed") {
				t.Errorf("events %q", ev)
			}
		},
	}, {
		name: "failure waits for back-off",
		setup: setup{job: newJob(1, 1), pods: func(j *batchv1.Job) []*corev1.Pod {
			return []*corev1.Pod{newJobPod(j, "p1", corev1.PodFailed, 1, -1)}
		}},
		check: func(t *testing.T, f *fixture) {
			if j := f.job(t); j.Status.Failed != 1 || finished(j) != nil {
				t.Errorf("status %+v", j.Status)
			}
			if n := len(f.pods(t)); n != 1 {
				t.Errorf("%d pods right after a failure, want no replacement yet", n)
			}
			f.clk.Step(DefaultBackoff)
			f.refresh(t)
			f.sync(t)
			if n := len(f.pods(t)); n != 2 {
				t.Errorf("%d pods after the back-off, want a replacement", n)
			}
		},
	}, {
		name: "backoff limit exceeded",
		setup: setup{job: newJob(2, 2, func(j *batchv1.Job) { j.Spec.BackoffLimit = ptr.To[int32](1) }), pods: func(j *batchv1.Job) []*corev1.Pod {
			return []*corev1.Pod{newJobPod(j, "p1", corev1.PodFailed, 1, -1), newJobPod(j, "p2", corev1.PodFailed, 1, -1)}
		}},
		check: func(t *testing.T, f *fixture) {
			if j := f.job(t); !hasCondition(j, batchv1.JobFailed, batchv1.JobReasonBackoffLimitExceeded) || j.Status.Failed != 2 {
				t.Errorf("status %+v", j.Status)
			}
		},
	}, {
		name: "failure policy FailJob",
		setup: setup{job: newJob(1, 1, withPolicy(batchv1.PodFailurePolicyActionFailJob, 42)), pods: func(j *batchv1.Job) []*corev1.Pod {
			return []*corev1.Pod{newJobPod(j, "p1", corev1.PodFailed, 42, -1)}
		}},
		check: func(t *testing.T, f *fixture) {
			j := f.job(t)
			if !hasCondition(j, batchv1.JobFailed, batchv1.JobReasonPodFailurePolicy) || !hasCondition(j, batchv1.JobFailureTarget, "") {
				t.Errorf("conditions %+v", j.Status.Conditions)
			}
			if msg := condition(j, batchv1.JobFailed).Message; !strings.Contains(msg, "exit code 42 matching FailJob rule at index 0") {
				t.Errorf("message %q", msg)
			}
		},
	}, {
		name: "failure policy Ignore does not count",
		setup: setup{job: newJob(1, 1, withPolicy(batchv1.PodFailurePolicyActionIgnore, 3)), pods: func(j *batchv1.Job) []*corev1.Pod {
			return []*corev1.Pod{newJobPod(j, "p1", corev1.PodFailed, 3, -1)}
		}},
		check: func(t *testing.T, f *fixture) {
			if j := f.job(t); j.Status.Failed != 0 {
				t.Errorf("failed = %d, want 0", j.Status.Failed)
			}
			if n := len(f.pods(t)); n != 2 {
				t.Errorf("%d pods, want an immediate replacement", n)
			}
		},
	}, {
		name: "active deadline",
		setup: setup{job: newJob(1, 1, func(j *batchv1.Job) {
			j.Spec.ActiveDeadlineSeconds = ptr.To[int64](5)
			j.Status.StartTime = ptr.To(metav1.NewTime(t0.Add(-10 * time.Second)))
		}), pods: func(j *batchv1.Job) []*corev1.Pod {
			return []*corev1.Pod{newJobPod(j, "p1", corev1.PodRunning, 0, -1)}
		}},
		check: func(t *testing.T, f *fixture) {
			if j := f.job(t); !hasCondition(j, batchv1.JobFailed, batchv1.JobReasonDeadlineExceeded) || j.Status.Active != 0 {
				t.Errorf("status %+v", j.Status)
			}
			if n := len(f.pods(t)); n != 0 {
				t.Errorf("%d pods left, want the active one deleted", n)
			}
		},
	}, {
		name: "suspend deletes active pods",
		setup: setup{job: newJob(2, 2, func(j *batchv1.Job) { j.Spec.Suspend = ptr.To(true) }), pods: func(j *batchv1.Job) []*corev1.Pod {
			return []*corev1.Pod{newJobPod(j, "p1", corev1.PodRunning, 0, -1), newJobPod(j, "p2", corev1.PodRunning, 0, -1)}
		}},
		check: func(t *testing.T, f *fixture) {
			j := f.job(t)
			if !hasCondition(j, batchv1.JobSuspended, "JobSuspended") || j.Status.StartTime != nil || j.Status.Failed != 0 {
				t.Errorf("status %+v", j.Status)
			}
			if n := len(f.pods(t)); n != 0 {
				t.Errorf("%d pods left", n)
			}
		},
	}, {
		name: "indexed starts the missing indexes",
		setup: setup{job: newJob(3, 3, func(j *batchv1.Job) { j.Spec.CompletionMode = ptr.To(batchv1.IndexedCompletion) }), pods: func(j *batchv1.Job) []*corev1.Pod {
			return []*corev1.Pod{newJobPod(j, "p1", corev1.PodRunning, 0, 1)}
		}},
		check: func(t *testing.T, f *fixture) {
			seen := map[int]bool{}
			for _, p := range f.pods(t) {
				ix := podIndex(&p)
				seen[ix] = true
				if p.Name == "p1" {
					continue
				}
				want := fmt.Sprintf("j-%d", ix)
				if p.Spec.Hostname != want || !strings.HasPrefix(p.Name, want+"-") || p.Labels[batchv1.JobCompletionIndexAnnotation] != fmt.Sprint(ix) ||
					!hasEnv(p.Spec.Containers[0].Env, completionIndexEnv) {
					t.Errorf("pod %s: hostname %s labels %v env %v", p.Name, p.Spec.Hostname, p.Labels, p.Spec.Containers[0].Env)
				}
			}
			if len(seen) != 3 {
				t.Errorf("indexes %v, want 0, 1, 2", seen)
			}
		},
	}, {
		name: "indexed completes by indexes",
		setup: setup{job: newJob(3, 3, func(j *batchv1.Job) {
			j.Spec.CompletionMode = ptr.To(batchv1.IndexedCompletion)
			j.Status.CompletedIndexes, j.Status.Succeeded = "0,2", 2
		}), pods: func(j *batchv1.Job) []*corev1.Pod {
			return []*corev1.Pod{newJobPod(j, "p1", corev1.PodSucceeded, 0, 1)}
		}},
		check: func(t *testing.T, f *fixture) {
			if j := f.job(t); j.Status.CompletedIndexes != "0-2" || !hasCondition(j, batchv1.JobComplete, "") {
				t.Errorf("status %+v", j.Status)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			objs := []runtime.Object{tt.setup.job}
			if tt.setup.pods != nil {
				for _, p := range tt.setup.pods(tt.setup.job) {
					objs = append(objs, p)
				}
			}
			f := newFixture(t, objs...)
			f.sync(t)
			tt.check(t, f)
		})
	}
}

func withPolicy(action batchv1.PodFailurePolicyAction, code int32) func(*batchv1.Job) {
	return func(j *batchv1.Job) {
		j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
			Action:      action,
			OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{code}},
		}}}
	}
}

// TestExpectationsPreventDoubleCreate: a second sync before the informer
// has seen the first sync's pods must not create more.
func TestExpectationsPreventDoubleCreate(t *testing.T) {
	t.Parallel()
	f := newFixture(t, newJob(4, 2))
	f.sync(t)
	f.sync(t)
	if n := len(f.pods(t)); n != 2 {
		t.Errorf("%d pods, want 2", n)
	}
}

// TestStalePodCacheCountsOnce: when the Job informer already shows the
// status that counted a finished pod but the pod informer still shows the
// pod with its finalizer, the pod must not be counted a second time.
func TestStalePodCacheCountsOnce(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		phase corev1.PodPhase
		count func(*batchv1.Job) int32
	}{
		{"failed", corev1.PodFailed, func(j *batchv1.Job) int32 { return j.Status.Failed }},
		{"succeeded", corev1.PodSucceeded, func(j *batchv1.Job) int32 { return j.Status.Succeeded }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			job := newJob(3, 2)
			f := newFixture(t, job, newJobPod(job, "done", tt.phase, 1, -1), newJobPod(job, "running", corev1.PodRunning, 0, -1))
			f.sync(t)
			if got := tt.count(f.job(t)); got != 1 {
				t.Fatalf("after the first sync the pod counts %d times, want 1", got)
			}
			pods := len(f.pods(t))
			// Only the Job informer catches up.
			if err := f.inf.Batch().V1().Jobs().Informer().GetIndexer().Update(f.job(t)); err != nil {
				t.Fatal(err)
			}
			f.sync(t)
			if got := tt.count(f.job(t)); got != 1 {
				t.Errorf("with a stale pod cache the pod counts %d times, want 1", got)
			}
			if n := len(f.pods(t)); n != pods {
				t.Errorf("%d pods after a sync on a stale pod cache, want %d as before", n, pods)
			}
		})
	}
}

func TestTTLAfterFinished(t *testing.T) {
	t.Parallel()
	job := newJob(1, 1, func(j *batchv1.Job) {
		j.Spec.TTLSecondsAfterFinished = ptr.To[int32](10)
		j.Status.CompletionTime = ptr.To(metav1.NewTime(t0.Add(-5 * time.Second)))
		j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	})
	pod := newJobPod(job, "p1", corev1.PodSucceeded, 0, -1)
	pod.Finalizers = nil
	f := newFixture(t, job, pod)
	f.sync(t)
	if _, err := f.client.BatchV1().Jobs("ns").Get(context.Background(), "j", metav1.GetOptions{}); err != nil {
		t.Fatalf("job deleted before its TTL: %v", err)
	}
	f.clk.Step(5 * time.Second)
	f.sync(t)
	if _, err := f.client.BatchV1().Jobs("ns").Get(context.Background(), "j", metav1.GetOptions{}); err == nil {
		t.Error("job still there after its TTL")
	}
	if n := len(f.pods(t)); n != 0 {
		t.Errorf("%d pods left after the TTL", n)
	}
}

func TestRetryWait(t *testing.T) {
	t.Parallel()
	tests := []struct {
		failures int
		since    time.Duration
		want     time.Duration
	}{
		{0, 0, 0},
		{1, 0, 10 * time.Second},
		{1, 4 * time.Second, 6 * time.Second},
		{3, 0, 40 * time.Second},
		{10, 0, 6 * time.Minute},
		{1, time.Minute, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d failures %v ago", tt.failures, tt.since), func(t *testing.T) {
			got := retryWait(backoffRecord{failures: tt.failures, last: t0.Add(-tt.since)}, DefaultBackoff, DefaultMaxBackoff, t0)
			if got != tt.want {
				t.Errorf("retryWait = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestIndexSet(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want    string
		completions int
	}{
		{"", "", 3},
		{"0,1,2", "0-2", 3},
		{"0,2", "0,2", 3},
		{"1-3,5,7-8", "1-3,5,7-8", 10},
		{"3,4", "3-4", 10},
		{"0-9", "0-4", 5},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := parseIndexes(tt.in, tt.completions).String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
