package cronjob

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/skiffhq/skiff/internal/apiserver/resource"
)

// tooManyMissed is upstream's threshold for warning that a CronJob missed
// many runs (a long outage, or clock skew) without a starting deadline.
const tooManyMissed = 100

// nextSlack keeps the wake-up just after the scheduled minute, so that the
// clock has reached it when the sync runs.
const nextSlack = 100 * time.Millisecond

// sync reconciles one CronJob: its record of active Jobs, history limits
// and, when a scheduled time has come, a new Job.
func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	cached, err := c.cronJobs.CronJobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	cj := cached.DeepCopy()
	jobs, err := c.ownedJobs(cj)
	if err != nil {
		return err
	}
	var errs []error
	errs = append(errs, c.reconcileActive(ctx, cj, jobs))
	if cj.DeletionTimestamp == nil {
		errs = append(errs, c.pruneHistory(ctx, cj, jobs))
		if !ptr.Deref(cj.Spec.Suspend, false) {
			errs = append(errs, c.schedule(ctx, key, cj))
		}
	}
	if !apiequality.Semantic.DeepEqual(cached.Status, cj.Status) {
		if _, err := c.client.BatchV1().CronJobs(ns).UpdateStatus(ctx, cj, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("update status: %w", err))
		}
	}
	return errors.Join(errs...)
}

// ownedJobs lists the Jobs cj controls.
func (c *Controller) ownedJobs(cj *batchv1.CronJob) ([]*batchv1.Job, error) {
	all, err := c.jobs.Jobs(cj.Namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var own []*batchv1.Job
	for _, j := range all {
		if ref := metav1.GetControllerOf(j); ref != nil && ref.UID == cj.UID {
			own = append(own, j)
		}
	}
	return own, nil
}

// jobFinished returns the Complete or Failed condition type, or "".
func jobFinished(j *batchv1.Job) batchv1.JobConditionType {
	for _, cd := range j.Status.Conditions {
		if (cd.Type == batchv1.JobComplete || cd.Type == batchv1.JobFailed) && cd.Status == corev1.ConditionTrue {
			return cd.Type
		}
	}
	return ""
}

// reconcileActive makes status.active list exactly the unfinished Jobs,
// noting finished ones and the latest success.
func (c *Controller) reconcileActive(ctx context.Context, cj *batchv1.CronJob, jobs []*batchv1.Job) error {
	inActive := map[string]bool{}
	for _, r := range cj.Status.Active {
		inActive[string(r.UID)] = true
	}
	byUID := map[string]*batchv1.Job{}
	for _, j := range jobs {
		byUID[string(j.UID)] = j
		done := jobFinished(j)
		switch {
		case done == "" && !inActive[string(j.UID)]:
			// Created before a crash lost our status write: still ours.
			cj.Status.Active = append(cj.Status.Active, jobRef(j))
		case done != "" && inActive[string(j.UID)]:
			c.recorder.Eventf(cj, corev1.EventTypeNormal, "SawCompletedJob", "Saw completed job: %s, condition: %s", j.Name, done)
			cj.Status.Active = slices.DeleteFunc(cj.Status.Active, func(r corev1.ObjectReference) bool { return r.UID == j.UID })
		}
		if done == batchv1.JobComplete && j.Status.CompletionTime != nil {
			if last := cj.Status.LastSuccessfulTime; last == nil || last.Before(j.Status.CompletionTime) {
				cj.Status.LastSuccessfulTime = j.Status.CompletionTime.DeepCopy()
			}
		}
	}
	// An active Job missing from the cache may just be newer than it:
	// ask the API server before forgetting it.
	var errs []error
	cj.Status.Active = slices.DeleteFunc(cj.Status.Active, func(r corev1.ObjectReference) bool {
		if byUID[string(r.UID)] != nil {
			return false
		}
		j, err := c.client.BatchV1().Jobs(cj.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return true
		case err != nil:
			errs = append(errs, err)
			return false
		}
		return j.UID != r.UID || jobFinished(j) != ""
	})
	return errors.Join(errs...)
}

func jobRef(j *batchv1.Job) corev1.ObjectReference {
	return corev1.ObjectReference{
		Kind: "Job", APIVersion: batchv1.SchemeGroupVersion.String(),
		Namespace: j.Namespace, Name: j.Name, UID: j.UID, ResourceVersion: j.ResourceVersion,
	}
}

// pruneHistory deletes the oldest finished Jobs beyond the history limits.
func (c *Controller) pruneHistory(ctx context.Context, cj *batchv1.CronJob, jobs []*batchv1.Job) error {
	var ok, failed []*batchv1.Job
	for _, j := range jobs {
		switch jobFinished(j) {
		case batchv1.JobComplete:
			ok = append(ok, j)
		case batchv1.JobFailed:
			failed = append(failed, j)
		}
	}
	var errs []error
	for _, set := range []struct {
		jobs  []*batchv1.Job
		limit *int32
	}{{ok, cj.Spec.SuccessfulJobsHistoryLimit}, {failed, cj.Spec.FailedJobsHistoryLimit}} {
		if set.limit == nil || len(set.jobs) <= int(*set.limit) {
			continue
		}
		slices.SortFunc(set.jobs, olderFirst)
		for _, j := range set.jobs[:len(set.jobs)-int(*set.limit)] {
			errs = append(errs, c.deleteJob(ctx, cj, j))
		}
	}
	return errors.Join(errs...)
}

// olderFirst orders Jobs for pruning as upstream does: by start time,
// Jobs that never started last, and equal start times by name. Start
// times have one-second resolution, so runs started in the same second
// (a backlog caught up at once, or a fast clock in tests) tie; without
// the tie-break the sort may put the newest run first and prune it. A
// CronJob's Job names end in the scheduled minute, so the name orders
// the runs.
func olderFirst(a, b *batchv1.Job) int {
	as, bs := a.Status.StartTime, b.Status.StartTime
	switch {
	case as == nil && bs != nil:
		return 1
	case as != nil && bs == nil:
		return -1
	case as != nil && !as.Equal(bs):
		return as.Compare(bs.Time)
	}
	return cmp.Compare(a.Name, b.Name)
}

// deleteJob deletes a Job and its pods. No garbage collector may run, so
// the pods are deleted here rather than left to one; the Job controller
// has already released them (its finalizer is gone once counted).
func (c *Controller) deleteJob(ctx context.Context, cj *batchv1.CronJob, j *batchv1.Job) error {
	bg := metav1.DeletePropagationBackground
	err := c.client.BatchV1().Jobs(j.Namespace).Delete(ctx, j.Name, metav1.DeleteOptions{
		PropagationPolicy: &bg, Preconditions: &metav1.Preconditions{UID: &j.UID},
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		c.recorder.Eventf(cj, corev1.EventTypeWarning, "FailedDelete", "Deleted job: %v", err)
		return fmt.Errorf("delete job %s: %w", j.Name, err)
	}
	c.recorder.Eventf(cj, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted job %s", j.Name)
	err = c.client.CoreV1().Pods(j.Namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{
		LabelSelector: batchv1.ControllerUidLabel + "=" + string(j.UID),
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pods of job %s: %w", j.Name, err)
	}
	return nil
}

// schedule starts the most recent missed run, if any, and arranges to be
// woken at the next one.
func (c *Controller) schedule(ctx context.Context, key string, cj *batchv1.CronJob) error {
	sched, err := resource.ParseCronSchedule(cj.Spec.Schedule)
	if err != nil {
		// Validation refuses these; a stored object from before can only
		// be fixed by its owner, so retrying would not help.
		c.recorder.Eventf(cj, corev1.EventTypeWarning, "UnparseableSchedule", "unparseable schedule: %q : %s", cj.Spec.Schedule, err)
		return nil
	}
	loc := time.Local
	if tz := cj.Spec.TimeZone; tz != nil {
		if loc, err = time.LoadLocation(*tz); err != nil {
			c.recorder.Eventf(cj, corev1.EventTypeWarning, "UnknownTimeZone", "invalid timeZone: %q: %s", *tz, err)
			return nil
		}
	}
	now := c.clock.Now()
	missed, count := c.mostRecent(cj, sched, loc, now)
	if next := sched.Next(now.In(loc)); !next.IsZero() {
		c.queue.AddAfter(key, next.Sub(now)+nextSlack)
	}
	if missed.IsZero() {
		return nil
	}
	if count > tooManyMissed {
		c.recorder.Eventf(cj, corev1.EventTypeWarning, "TooManyMissedTimes",
			"too many missed start times: %d. Set or decrease .spec.startingDeadlineSeconds or check clock skew", count)
	}
	if sds := cj.Spec.StartingDeadlineSeconds; sds != nil && missed.Add(time.Duration(*sds)*time.Second).Before(now) {
		c.recorder.Eventf(cj, corev1.EventTypeWarning, "MissSchedule", "Missed scheduled time to start a job: %s", missed.UTC().Format(time.RFC1123Z))
		return nil
	}
	switch cj.Spec.ConcurrencyPolicy {
	case batchv1.ForbidConcurrent:
		if len(cj.Status.Active) > 0 {
			// The run is skipped, not postponed: the next one is awaited.
			c.recorder.Eventf(cj, corev1.EventTypeNormal, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid")
			return nil
		}
	case batchv1.ReplaceConcurrent:
		var errs []error
		for _, r := range cj.Status.Active {
			j, err := c.jobs.Jobs(cj.Namespace).Get(r.Name)
			if apierrors.IsNotFound(err) {
				continue
			}
			if err != nil {
				return err
			}
			errs = append(errs, c.deleteJob(ctx, cj, j))
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		cj.Status.Active = nil
	}
	return c.createJob(ctx, cj, missed, loc)
}

// mostRecent returns the latest scheduled time in (earliest, now] and how
// many there were. earliest is the last run (or creation), moved up to
// now − startingDeadlineSeconds when that is later: older runs are too
// late to start anyway.
func (c *Controller) mostRecent(cj *batchv1.CronJob, sched resource.CronSchedule, loc *time.Location, now time.Time) (time.Time, int) {
	earliest := cj.CreationTimestamp.Time
	if t := cj.Status.LastScheduleTime; t != nil {
		earliest = t.Time
	}
	if sds := cj.Spec.StartingDeadlineSeconds; sds != nil {
		if d := now.Add(-time.Duration(*sds) * time.Second); d.After(earliest) {
			earliest = d
		}
	}
	var last time.Time
	count := 0
	for t := sched.Next(earliest.In(loc)); !t.IsZero() && !t.After(now); t = sched.Next(t) {
		last = t
		count++
	}
	return last, count
}

// createJob creates the Job for the run at scheduled. The name is derived
// from the time, so a repeated attempt for the same run finds the Job it
// made before instead of making a second one.
func (c *Controller) createJob(ctx context.Context, cj *batchv1.CronJob, scheduled time.Time, loc *time.Location) error {
	tmpl := cj.Spec.JobTemplate
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:            fmt.Sprintf("%s-%d", cj.Name, scheduled.Unix()/60),
			Namespace:       cj.Namespace,
			Labels:          maps.Clone(tmpl.Labels),
			Annotations:     maps.Clone(tmpl.Annotations),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(cj, batchv1.SchemeGroupVersion.WithKind("CronJob"))},
		},
		Spec: *tmpl.Spec.DeepCopy(),
	}
	if job.Annotations == nil {
		job.Annotations = map[string]string{}
	}
	job.Annotations[batchv1.CronJobScheduledTimestampAnnotation] = scheduled.In(loc).Format(time.RFC3339)

	got, err := c.client.BatchV1().Jobs(cj.Namespace).Create(ctx, job, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		existing, gerr := c.client.BatchV1().Jobs(cj.Namespace).Get(ctx, job.Name, metav1.GetOptions{})
		if gerr != nil {
			return fmt.Errorf("get existing job %s: %w", job.Name, gerr)
		}
		if ref := metav1.GetControllerOf(existing); ref == nil || ref.UID != cj.UID {
			c.recorder.Eventf(cj, corev1.EventTypeWarning, "FailedCreate", "Error creating job: %s already exists and is not ours", job.Name)
			return nil
		}
		got, err = existing, nil
	} else if err == nil {
		c.recorder.Eventf(cj, corev1.EventTypeNormal, "SuccessfulCreate", "Created job %s", got.Name)
	}
	if err != nil {
		c.recorder.Eventf(cj, corev1.EventTypeWarning, "FailedCreate", "Error creating job: %v", err)
		return fmt.Errorf("create job: %w", err)
	}
	if jobFinished(got) == "" && !slices.ContainsFunc(cj.Status.Active, func(r corev1.ObjectReference) bool { return r.UID == got.UID }) {
		cj.Status.Active = append(cj.Status.Active, jobRef(got))
	}
	cj.Status.LastScheduleTime = ptr.To(metav1.NewTime(scheduled))
	return nil
}
