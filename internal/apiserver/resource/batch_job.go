package resource

import (
	"fmt"
	"maps"
	"math"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// jobMaxIndexed caps completions and parallelism of Indexed Jobs, as
// upstream does, so the completed-indexes status field stays bounded.
const jobMaxIndexed = 100000

// The unprefixed label names upstream still sets next to the
// batch.kubernetes.io ones, for selectors written before those existed.
const (
	jobLegacyNameLabel          = "job-name"
	jobLegacyControllerUidLabel = "controller-uid"
)

// Jobs describes batch/v1 Jobs.
func Jobs() *Resource {
	return &Resource{
		Kind:          batchv1.SchemeGroupVersion.WithKind("Job"),
		Plural:        "jobs",
		Namespaced:    true,
		Categories:    []string{"all"},
		New:           func() runtime.Object { return &batchv1.Job{} },
		NewList:       func() runtime.Object { return &batchv1.JobList{} },
		Default:       func(obj runtime.Object) { defaultJob(obj.(*batchv1.Job)) },
		PrepareCreate: func(obj runtime.Object) { prepareJobCreate(obj.(*batchv1.Job)) },
		Validate: func(obj runtime.Object) field.ErrorList {
			j := obj.(*batchv1.Job)
			errs := validateJobSpec(&j.Spec, field.NewPath("spec"), false)
			return append(errs, validateGeneratedJobSelector(j)...)
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			j, o := obj.(*batchv1.Job), old.(*batchv1.Job)
			errs := validateJobSpec(&j.Spec, field.NewPath("spec"), false)
			return append(errs, validateJobSpecUpdate(j, o)...)
		},
		Columns: append([]metav1.TableColumnDefinition{
			NameColumn,
			{Name: "Status", Type: "string", Description: "Status of the job."},
			{Name: "Completions", Type: "string", Description: batchv1.JobStatus{}.SwaggerDoc()["succeeded"]},
			{Name: "Duration", Type: "string", Description: "Time required to complete the job."},
			AgeColumn,
		}, wlWideColumns...),
		Row: jobRow,
		// Upstream's one job-specific selectable field.
		Fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"status.successful": strconv.Itoa(int(obj.(*batchv1.Job).Status.Succeeded))}
		},
		Generation: true,
		Status:     true,
	}
}

func defaultJob(j *batchv1.Job) {
	s := &j.Spec
	// With neither set the Job runs one pod to one success; with only
	// completions set, pods run one at a time. Parallelism alone (a work
	// queue) keeps completions unset on purpose.
	if s.Completions == nil && s.Parallelism == nil {
		s.Completions = ptr.To[int32](1)
	}
	if s.Parallelism == nil {
		s.Parallelism = ptr.To[int32](1)
	}
	if s.BackoffLimit == nil {
		if s.BackoffLimitPerIndex != nil {
			// Per-index limits take over; the global one must not fire first.
			s.BackoffLimit = ptr.To[int32](math.MaxInt32)
		} else {
			s.BackoffLimit = ptr.To[int32](6)
		}
	}
	if s.CompletionMode == nil {
		s.CompletionMode = ptr.To(batchv1.NonIndexedCompletion)
	}
	if s.Suspend == nil {
		s.Suspend = ptr.To(false)
	}
	if s.PodReplacementPolicy == nil {
		// A pod failure policy must see terminal pods before a replacement
		// starts, hence Failed whenever one is set.
		if s.PodFailurePolicy != nil {
			s.PodReplacementPolicy = ptr.To(batchv1.Failed)
		} else {
			s.PodReplacementPolicy = ptr.To(batchv1.TerminatingOrFailed)
		}
	}
	if s.PodFailurePolicy != nil {
		for i := range s.PodFailurePolicy.Rules {
			for k := range s.PodFailurePolicy.Rules[i].OnPodConditions {
				if c := &s.PodFailurePolicy.Rules[i].OnPodConditions[k]; c.Status == "" {
					c.Status = corev1.ConditionTrue
				}
			}
		}
	}
	if len(j.Labels) == 0 && len(s.Template.Labels) > 0 {
		j.Labels = maps.Clone(s.Template.Labels)
	}
	defaultPodTemplateSpec(&s.Template)
}

// prepareJobCreate generates the selector unless the user asked to manage
// it. It relies on the generic create path having set metadata.uid before
// calling PrepareCreate: the selector is built from the UID so that a Job
// never adopts pods left by an earlier Job of the same name.
// validateGeneratedJobSelector catches a violated ordering.
func prepareJobCreate(j *batchv1.Job) {
	j.Status = batchv1.JobStatus{}
	if ptr.Deref(j.Spec.ManualSelector, false) {
		return
	}
	// Upstream's Job labels are its template labels when the user set
	// none, including the generated ones; keep that visible result.
	copied := len(j.Labels) == 0 || maps.Equal(j.Labels, j.Spec.Template.Labels)
	if j.Spec.Template.Labels == nil {
		j.Spec.Template.Labels = map[string]string{}
	}
	uid := string(j.UID)
	// A label the user already set is kept: if it disagrees with the
	// generated selector, validation reports it rather than us hiding it.
	for k, v := range map[string]string{
		batchv1.JobNameLabel:        j.Name,
		jobLegacyNameLabel:          j.Name,
		batchv1.ControllerUidLabel:  uid,
		jobLegacyControllerUidLabel: uid,
	} {
		if _, ok := j.Spec.Template.Labels[k]; !ok {
			j.Spec.Template.Labels[k] = v
		}
	}
	if j.Spec.Selector == nil {
		j.Spec.Selector = &metav1.LabelSelector{}
	}
	if j.Spec.Selector.MatchLabels == nil {
		j.Spec.Selector.MatchLabels = map[string]string{}
	}
	if _, ok := j.Spec.Selector.MatchLabels[batchv1.ControllerUidLabel]; !ok {
		j.Spec.Selector.MatchLabels[batchv1.ControllerUidLabel] = uid
	}
	if copied {
		j.Labels = maps.Clone(j.Spec.Template.Labels)
	}
}

// validateGeneratedJobSelector checks that a generated selector is exactly
// controller-uid=<uid> and that the template carries that label.
func validateGeneratedJobSelector(j *batchv1.Job) field.ErrorList {
	if ptr.Deref(j.Spec.ManualSelector, false) || j.Spec.Selector == nil {
		return nil
	}
	var errs field.ErrorList
	if j.UID == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "uid"), ""))
	}
	want := map[string]string{batchv1.ControllerUidLabel: string(j.UID)}
	if len(j.Spec.Selector.MatchExpressions) > 0 || !maps.Equal(j.Spec.Selector.MatchLabels, want) {
		errs = append(errs, field.Invalid(field.NewPath("spec", "selector"), j.Spec.Selector, "`selector` not auto-generated"))
	}
	if got := j.Spec.Template.Labels[batchv1.ControllerUidLabel]; got != string(j.UID) {
		errs = append(errs, field.Invalid(field.NewPath("spec", "template", "metadata", "labels").Key(batchv1.ControllerUidLabel), got, "must be '"+string(j.UID)+"'"))
	}
	return errs
}

// validateJobSpec checks a Job spec. In a CronJob's jobTemplate the
// selector may be absent, as the Job created from it generates one.
func validateJobSpec(s *batchv1.JobSpec, path *field.Path, inTemplate bool) field.ErrorList {
	var errs field.ErrorList
	indexed := s.CompletionMode != nil && *s.CompletionMode == batchv1.IndexedCompletion

	errs = append(errs, wlValidateNonNegative(s.Parallelism, path.Child("parallelism"))...)
	errs = append(errs, wlValidateNonNegative(s.Completions, path.Child("completions"))...)
	errs = append(errs, wlValidateNonNegative(s.BackoffLimit, path.Child("backoffLimit"))...)
	errs = append(errs, wlValidateNonNegative(s.TTLSecondsAfterFinished, path.Child("ttlSecondsAfterFinished"))...)
	if s.ActiveDeadlineSeconds != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(*s.ActiveDeadlineSeconds, path.Child("activeDeadlineSeconds"))...)
	}

	if s.CompletionMode != nil && !indexed && *s.CompletionMode != batchv1.NonIndexedCompletion {
		errs = append(errs, field.NotSupported(path.Child("completionMode"), *s.CompletionMode, []string{string(batchv1.NonIndexedCompletion), string(batchv1.IndexedCompletion)}))
	}
	if indexed {
		switch {
		case s.Completions == nil:
			errs = append(errs, field.Required(path.Child("completions"), "when completion mode is Indexed"))
		case *s.Completions > jobMaxIndexed:
			errs = append(errs, field.Invalid(path.Child("completions"), *s.Completions, fmt.Sprintf("must be less than or equal to %d when completion mode is Indexed", jobMaxIndexed)))
		}
		if s.Parallelism != nil && *s.Parallelism > jobMaxIndexed {
			errs = append(errs, field.Invalid(path.Child("parallelism"), *s.Parallelism, fmt.Sprintf("must be less than or equal to %d when completion mode is Indexed", jobMaxIndexed)))
		}
	}
	if s.BackoffLimitPerIndex != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(*s.BackoffLimitPerIndex), path.Child("backoffLimitPerIndex"))...)
		if !indexed {
			errs = append(errs, field.Invalid(path.Child("backoffLimitPerIndex"), *s.BackoffLimitPerIndex, "requires indexed completion mode"))
		}
	}
	if s.MaxFailedIndexes != nil {
		p := path.Child("maxFailedIndexes")
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(*s.MaxFailedIndexes), p)...)
		if s.BackoffLimitPerIndex == nil {
			errs = append(errs, field.Required(path.Child("backoffLimitPerIndex"), "when maxFailedIndexes is specified"))
		}
		if s.Completions != nil && *s.MaxFailedIndexes > *s.Completions {
			errs = append(errs, field.Invalid(p, *s.MaxFailedIndexes, "must be less than or equal to completions"))
		}
	}
	if s.SuccessPolicy != nil && !indexed {
		errs = append(errs, field.Invalid(path.Child("successPolicy"), s.SuccessPolicy, "requires indexed completion mode"))
	}
	errs = append(errs, validatePodFailurePolicy(s, path)...)
	if s.PodReplacementPolicy != nil {
		p := path.Child("podReplacementPolicy")
		switch {
		case *s.PodReplacementPolicy != batchv1.Failed && *s.PodReplacementPolicy != batchv1.TerminatingOrFailed:
			errs = append(errs, field.NotSupported(p, *s.PodReplacementPolicy, []string{string(batchv1.TerminatingOrFailed), string(batchv1.Failed)}))
		case s.PodFailurePolicy != nil && *s.PodReplacementPolicy != batchv1.Failed:
			errs = append(errs, field.NotSupported(p, *s.PodReplacementPolicy, []string{string(batchv1.Failed)}))
		}
	}
	if s.ManagedBy != nil {
		p := path.Child("managedBy")
		errs = append(errs, validation.IsDomainPrefixedPath(p, *s.ManagedBy)...)
		if len(*s.ManagedBy) > 63 {
			errs = append(errs, field.TooLong(p, "", 63))
		}
	}

	switch {
	case s.Selector != nil:
		sp := path.Child("selector")
		selErrs := metav1validation.ValidateLabelSelector(s.Selector, metav1validation.LabelSelectorValidationOptions{}, sp)
		errs = append(errs, selErrs...)
		if len(selErrs) == 0 {
			errs = append(errs, wlSelectorMatchesTemplate(s.Selector, &s.Template, path)...)
		}
	case !inTemplate:
		errs = append(errs, field.Required(path.Child("selector"), ""))
	}

	tp := path.Child("template")
	errs = append(errs, validatePodTemplateSpec(&s.Template, tp)...)
	// A Job's pods must be able to finish; Always would restart them forever.
	if rp := s.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyOnFailure && rp != corev1.RestartPolicyNever {
		errs = append(errs, field.NotSupported(tp.Child("spec", "restartPolicy"), rp, []string{string(corev1.RestartPolicyOnFailure), string(corev1.RestartPolicyNever)}))
	}
	return errs
}

// validatePodFailurePolicy checks the rule shapes the job controller relies
// on. Upstream also requires restartPolicy Never, since with OnFailure the
// kubelet restarts containers and the pod never fails for a rule to see.
func validatePodFailurePolicy(s *batchv1.JobSpec, specPath *field.Path) field.ErrorList {
	pfp := s.PodFailurePolicy
	if pfp == nil {
		return nil
	}
	var errs field.ErrorList
	path := specPath.Child("podFailurePolicy")
	if s.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		errs = append(errs, field.Invalid(specPath.Child("template", "spec", "restartPolicy"), s.Template.Spec.RestartPolicy, "only \"Never\" is supported when podFailurePolicy is specified"))
	}
	if len(pfp.Rules) > 20 {
		errs = append(errs, field.TooMany(path.Child("rules"), len(pfp.Rules), 20))
	}
	actions := []string{string(batchv1.PodFailurePolicyActionCount), string(batchv1.PodFailurePolicyActionFailIndex), string(batchv1.PodFailurePolicyActionFailJob), string(batchv1.PodFailurePolicyActionIgnore)}
	for i, r := range pfp.Rules {
		rp := path.Child("rules").Index(i)
		switch r.Action {
		case batchv1.PodFailurePolicyActionCount, batchv1.PodFailurePolicyActionFailJob, batchv1.PodFailurePolicyActionIgnore:
		case batchv1.PodFailurePolicyActionFailIndex:
			if s.BackoffLimitPerIndex == nil {
				errs = append(errs, field.Invalid(rp.Child("action"), r.Action, "requires the backoffLimitPerIndex to be set"))
			}
		default:
			errs = append(errs, field.NotSupported(rp.Child("action"), r.Action, actions))
		}
		if (r.OnExitCodes == nil) == (len(r.OnPodConditions) == 0) {
			errs = append(errs, field.Invalid(rp, field.OmitValueType{}, "specifying one of OnExitCodes and OnPodConditions is required"))
		}
		if ec := r.OnExitCodes; ec != nil {
			ep := rp.Child("onExitCodes")
			if ec.Operator != batchv1.PodFailurePolicyOnExitCodesOpIn && ec.Operator != batchv1.PodFailurePolicyOnExitCodesOpNotIn {
				errs = append(errs, field.NotSupported(ep.Child("operator"), ec.Operator, []string{string(batchv1.PodFailurePolicyOnExitCodesOpIn), string(batchv1.PodFailurePolicyOnExitCodesOpNotIn)}))
			}
			if len(ec.Values) == 0 {
				errs = append(errs, field.Required(ep.Child("values"), "at least one value is required"))
			}
			if len(ec.Values) > 255 {
				errs = append(errs, field.TooMany(ep.Child("values"), len(ec.Values), 255))
			}
			for k, v := range ec.Values {
				// Exit code 0 is success: "In 0" would fail successful pods.
				if v == 0 && ec.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn {
					errs = append(errs, field.Invalid(ep.Child("values").Index(k), v, "must not be 0 for the In operator"))
				}
				if k > 0 && ec.Values[k-1] >= v {
					errs = append(errs, field.Invalid(ep.Child("values").Index(k), v, "must be ordered and without duplicates"))
				}
			}
		}
		for k, c := range r.OnPodConditions {
			cp := rp.Child("onPodConditions").Index(k)
			if c.Type == "" {
				errs = append(errs, field.Required(cp.Child("type"), ""))
			}
			if c.Status != corev1.ConditionTrue && c.Status != corev1.ConditionFalse && c.Status != corev1.ConditionUnknown {
				errs = append(errs, field.NotSupported(cp.Child("status"), c.Status, []string{string(corev1.ConditionTrue), string(corev1.ConditionFalse), string(corev1.ConditionUnknown)}))
			}
		}
	}
	return errs
}

// validateJobSpecUpdate enforces what may change on a Job. The pod
// template is fixed once pods may exist; while a Job is suspended and has
// never started, queueing systems may still steer where it will run.
func validateJobSpecUpdate(j, old *batchv1.Job) field.ErrorList {
	s, o, path := &j.Spec, &old.Spec, field.NewPath("spec")
	errs := apivalidation.ValidateImmutableField(s.Selector, o.Selector, path.Child("selector"))
	errs = append(errs, apivalidation.ValidateImmutableField(s.CompletionMode, o.CompletionMode, path.Child("completionMode"))...)
	errs = append(errs, apivalidation.ValidateImmutableField(s.PodFailurePolicy, o.PodFailurePolicy, path.Child("podFailurePolicy"))...)
	errs = append(errs, apivalidation.ValidateImmutableField(s.SuccessPolicy, o.SuccessPolicy, path.Child("successPolicy"))...)
	errs = append(errs, apivalidation.ValidateImmutableField(s.BackoffLimitPerIndex, o.BackoffLimitPerIndex, path.Child("backoffLimitPerIndex"))...)
	errs = append(errs, apivalidation.ValidateImmutableField(s.ManagedBy, o.ManagedBy, path.Child("managedBy"))...)

	// Indexed Jobs are elastic: completions may change together with
	// parallelism, which is how they are scaled.
	indexed := s.CompletionMode != nil && *s.CompletionMode == batchv1.IndexedCompletion
	if indexed && s.Completions != nil && o.Completions != nil {
		if *s.Completions != *o.Completions && (s.Parallelism == nil || *s.Completions != *s.Parallelism) {
			errs = append(errs, field.Invalid(path.Child("completions"), *s.Completions, "can only be modified in tandem with spec.parallelism"))
		}
	} else {
		errs = append(errs, apivalidation.ValidateImmutableField(s.Completions, o.Completions, path.Child("completions"))...)
	}

	tmpl, oldTmpl := s.Template.DeepCopy(), o.Template.DeepCopy()
	if ptr.Deref(o.Suspend, false) && old.Status.StartTime == nil {
		for _, t := range []*corev1.PodTemplateSpec{tmpl, oldTmpl} {
			t.Labels, t.Annotations = nil, nil
			t.Spec.NodeSelector, t.Spec.Affinity, t.Spec.Tolerations, t.Spec.SchedulingGates = nil, nil, nil, nil
		}
	}
	if !apiequality.Semantic.DeepEqual(tmpl, oldTmpl) {
		errs = append(errs, field.Invalid(path.Child("template"), field.OmitValueType{}, "field is immutable"))
	}
	return errs
}

func jobRow(obj runtime.Object) []any {
	j := obj.(*batchv1.Job)
	var completions string
	switch {
	case j.Spec.Completions != nil:
		completions = fmt.Sprintf("%d/%d", j.Status.Succeeded, *j.Spec.Completions)
	case ptr.Deref(j.Spec.Parallelism, 1) > 1:
		// A work queue finishes on the first success; show how many run.
		completions = fmt.Sprintf("%d/1 of %d", j.Status.Succeeded, *j.Spec.Parallelism)
	default:
		completions = fmt.Sprintf("%d/1", j.Status.Succeeded)
	}
	var took string
	switch {
	case j.Status.StartTime == nil:
	case j.Status.CompletionTime == nil:
		took = duration.HumanDuration(time.Since(j.Status.StartTime.Time))
	default:
		took = duration.HumanDuration(j.Status.CompletionTime.Sub(j.Status.StartTime.Time))
	}
	names, images := wlContainerCells(j.Spec.Template.Spec.Containers)
	return []any{j.Name, jobStatus(j), completions, took, Age(j.CreationTimestamp), names, images, metav1.FormatLabelSelector(j.Spec.Selector)}
}

// jobStatus is the STATUS column: the terminal conditions win, then
// deletion, then the transient ones, in upstream's order.
func jobStatus(j *batchv1.Job) string {
	has := func(t batchv1.JobConditionType) bool {
		for _, c := range j.Status.Conditions {
			if c.Type == t && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	}
	switch {
	case has(batchv1.JobComplete):
		return "Complete"
	case has(batchv1.JobFailed):
		return "Failed"
	case j.DeletionTimestamp != nil:
		return "Terminating"
	case has(batchv1.JobSuspended):
		return "Suspended"
	case has(batchv1.JobFailureTarget):
		return "FailureTarget"
	case has(batchv1.JobSuccessCriteriaMet):
		return "SuccessCriteriaMet"
	}
	return "Running"
}
