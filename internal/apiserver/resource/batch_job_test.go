package resource

import (
	"math"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

const testJobUID = types.UID("0d6c4c29-6d8a-4bb5-8a4e-4c8a0e1f5b9a")

func testJob(mut func(*batchv1.Job)) *batchv1.Job {
	tmpl := wlTestTemplate()
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	j := &batchv1.Job{
		// The generic create path sets the UID before PrepareCreate.
		ObjectMeta: metav1.ObjectMeta{Name: "pi", Namespace: "default", UID: testJobUID},
		Spec:       batchv1.JobSpec{Template: tmpl},
	}
	mut(j)
	return j
}

func TestJobDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                     string
		mut                      func(*batchv1.Job)
		parallelism, completions *int32
		backoff                  int32
		replacement              batchv1.PodReplacementPolicy
	}{
		{"neither set", func(*batchv1.Job) {}, ptr.To[int32](1), ptr.To[int32](1), 6, batchv1.TerminatingOrFailed},
		{"completions only", func(j *batchv1.Job) { j.Spec.Completions = ptr.To[int32](5) }, ptr.To[int32](1), ptr.To[int32](5), 6, batchv1.TerminatingOrFailed},
		{"work queue", func(j *batchv1.Job) { j.Spec.Parallelism = ptr.To[int32](4) }, ptr.To[int32](4), nil, 6, batchv1.TerminatingOrFailed},
		{"per-index backoff", func(j *batchv1.Job) { j.Spec.BackoffLimitPerIndex = ptr.To[int32](1) }, ptr.To[int32](1), ptr.To[int32](1), math.MaxInt32, batchv1.TerminatingOrFailed},
		{"failure policy", func(j *batchv1.Job) {
			j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
				Action: batchv1.PodFailurePolicyActionIgnore, OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{Type: corev1.DisruptionTarget}},
			}}}
		}, ptr.To[int32](1), ptr.To[int32](1), 6, batchv1.Failed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			j := testJob(tt.mut)
			Jobs().Default(j)
			s := j.Spec
			if !ptrEq(s.Parallelism, tt.parallelism) || !ptrEq(s.Completions, tt.completions) || *s.BackoffLimit != tt.backoff {
				t.Errorf("parallelism %v completions %v backoff %d", ptr.Deref(s.Parallelism, -1), ptr.Deref(s.Completions, -1), *s.BackoffLimit)
			}
			if *s.CompletionMode != batchv1.NonIndexedCompletion || *s.Suspend || *s.PodReplacementPolicy != tt.replacement {
				t.Errorf("mode %s suspend %v replacement %s", *s.CompletionMode, *s.Suspend, *s.PodReplacementPolicy)
			}
			if s.PodFailurePolicy != nil && s.PodFailurePolicy.Rules[0].OnPodConditions[0].Status != corev1.ConditionTrue {
				t.Errorf("pod condition status not defaulted to True")
			}
		})
	}
}

func ptrEq[T comparable](a, b *T) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

func TestJobGeneratedSelector(t *testing.T) {
	t.Parallel()
	j := testJob(func(*batchv1.Job) {})
	if errs := wlCreate(Jobs(), j); len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	uid := string(testJobUID)
	tests := []struct {
		name      string
		got, want string
	}{
		{"selector", metav1.FormatLabelSelector(j.Spec.Selector), "batch.kubernetes.io/controller-uid=" + uid},
		{"template uid", j.Spec.Template.Labels["batch.kubernetes.io/controller-uid"], uid},
		{"template legacy uid", j.Spec.Template.Labels["controller-uid"], uid},
		{"template job name", j.Spec.Template.Labels["batch.kubernetes.io/job-name"], "pi"},
		{"template legacy job name", j.Spec.Template.Labels["job-name"], "pi"},
		{"template user label", j.Spec.Template.Labels["app"], "web"},
		{"job labels follow template", j.Labels["batch.kubernetes.io/job-name"], "pi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestJobValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mut  func(*batchv1.Job)
		want []string
	}{
		{"valid", func(*batchv1.Job) {}, nil},
		{"on failure", func(j *batchv1.Job) { j.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure }, nil},
		{"restart always", func(j *batchv1.Job) { j.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways }, []string{"spec.template.spec.restartPolicy"}},
		{"restart unset defaults to always", func(j *batchv1.Job) { j.Spec.Template.Spec.RestartPolicy = "" }, []string{"spec.template.spec.restartPolicy"}},
		{"no uid", func(j *batchv1.Job) { j.UID = "" }, []string{"metadata.uid"}},
		{"user selector without manualSelector", func(j *batchv1.Job) {
			j.Spec.Selector = wlTestSelector()
		}, []string{"spec.selector"}},
		{"manual selector", func(j *batchv1.Job) {
			j.Spec.ManualSelector = ptr.To(true)
			j.Spec.Selector = wlTestSelector()
		}, nil},
		{"manual selector mismatch", func(j *batchv1.Job) {
			j.Spec.ManualSelector = ptr.To(true)
			j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}}
		}, []string{"spec.template.metadata.labels"}},
		{"manual without selector", func(j *batchv1.Job) { j.Spec.ManualSelector = ptr.To(true) }, []string{"spec.selector"}},
		{"negative counts", func(j *batchv1.Job) {
			j.Spec.Parallelism = ptr.To[int32](-1)
			j.Spec.Completions = ptr.To[int32](-1)
			j.Spec.BackoffLimit = ptr.To[int32](-1)
		}, []string{"spec.parallelism", "spec.completions", "spec.backoffLimit"}},
		{"indexed without completions", func(j *batchv1.Job) {
			j.Spec.CompletionMode = ptr.To(batchv1.IndexedCompletion)
			j.Spec.Parallelism = ptr.To[int32](2)
		}, []string{"spec.completions"}},
		{"indexed too many", func(j *batchv1.Job) {
			j.Spec.CompletionMode = ptr.To(batchv1.IndexedCompletion)
			j.Spec.Completions = ptr.To[int32](jobMaxIndexed + 1)
		}, []string{"spec.completions"}},
		{"bad mode", func(j *batchv1.Job) { j.Spec.CompletionMode = ptr.To(batchv1.CompletionMode("Sometimes")) }, []string{"spec.completionMode"}},
		{"per-index needs indexed", func(j *batchv1.Job) { j.Spec.BackoffLimitPerIndex = ptr.To[int32](1) }, []string{"spec.backoffLimitPerIndex"}},
		{"maxFailedIndexes needs per-index", func(j *batchv1.Job) {
			j.Spec.CompletionMode = ptr.To(batchv1.IndexedCompletion)
			j.Spec.Completions = ptr.To[int32](3)
			j.Spec.MaxFailedIndexes = ptr.To[int32](1)
		}, []string{"spec.backoffLimitPerIndex"}},
		{"failure policy needs never", func(j *batchv1.Job) {
			j.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
			j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
				Action:      batchv1.PodFailurePolicyActionFailJob,
				OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{0, 2, 1}},
			}}}
		}, []string{"spec.template.spec.restartPolicy", "spec.podFailurePolicy.rules[0].onExitCodes.values[0]", "spec.podFailurePolicy.rules[0].onExitCodes.values[2]"}},
		{"replacement with failure policy", func(j *batchv1.Job) {
			j.Spec.PodReplacementPolicy = ptr.To(batchv1.TerminatingOrFailed)
			j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
				Action: batchv1.PodFailurePolicyActionCount, OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{Type: corev1.DisruptionTarget}},
			}}}
		}, []string{"spec.podReplacementPolicy"}},
		{"managedBy", func(j *batchv1.Job) { j.Spec.ManagedBy = ptr.To("not a path") }, []string{"spec.managedBy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wlAssertFields(t, wlCreate(Jobs(), testJob(tt.mut)), tt.want...)
		})
	}
}

func TestJobValidateUpdate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		oldMut func(*batchv1.Job)
		mut    func(*batchv1.Job)
		want   []string
	}{
		{"parallelism", nil, func(j *batchv1.Job) { j.Spec.Parallelism = ptr.To[int32](3) }, nil},
		{"image", nil, func(j *batchv1.Job) { j.Spec.Template.Spec.Containers[0].Image = "perl:2" }, []string{"spec.template"}},
		{"selector", nil, func(j *batchv1.Job) { j.Spec.Selector.MatchLabels["x"] = "y" }, []string{"spec.selector", "spec.template.metadata.labels"}},
		{"completions", nil, func(j *batchv1.Job) { j.Spec.Completions = ptr.To[int32](2) }, []string{"spec.completions"}},
		{"suspended job may move nodes", func(j *batchv1.Job) { j.Spec.Suspend = ptr.To(true) }, func(j *batchv1.Job) {
			j.Spec.Template.Spec.NodeSelector = map[string]string{"zone": "b"}
			j.Spec.Template.Annotations = map[string]string{"queue": "gpu"}
		}, nil},
		{"started job may not", nil, func(j *batchv1.Job) {
			j.Spec.Template.Spec.NodeSelector = map[string]string{"zone": "b"}
		}, []string{"spec.template"}},
		{"elastic indexed", func(j *batchv1.Job) {
			j.Spec.CompletionMode = ptr.To(batchv1.IndexedCompletion)
			j.Spec.Completions, j.Spec.Parallelism = ptr.To[int32](2), ptr.To[int32](2)
		}, func(j *batchv1.Job) { j.Spec.Completions, j.Spec.Parallelism = ptr.To[int32](4), ptr.To[int32](4) }, nil},
		{"elastic indexed out of step", func(j *batchv1.Job) {
			j.Spec.CompletionMode = ptr.To(batchv1.IndexedCompletion)
			j.Spec.Completions, j.Spec.Parallelism = ptr.To[int32](2), ptr.To[int32](2)
		}, func(j *batchv1.Job) { j.Spec.Completions = ptr.To[int32](4) }, []string{"spec.completions"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			old := testJob(func(j *batchv1.Job) {
				if tt.oldMut != nil {
					tt.oldMut(j)
				}
			})
			if errs := wlCreate(Jobs(), old); len(errs) > 0 {
				t.Fatal(errs.ToAggregate())
			}
			obj := old.DeepCopy()
			tt.mut(obj)
			wlAssertFields(t, wlUpdate(Jobs(), obj, old), tt.want...)
		})
	}
}

func TestJobRow(t *testing.T) {
	t.Parallel()
	start := metav1.NewTime(time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC))
	done := metav1.NewTime(start.Add(90 * time.Second))
	cond := func(c batchv1.JobConditionType) []batchv1.JobCondition {
		return []batchv1.JobCondition{{Type: c, Status: corev1.ConditionTrue}}
	}
	tests := []struct {
		name                         string
		mut                          func(*batchv1.Job)
		status, completions, elapsed string
	}{
		{"running", func(j *batchv1.Job) { j.Status.Succeeded = 1; j.Spec.Completions = ptr.To[int32](3) }, "Running", "1/3", ""},
		{"complete", func(j *batchv1.Job) {
			j.Spec.Completions = ptr.To[int32](1)
			j.Status = batchv1.JobStatus{Succeeded: 1, StartTime: &start, CompletionTime: &done, Conditions: cond(batchv1.JobComplete)}
		}, "Complete", "1/1", "90s"},
		{"work queue", func(j *batchv1.Job) { j.Spec.Parallelism = ptr.To[int32](4) }, "Running", "0/1 of 4", ""},
		{"failed", func(j *batchv1.Job) { j.Status.Conditions = cond(batchv1.JobFailed) }, "Failed", "0/1", ""},
		{"suspended", func(j *batchv1.Job) { j.Status.Conditions = cond(batchv1.JobSuspended) }, "Suspended", "0/1", ""},
		{"terminating", func(j *batchv1.Job) {
			j.DeletionTimestamp = &done
			j.Status.Conditions = cond(batchv1.JobSuspended)
		}, "Terminating", "0/1", ""},
		{"condition false ignored", func(j *batchv1.Job) {
			j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionFalse}}
		}, "Running", "0/1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			j := testJob(func(j *batchv1.Job) {
				j.Spec.ManualSelector = ptr.To(true)
				j.Spec.Selector = wlTestSelector()
			})
			tt.mut(j)
			wlAssertRow(t, Jobs(), j, []any{"pi", tt.status, tt.completions, tt.elapsed, "<unknown>", "web", "nginx:1.27", "app=web"})
		})
	}
}

func TestJobFields(t *testing.T) {
	t.Parallel()
	j := testJob(func(j *batchv1.Job) { j.Status.Succeeded = 2 })
	if got := Jobs().Fields(j).String(); got != "status.successful=2" {
		t.Errorf("fields = %q", got)
	}
}
