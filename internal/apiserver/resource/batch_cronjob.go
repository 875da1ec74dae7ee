package resource

import (
	"regexp"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// cronJobMaxName leaves room in a 63-character name for the "-<minutes>"
// suffix the controller appends to each Job it creates.
const cronJobMaxName = 52

// cronTimeZoneChars is the alphabet of IANA zone names; it keeps paths
// such as "../../etc/passwd" away from the zoneinfo lookup.
var cronTimeZoneChars = regexp.MustCompile(`^[A-Za-z.\-_0-9+]{1,14}([/][A-Za-z.\-_0-9+]{1,14}){0,2}$`)

// CronJobs describes batch/v1 CronJobs.
func CronJobs() *Resource {
	return &Resource{
		Kind:       batchv1.SchemeGroupVersion.WithKind("CronJob"),
		Plural:     "cronjobs",
		Namespaced: true,
		ShortNames: []string{"cj"},
		Categories: []string{"all"},
		New:        func() runtime.Object { return &batchv1.CronJob{} },
		NewList:    func() runtime.Object { return &batchv1.CronJobList{} },
		Default:    func(obj runtime.Object) { defaultCronJob(obj.(*batchv1.CronJob)) },
		PrepareCreate: func(obj runtime.Object) {
			obj.(*batchv1.CronJob).Status = batchv1.CronJobStatus{}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			cj := obj.(*batchv1.CronJob)
			var errs field.ErrorList
			if len(cj.Name) > cronJobMaxName {
				errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), cj.Name, "must be no more than 52 characters"))
			}
			return append(errs, validateCronJobSpec(&cj.Spec, false, field.NewPath("spec"))...)
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			cj, o := obj.(*batchv1.CronJob), old.(*batchv1.CronJob)
			// Objects stored before TZ in schedule was refused stay editable.
			return validateCronJobSpec(&cj.Spec, strings.Contains(o.Spec.Schedule, "TZ"), field.NewPath("spec"))
		},
		Columns: append([]metav1.TableColumnDefinition{
			NameColumn,
			{Name: "Schedule", Type: "string", Description: batchv1.CronJobSpec{}.SwaggerDoc()["schedule"]},
			{Name: "Timezone", Type: "string", Description: batchv1.CronJobSpec{}.SwaggerDoc()["timeZone"]},
			{Name: "Suspend", Type: "boolean", Description: batchv1.CronJobSpec{}.SwaggerDoc()["suspend"]},
			{Name: "Active", Type: "integer", Description: batchv1.CronJobStatus{}.SwaggerDoc()["active"]},
			{Name: "Last Schedule", Type: "string", Description: batchv1.CronJobStatus{}.SwaggerDoc()["lastScheduleTime"]},
			AgeColumn,
		}, wlWideColumns...),
		Row:        cronJobRow,
		Generation: true,
		Status:     true,
	}
}

func defaultCronJob(cj *batchv1.CronJob) {
	s := &cj.Spec
	if s.ConcurrencyPolicy == "" {
		s.ConcurrencyPolicy = batchv1.AllowConcurrent
	}
	if s.Suspend == nil {
		s.Suspend = ptr.To(false)
	}
	if s.SuccessfulJobsHistoryLimit == nil {
		s.SuccessfulJobsHistoryLimit = ptr.To[int32](3)
	}
	if s.FailedJobsHistoryLimit == nil {
		s.FailedJobsHistoryLimit = ptr.To[int32](1)
	}
	// Upstream defaults only the pod template inside jobTemplate; the Job
	// defaults apply when the controller creates each Job.
	defaultPodTemplateSpec(&s.JobTemplate.Spec.Template)
}

func validateCronJobSpec(s *batchv1.CronJobSpec, allowTZ bool, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	sp := path.Child("schedule")
	switch {
	case s.Schedule == "":
		errs = append(errs, field.Required(sp, ""))
	case strings.Contains(s.Schedule, "TZ") && !allowTZ:
		// The timeZone field replaced the unofficial prefix; two sources
		// of truth for the zone would disagree sooner or later.
		errs = append(errs, field.Invalid(sp, s.Schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
	default:
		if _, err := parseCronSchedule(s.Schedule); err != nil {
			errs = append(errs, field.Invalid(sp, s.Schedule, err.Error()))
		}
	}
	if s.TimeZone != nil {
		errs = append(errs, validateCronTimeZone(*s.TimeZone, path.Child("timeZone"))...)
	}

	switch s.ConcurrencyPolicy {
	case batchv1.AllowConcurrent, batchv1.ForbidConcurrent, batchv1.ReplaceConcurrent:
	case "":
		errs = append(errs, field.Required(path.Child("concurrencyPolicy"), ""))
	default:
		errs = append(errs, field.NotSupported(path.Child("concurrencyPolicy"), s.ConcurrencyPolicy, []string{string(batchv1.AllowConcurrent), string(batchv1.ForbidConcurrent), string(batchv1.ReplaceConcurrent)}))
	}
	if s.StartingDeadlineSeconds != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(*s.StartingDeadlineSeconds, path.Child("startingDeadlineSeconds"))...)
	}
	errs = append(errs, wlValidateNonNegative(s.SuccessfulJobsHistoryLimit, path.Child("successfulJobsHistoryLimit"))...)
	errs = append(errs, wlValidateNonNegative(s.FailedJobsHistoryLimit, path.Child("failedJobsHistoryLimit"))...)

	jt := path.Child("jobTemplate")
	errs = append(errs, metav1validation.ValidateLabels(s.JobTemplate.Labels, jt.Child("metadata", "labels"))...)
	errs = append(errs, apivalidation.ValidateAnnotations(s.JobTemplate.Annotations, jt.Child("metadata", "annotations"))...)
	errs = append(errs, validateJobSpec(&s.JobTemplate.Spec, jt.Child("spec"), true)...)
	return errs
}

// validateCronTimeZone accepts explicit IANA zone names only: "Local"
// would mean whatever zone the controller's host happens to be in.
func validateCronTimeZone(tz string, path *field.Path) field.ErrorList {
	switch {
	case tz == "":
		return field.ErrorList{field.Invalid(path, tz, "timeZone must be nil or non-empty string")}
	case strings.EqualFold(tz, "Local"):
		return field.ErrorList{field.Invalid(path, tz, "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones")}
	case !cronTimeZoneChars.MatchString(tz):
		return field.ErrorList{field.Invalid(path, tz, "unknown time zone "+tz)}
	}
	if _, err := time.LoadLocation(tz); err != nil {
		return field.ErrorList{field.Invalid(path, tz, err.Error())}
	}
	return nil
}

func cronJobRow(obj runtime.Object) []any {
	cj := obj.(*batchv1.CronJob)
	last := "<none>"
	if cj.Status.LastScheduleTime != nil {
		last = Age(*cj.Status.LastScheduleTime)
	}
	suspend := "<unset>"
	if cj.Spec.Suspend != nil {
		suspend = "False"
		if *cj.Spec.Suspend {
			suspend = "True"
		}
	}
	names, images := wlContainerCells(cj.Spec.JobTemplate.Spec.Template.Spec.Containers)
	return []any{
		cj.Name, cj.Spec.Schedule, ptr.Deref(cj.Spec.TimeZone, "<none>"), suspend,
		int64(len(cj.Status.Active)), last, Age(cj.CreationTimestamp),
		names, images, metav1.FormatLabelSelector(cj.Spec.JobTemplate.Spec.Selector),
	}
}
