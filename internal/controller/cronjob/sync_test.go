package cronjob

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
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
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/skiffhq/skiff/internal/controller"
)

// t0 is on a minute boundary, so "* * * * *" is due exactly then.
var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	c      *Controller
	client *fake.Clientset
	clk    *clocktesting.FakeClock
	rec    *record.FakeRecorder
}

// newFixture builds a controller whose caches hold objs and whose clock
// reads now.
func newFixture(t *testing.T, now time.Time, objs ...runtime.Object) *fixture {
	t.Helper()
	client := fake.NewClientset(objs...)
	inf := informers.NewSharedInformerFactory(client, 0)
	f := &fixture{client: client, clk: clocktesting.NewFakeClock(now), rec: record.NewFakeRecorder(100)}
	c, err := New(&controller.Context{
		Client: client, Informers: inf,
		Recorder: func(string) record.EventRecorder { return f.rec },
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, WithClock(f.clk))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.queue.ShutDown)
	for _, o := range objs {
		switch o := o.(type) {
		case *batchv1.CronJob:
			_ = inf.Batch().V1().CronJobs().Informer().GetIndexer().Add(o)
		case *batchv1.Job:
			_ = inf.Batch().V1().Jobs().Informer().GetIndexer().Add(o)
		}
	}
	f.c = c
	return f
}

func (f *fixture) sync(t *testing.T) {
	t.Helper()
	if err := f.c.sync(context.Background(), "ns/cj"); err != nil {
		t.Fatalf("sync: %v", err)
	}
}

func (f *fixture) cronJob(t *testing.T) *batchv1.CronJob {
	t.Helper()
	cj, err := f.client.BatchV1().CronJobs("ns").Get(context.Background(), "cj", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cj
}

func (f *fixture) jobs(t *testing.T) map[string]batchv1.Job {
	t.Helper()
	l, err := f.client.BatchV1().Jobs("ns").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]batchv1.Job{}
	for _, j := range l.Items {
		m[j.Name] = j
	}
	return m
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

func newCronJob(created time.Time, mutate ...func(*batchv1.CronJob)) *batchv1.CronJob {
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "cj", Namespace: "ns", UID: "cj-uid", CreationTimestamp: metav1.NewTime(created)},
		Spec: batchv1.CronJobSpec{
			Schedule:                   "* * * * *",
			ConcurrencyPolicy:          batchv1.AllowConcurrent,
			Suspend:                    ptr.To(false),
			SuccessfulJobsHistoryLimit: ptr.To[int32](3),
			FailedJobsHistoryLimit:     ptr.To[int32](1),
			TimeZone:                   ptr.To("UTC"),
			JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}},
				Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "main", Image: "busybox"}},
				}}},
			},
		},
	}
	for _, m := range mutate {
		m(cj)
	}
	return cj
}

// childJob is a Job of cj scheduled at, finished with cond if not "".
func childJob(cj *batchv1.CronJob, at time.Time, cond batchv1.JobConditionType) *batchv1.Job {
	name := fmt.Sprintf("cj-%d", at.Unix()/60)
	j := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name), CreationTimestamp: metav1.NewTime(at),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(cj, batchv1.SchemeGroupVersion.WithKind("CronJob"))}},
		Status: batchv1.JobStatus{StartTime: ptr.To(metav1.NewTime(at))},
	}
	if cond != "" {
		j.Status.Conditions = []batchv1.JobCondition{{Type: cond, Status: corev1.ConditionTrue}}
		if cond == batchv1.JobComplete {
			j.Status.CompletionTime = ptr.To(metav1.NewTime(at.Add(10 * time.Second)))
		}
	}
	return j
}

func withActive(jobs ...*batchv1.Job) func(*batchv1.CronJob) {
	return func(cj *batchv1.CronJob) {
		for _, j := range jobs {
			cj.Status.Active = append(cj.Status.Active, jobRef(j))
		}
		cj.Status.LastScheduleTime = ptr.To(metav1.NewTime(t0.Add(-time.Minute)))
	}
}

func TestSync(t *testing.T) {
	t.Parallel()
	nameAt := func(at time.Time) string { return fmt.Sprintf("cj-%d", at.Unix()/60) }
	base := newCronJob(t0.Add(-90 * time.Second))
	running := childJob(base, t0.Add(-time.Minute), "")
	tests := []struct {
		name  string
		now   time.Time
		cj    *batchv1.CronJob
		jobs  []*batchv1.Job
		check func(t *testing.T, f *fixture)
	}{{
		name: "due run creates its job",
		now:  t0.Add(time.Second),
		cj:   newCronJob(t0.Add(-30 * time.Second)),
		check: func(t *testing.T, f *fixture) {
			j, ok := f.jobs(t)[nameAt(t0)]
			if !ok {
				t.Fatalf("no job %s in %v", nameAt(t0), f.jobs(t))
			}
			if ref := metav1.GetControllerOf(&j); ref == nil || ref.UID != "cj-uid" || ref.Kind != "CronJob" {
				t.Errorf("owner %v", ref)
			}
			if got := j.Annotations[batchv1.CronJobScheduledTimestampAnnotation]; got != "2025-01-01T12:00:00Z" || j.Labels["app"] != "x" {
				t.Errorf("annotation %q labels %v", got, j.Labels)
			}
			cj := f.cronJob(t)
			if len(cj.Status.Active) != 1 || !cj.Status.LastScheduleTime.Time.Equal(t0) {
				t.Errorf("status %+v", cj.Status)
			}
			if ev := f.events(); !strings.Contains(ev, "SuccessfulCreate") {
				t.Errorf("events %q", ev)
			}
		},
	}, {
		name: "nothing due yet",
		now:  t0.Add(30 * time.Second),
		cj:   newCronJob(t0.Add(time.Second)),
		check: func(t *testing.T, f *fixture) {
			if n := len(f.jobs(t)); n != 0 {
				t.Errorf("%d jobs before the first scheduled time", n)
			}
		},
	}, {
		name: "forbid skips while one runs",
		now:  t0.Add(time.Second),
		cj:   newCronJob(t0.Add(-90*time.Second), withActive(running), func(cj *batchv1.CronJob) { cj.Spec.ConcurrencyPolicy = batchv1.ForbidConcurrent }),
		jobs: []*batchv1.Job{running},
		check: func(t *testing.T, f *fixture) {
			if _, ok := f.jobs(t)[nameAt(t0)]; ok {
				t.Error("Forbid started a second job")
			}
			if ev := f.events(); !strings.Contains(ev, "JobAlreadyActive") {
				t.Errorf("events %q", ev)
			}
		},
	}, {
		name: "allow runs alongside",
		now:  t0.Add(time.Second),
		cj:   newCronJob(t0.Add(-90*time.Second), withActive(running)),
		jobs: []*batchv1.Job{running},
		check: func(t *testing.T, f *fixture) {
			if n := len(f.jobs(t)); n != 2 {
				t.Errorf("%d jobs, want 2", n)
			}
			if a := f.cronJob(t).Status.Active; len(a) != 2 {
				t.Errorf("active %v", a)
			}
		},
	}, {
		name: "replace deletes the running job",
		now:  t0.Add(time.Second),
		cj:   newCronJob(t0.Add(-90*time.Second), withActive(running), func(cj *batchv1.CronJob) { cj.Spec.ConcurrencyPolicy = batchv1.ReplaceConcurrent }),
		jobs: []*batchv1.Job{running},
		check: func(t *testing.T, f *fixture) {
			jobs := f.jobs(t)
			if _, ok := jobs[running.Name]; ok || len(jobs) != 1 {
				t.Errorf("jobs %v, want only the new one", jobs)
			}
			if a := f.cronJob(t).Status.Active; len(a) != 1 || a[0].Name != nameAt(t0) {
				t.Errorf("active %v", a)
			}
		},
	}, {
		name: "suspended",
		now:  t0.Add(time.Second),
		cj:   newCronJob(t0.Add(-90*time.Second), func(cj *batchv1.CronJob) { cj.Spec.Suspend = ptr.To(true) }),
		check: func(t *testing.T, f *fixture) {
			if n := len(f.jobs(t)); n != 0 {
				t.Errorf("%d jobs while suspended", n)
			}
		},
	}, {
		name: "starting deadline passed",
		now:  t0.Add(30 * time.Second),
		cj:   newCronJob(t0.Add(-90*time.Second), func(cj *batchv1.CronJob) { cj.Spec.StartingDeadlineSeconds = ptr.To[int64](10) }),
		check: func(t *testing.T, f *fixture) {
			if n := len(f.jobs(t)); n != 0 {
				t.Errorf("%d jobs for a run 30 s late with a 10 s deadline", n)
			}
		},
	}, {
		name: "too many missed runs",
		now:  t0.Add(time.Second),
		cj:   newCronJob(t0.Add(-200 * time.Minute)),
		check: func(t *testing.T, f *fixture) {
			if ev := f.events(); !strings.Contains(ev, "TooManyMissedTimes") {
				t.Errorf("events %q", ev)
			}
			if jobs := f.jobs(t); len(jobs) != 1 {
				t.Errorf("jobs %v, want only the latest run", jobs)
			}
		},
	}, {
		name: "completed job leaves active and counts as success",
		now:  t0.Add(30 * time.Second),
		cj:   newCronJob(t0.Add(-90*time.Second), withActive(childJob(base, t0.Add(-time.Minute), batchv1.JobComplete))),
		jobs: []*batchv1.Job{childJob(base, t0.Add(-time.Minute), batchv1.JobComplete), childJob(base, t0, "")},
		check: func(t *testing.T, f *fixture) {
			cj := f.cronJob(t)
			if len(cj.Status.Active) != 1 || cj.Status.LastSuccessfulTime == nil || !cj.Status.LastSuccessfulTime.Time.Equal(t0.Add(-50*time.Second)) {
				t.Errorf("status %+v", cj.Status)
			}
			if ev := f.events(); !strings.Contains(ev, "SawCompletedJob") {
				t.Errorf("events %q", ev)
			}
		},
	}, {
		name: "history limits prune the oldest",
		now:  t0.Add(30 * time.Second),
		cj: newCronJob(t0.Add(-10*time.Minute), func(cj *batchv1.CronJob) {
			cj.Spec.SuccessfulJobsHistoryLimit = ptr.To[int32](1)
			cj.Status.LastScheduleTime = ptr.To(metav1.NewTime(t0))
		}),
		jobs: []*batchv1.Job{
			childJob(base, t0.Add(-3*time.Minute), batchv1.JobComplete),
			childJob(base, t0.Add(-2*time.Minute), batchv1.JobComplete),
			childJob(base, t0.Add(-time.Minute), batchv1.JobComplete),
			childJob(base, t0.Add(-5*time.Minute), batchv1.JobFailed),
			childJob(base, t0.Add(-4*time.Minute), batchv1.JobFailed),
		},
		check: func(t *testing.T, f *fixture) {
			jobs := f.jobs(t)
			for _, keep := range []time.Time{t0.Add(-time.Minute), t0.Add(-4 * time.Minute)} {
				if _, ok := jobs[nameAt(keep)]; !ok {
					t.Errorf("newest job %s pruned", nameAt(keep))
				}
			}
			if len(jobs) != 2 {
				t.Errorf("%d jobs left, want 2", len(jobs))
			}
			if ev := f.events(); strings.Count(ev, "SuccessfulDelete") != 3 {
				t.Errorf("events %q", ev)
			}
		},
	}, {
		// Start times have one-second resolution: runs caught up in the
		// same second tie, and the newest must still be the one kept.
		name: "history limits keep the newest run when start times tie",
		now:  t0.Add(30 * time.Second),
		cj: newCronJob(t0.Add(-10*time.Minute), func(cj *batchv1.CronJob) {
			cj.Spec.SuccessfulJobsHistoryLimit = ptr.To[int32](1)
			cj.Status.LastScheduleTime = ptr.To(metav1.NewTime(t0))
		}),
		jobs: func() []*batchv1.Job {
			var jobs []*batchv1.Job
			for _, at := range []time.Time{t0.Add(-time.Minute), t0.Add(-3 * time.Minute), t0.Add(-2 * time.Minute)} {
				j := childJob(base, at, batchv1.JobComplete)
				j.Status.StartTime = ptr.To(metav1.NewTime(t0))
				jobs = append(jobs, j)
			}
			return jobs
		}(),
		check: func(t *testing.T, f *fixture) {
			jobs := f.jobs(t)
			if _, ok := jobs[nameAt(t0.Add(-time.Minute))]; !ok || len(jobs) != 1 {
				t.Errorf("jobs left %v, want only %s", slices.Collect(maps.Keys(jobs)), nameAt(t0.Add(-time.Minute)))
			}
		},
	}, {
		name: "time zone",
		now:  time.Date(2025, 1, 1, 14, 0, 30, 0, time.UTC),
		cj: newCronJob(t0, func(cj *batchv1.CronJob) {
			cj.Spec.Schedule = "0 9 * * *"
			cj.Spec.TimeZone = ptr.To("America/New_York")
		}),
		check: func(t *testing.T, f *fixture) {
			at := time.Date(2025, 1, 1, 14, 0, 0, 0, time.UTC)
			j, ok := f.jobs(t)[nameAt(at)]
			if !ok {
				t.Fatalf("no job %s in %v", nameAt(at), f.jobs(t))
			}
			if got := j.Annotations[batchv1.CronJobScheduledTimestampAnnotation]; got != "2025-01-01T09:00:00-05:00" {
				t.Errorf("annotation %q", got)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			objs := []runtime.Object{tt.cj}
			for _, j := range tt.jobs {
				objs = append(objs, j)
			}
			f := newFixture(t, tt.now, objs...)
			f.sync(t)
			tt.check(t, f)
		})
	}
}

// TestWakesAtNextRun checks the controller waits for the next scheduled
// time on its clock instead of polling.
func TestWakesAtNextRun(t *testing.T) {
	t.Parallel()
	f := newFixture(t, t0.Add(10*time.Second), newCronJob(t0.Add(5*time.Second)))
	f.sync(t)
	if f.c.queue.Len() != 0 {
		t.Fatal("requeued at once")
	}
	f.clk.Step(49 * time.Second)
	if f.c.queue.Len() != 0 {
		t.Fatal("woke before the next run")
	}
	f.clk.Step(2 * time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for f.c.queue.Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("not woken at the next scheduled time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
