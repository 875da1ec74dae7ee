package integration

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/skiffhq/skiff/internal/controller"
	"github.com/skiffhq/skiff/internal/controller/cronjob"
	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/internal/testutil"
)

// flowingClock is a fake clock that also moves with real time, so the
// controller's short retry delays still elapse, while the test jumps it
// forward a minute at a time to reach the next scheduled run at once.
func flowingClock(t *testing.T, start time.Time) *clocktesting.FakeClock {
	clk := clocktesting.NewFakeClock(start)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				clk.Step(10 * time.Millisecond)
			}
		}
	}()
	return clk
}

func makeCronJob(name string, policy batchv1.ConcurrencyPolicy) *batchv1.CronJob {
	return &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.CronJobSpec{
			Schedule:          "* * * * *",
			ConcurrencyPolicy: policy,
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{{Name: "main", Image: "busybox"}},
			}}}},
		},
	}
}

// cronJobs lists the Jobs of the CronJob named name, oldest first.
func cronJobs(t *testing.T, c kubernetes.Interface, ns, name string) []batchv1.Job {
	t.Helper()
	list, err := c.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list jobs: %v", err)
	}
	var out []batchv1.Job
	for _, j := range list.Items {
		if ref := metav1.GetControllerOf(&j); ref != nil && ref.Kind == "CronJob" && ref.Name == name {
			out = append(out, j)
		}
	}
	slices.SortFunc(out, func(a, b batchv1.Job) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func TestCronJobController(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t, func(cfg *server.Config) {
		cfg.DisableControllers = append(cfg.DisableControllers, cronjob.Name)
	})
	c := cp.Client
	// The clock starts a second into a minute well after any object made
	// here, so that every step forward reaches exactly one new run.
	start := time.Now().Truncate(time.Minute).Add(2*time.Minute + time.Second)
	clk := flowingClock(t, start)
	testutil.RunController(t, cp, func(cc *controller.Context) (controller.Interface, error) {
		return cronjob.New(cc, cronjob.WithClock(clk))
	})
	create := func(t *testing.T, ns string, cj *batchv1.CronJob) {
		t.Helper()
		if _, err := c.BatchV1().CronJobs(ns).Create(context.Background(), cj, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create cronjob: %v", err)
		}
	}
	waitJobs := func(t *testing.T, ns, name string, n int) []batchv1.Job {
		t.Helper()
		var jobs []batchv1.Job
		testutil.Eventually(t, 20*time.Second, func() bool {
			jobs = cronJobs(t, c, ns, name)
			return len(jobs) == n
		}, "%d jobs of cronjob %s", n, name)
		return jobs
	}
	// The subtests share the clock, so they run one after another.

	t.Run("allow runs concurrently", func(t *testing.T) {
		ns := newNamespace(t, c)
		startFakeKubelet(t, c, ns, 0, runForever)
		create(t, ns, makeCronJob("every", batchv1.AllowConcurrent))
		// Created before the clock's first minute: the first run is due.
		jobs := waitJobs(t, ns, "every", 1)
		first := clk.Now().Truncate(time.Minute)
		if want := "every-" + strconv.FormatInt(first.Unix()/60, 10); jobs[0].Name != want {
			t.Errorf("job name %s, want %s", jobs[0].Name, want)
		}
		if got := jobs[0].Annotations[batchv1.CronJobScheduledTimestampAnnotation]; got != first.In(time.Local).Format(time.RFC3339) {
			t.Errorf("scheduled-timestamp annotation %q, want %s", got, first.Format(time.RFC3339))
		}
		clk.Step(time.Minute)
		waitJobs(t, ns, "every", 2)
		testutil.Eventually(t, 20*time.Second, func() bool {
			cj, err := c.BatchV1().CronJobs(ns).Get(context.Background(), "every", metav1.GetOptions{})
			return err == nil && len(cj.Status.Active) == 2 && cj.Status.LastScheduleTime != nil &&
				cj.Status.LastScheduleTime.Time.Equal(first.Add(time.Minute))
		}, "two active jobs and lastScheduleTime in status")
		waitEvent(t, c, ns, "every", "SuccessfulCreate")
	})

	t.Run("forbid skips while one runs", func(t *testing.T) {
		ns := newNamespace(t, c)
		startFakeKubelet(t, c, ns, 0, runForever)
		create(t, ns, makeCronJob("single", batchv1.ForbidConcurrent))
		waitJobs(t, ns, "single", 1)
		clk.Step(time.Minute)
		waitEvent(t, c, ns, "single", "JobAlreadyActive")
		if jobs := cronJobs(t, c, ns, "single"); len(jobs) != 1 {
			t.Errorf("%d jobs with Forbid while one runs, want 1", len(jobs))
		}
	})

	t.Run("history limit", func(t *testing.T) {
		ns := newNamespace(t, c)
		startFakeKubelet(t, c, ns, 20*time.Millisecond, succeed)
		cj := makeCronJob("tidy", batchv1.ForbidConcurrent)
		cj.Spec.SuccessfulJobsHistoryLimit = ptr[int32](1)
		create(t, ns, cj)
		var names []string
		for i := 0; i < 3; i++ {
			if i > 0 {
				clk.Step(time.Minute)
			}
			name := "tidy-" + strconv.FormatInt(clk.Now().Unix()/60, 10)
			names = append(names, name)
			testutil.Eventually(t, 20*time.Second, func() bool {
				j, err := c.BatchV1().Jobs(ns).Get(context.Background(), name, metav1.GetOptions{})
				return err == nil && j.Status.Succeeded == 1
			}, "job %s succeeds", name)
		}
		testutil.Eventually(t, 20*time.Second, func() bool {
			jobs := cronJobs(t, c, ns, "tidy")
			return len(jobs) == 1 && jobs[0].Name == names[2]
		}, "only the newest job %s kept", names[2])
		waitEvent(t, c, ns, "tidy", "SuccessfulDelete")
		waitEvent(t, c, ns, "tidy", "SawCompletedJob")
		testutil.Eventually(t, 20*time.Second, func() bool {
			cj, err := c.BatchV1().CronJobs(ns).Get(context.Background(), "tidy", metav1.GetOptions{})
			return err == nil && cj.Status.LastSuccessfulTime != nil && len(cj.Status.Active) == 0
		}, "lastSuccessfulTime set, nothing active")
	})
}
