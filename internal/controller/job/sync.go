package job

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// sync brings one Job's pods and status in line with its spec.
func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	job, err := c.jobs.Jobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.expect.forget(key)
		c.removals.forget(key)
		c.failures.forget(key)
		return c.releaseStrays(ctx, ns, name, "")
	}
	if err != nil {
		return err
	}
	// Another controller owns this Job's status (upstream's managedBy).
	if m := job.Spec.ManagedBy; m != nil && *m != batchv1.JobControllerName {
		return nil
	}
	if job.DeletionTimestamp != nil {
		// Let the pods go with the Job instead of pinning them.
		return c.releaseStrays(ctx, ns, name, "")
	}
	if err := c.releaseStrays(ctx, ns, name, job.UID); err != nil {
		return err
	}
	pods, err := c.ownedPods(job)
	if err != nil {
		return err
	}
	c.removals.observe(key, pods)
	if finished(job) != nil {
		return c.syncFinished(ctx, key, job, pods)
	}
	return c.syncRunning(ctx, key, job.DeepCopy(), pods)
}

// finished returns a Job's Complete or Failed condition, if true.
func finished(job *batchv1.Job) *batchv1.JobCondition {
	for i, cd := range job.Status.Conditions {
		if (cd.Type == batchv1.JobComplete || cd.Type == batchv1.JobFailed) && cd.Status == corev1.ConditionTrue {
			return &job.Status.Conditions[i]
		}
	}
	return nil
}

func condition(job *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i, cd := range job.Status.Conditions {
		if cd.Type == t {
			return &job.Status.Conditions[i]
		}
	}
	return nil
}

// setCondition sets a condition, moving lastTransitionTime only when the
// status changes.
func setCondition(job *batchv1.Job, t batchv1.JobConditionType, status corev1.ConditionStatus, reason, msg string, now time.Time) {
	ts := metav1.NewTime(now)
	if cd := condition(job, t); cd != nil {
		if cd.Status != status {
			cd.LastTransitionTime = ts
		}
		cd.Status, cd.Reason, cd.Message, cd.LastProbeTime = status, reason, msg, ts
		return
	}
	job.Status.Conditions = append(job.Status.Conditions, batchv1.JobCondition{
		Type: t, Status: status, Reason: reason, Message: msg, LastProbeTime: ts, LastTransitionTime: ts,
	})
}

func isActive(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

func isReady(p *corev1.Pod) bool {
	for _, cd := range p.Status.Conditions {
		if cd.Type == corev1.PodReady {
			return cd.Status == corev1.ConditionTrue
		}
	}
	return false
}

// outcome is how a finished pod counts.
type outcome int

const (
	running outcome = iota
	succeeded
	failed
)

// podOutcome follows upstream: a pod deleted before it finished counts as
// failed, unless the Job replaces only pods that reached phase Failed.
func podOutcome(job *batchv1.Job, p *corev1.Pod) outcome {
	switch {
	case p.Status.Phase == corev1.PodSucceeded:
		return succeeded
	case p.Status.Phase == corev1.PodFailed:
		return failed
	case p.DeletionTimestamp != nil && ptr.Deref(job.Spec.PodReplacementPolicy, batchv1.TerminatingOrFailed) != batchv1.Failed:
		return failed
	}
	return running
}

// syncFinished cleans up after a finished Job and, with a TTL, deletes it.
func (c *Controller) syncFinished(ctx context.Context, key string, job *batchv1.Job, pods []*corev1.Pod) error {
	var active []*corev1.Pod
	var errs []error
	for _, p := range pods {
		switch {
		case isActive(p):
			active = append(active, p)
		case hasFinalizer(p):
			errs = append(errs, c.release(ctx, p))
		}
	}
	if _, err := c.deletePods(ctx, key, job, active); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	ttl := job.Spec.TTLSecondsAfterFinished
	if ttl == nil {
		return nil
	}
	end := finished(job).LastTransitionTime.Time
	if job.Status.CompletionTime != nil {
		end = job.Status.CompletionTime.Time
	}
	now := c.clock.Now()
	if wait := end.Add(time.Duration(*ttl) * time.Second).Sub(now); wait > 0 {
		c.queue.AddAfter(key, wait)
		return nil
	}
	// Upstream's TTL controller deletes in the foreground and leaves the
	// pods to the garbage collector. We delete the pods ourselves first,
	// then the Job in the background, so nothing waits on a collector.
	rest := slices.DeleteFunc(slices.Clone(pods), isActive)
	if _, err := c.deletePods(ctx, key, job, rest); err != nil {
		return err
	}
	bg := metav1.DeletePropagationBackground
	err := c.client.BatchV1().Jobs(job.Namespace).Delete(ctx, job.Name, metav1.DeleteOptions{
		PropagationPolicy: &bg,
		Preconditions:     &metav1.Preconditions{UID: &job.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete finished job: %w", err)
	}
	c.log.Info("deleted finished job after its TTL", "job", key)
	return nil
}

// tally is what syncRunning learns from the pods before acting.
type tally struct {
	active, terminating []*corev1.Pod
	// finishedPods succeeded or failed, counted or not.
	finishedPods      []*corev1.Pod
	completed, failed indexSet
	// failJob is set when the pod failure policy asked to fail the Job.
	failJob string
}

// syncRunning is the heart of the controller: count finished pods, decide
// whether the Job is done, and otherwise keep the right pods running.
func (c *Controller) syncRunning(ctx context.Context, key string, job *batchv1.Job, pods []*corev1.Pod) error {
	now := c.clock.Now()
	// As upstream, the cache is trusted to create or delete pods only once
	// it shows what earlier syncs did: pods created and deleted, and
	// finalizers removed (an unseen removal may hide a counted pod).
	// Removals this sync makes are accounted for by track itself.
	settled := c.expect.satisfied(key) && c.removals.none(key)
	t, orig, err := c.track(ctx, key, job, pods, now)
	if err != nil {
		return err
	}
	indexed := ptr.Deref(job.Spec.CompletionMode, batchv1.NonIndexedCompletion) == batchv1.IndexedCompletion
	st := &job.Status
	unc := st.UncountedTerminatedPods
	succeededN := st.Succeeded + int32(len(unc.Succeeded))
	failedN := st.Failed + int32(len(unc.Failed))
	suspended := ptr.Deref(job.Spec.Suspend, false)
	completions := ptr.Deref(job.Spec.Completions, 0)

	// Suspension and resumption: a suspended Job has no start time, so a
	// resumed one's active deadline counts from the resumption.
	if suspended {
		if cd := condition(job, batchv1.JobSuspended); cd == nil || cd.Status != corev1.ConditionTrue {
			setCondition(job, batchv1.JobSuspended, corev1.ConditionTrue, "JobSuspended", "Job suspended", now)
			c.recorder.Event(job, corev1.EventTypeNormal, "Suspended", "Job suspended")
		}
		st.StartTime = nil
	} else {
		if cd := condition(job, batchv1.JobSuspended); cd != nil && cd.Status == corev1.ConditionTrue {
			setCondition(job, batchv1.JobSuspended, corev1.ConditionFalse, "JobResumed", "Job resumed", now)
			c.recorder.Event(job, corev1.EventTypeNormal, "Resumed", "Job resumed")
			st.StartTime = nil
		}
		if st.StartTime == nil {
			st.StartTime = ptr.To(metav1.NewTime(now))
		}
	}

	// Is the Job finished? Failure reasons are checked before success, in
	// upstream's order.
	var failReason, failMsg string
	deadline := time.Duration(-1)
	if ads := job.Spec.ActiveDeadlineSeconds; ads != nil && st.StartTime != nil {
		deadline = st.StartTime.Add(time.Duration(*ads) * time.Second).Sub(now)
	}
	switch ft := condition(job, batchv1.JobFailureTarget); {
	case ft != nil && ft.Status == corev1.ConditionTrue:
		failReason, failMsg = ft.Reason, ft.Message
	case failedN > ptr.Deref(job.Spec.BackoffLimit, 6):
		failReason, failMsg = batchv1.JobReasonBackoffLimitExceeded, "Job has reached the specified backoff limit"
	case job.Spec.MaxFailedIndexes != nil && int32(len(t.failed)) > *job.Spec.MaxFailedIndexes:
		failReason, failMsg = batchv1.JobReasonMaxFailedIndexesExceeded, "Job has exceeded the specified maximal number of failed indexes"
	case job.Spec.ActiveDeadlineSeconds != nil && st.StartTime != nil && deadline <= 0:
		failReason, failMsg = batchv1.JobReasonDeadlineExceeded, "Job was active longer than specified deadline"
	case indexed && len(t.failed) > 0 && int32(len(t.completed)+len(t.failed)) >= completions:
		failReason, failMsg = batchv1.JobReasonFailedIndexes, "Job has failed indexes"
	}
	var complete bool
	if failReason == "" {
		switch {
		case indexed:
			complete = int32(len(t.completed)) >= completions
		case job.Spec.Completions != nil:
			complete = succeededN >= completions
		default:
			// A work queue is done when one pod succeeded and the rest ended.
			complete = succeededN > 0 && len(t.active) == 0
		}
	}

	var errs []error
	active := len(t.active)
	switch {
	case failReason != "" || complete:
		n, err := c.deletePods(ctx, key, job, t.active)
		active -= n
		errs = append(errs, err)
		if failReason != "" {
			setCondition(job, batchv1.JobFailureTarget, corev1.ConditionTrue, failReason, failMsg, now)
			setCondition(job, batchv1.JobFailed, corev1.ConditionTrue, failReason, failMsg, now)
			c.recorder.Event(job, corev1.EventTypeWarning, failReason, failMsg)
		} else {
			setCondition(job, batchv1.JobSuccessCriteriaMet, corev1.ConditionTrue, batchv1.JobReasonCompletionsReached, "Reached expected number of succeeded pods", now)
			setCondition(job, batchv1.JobComplete, corev1.ConditionTrue, batchv1.JobReasonCompletionsReached, "Reached expected number of succeeded pods", now)
			st.CompletionTime = ptr.To(metav1.NewTime(now))
			c.recorder.Event(job, corev1.EventTypeNormal, "Completed", "Job completed")
		}
	case suspended:
		n, err := c.deletePods(ctx, key, job, t.active)
		active -= n
		errs = append(errs, err)
	case settled:
		n, err := c.manage(ctx, key, job, t, succeededN, now)
		active += n
		errs = append(errs, err)
		if deadline > 0 {
			c.queue.AddAfter(key, deadline)
		}
	}

	st.Active = int32(max(active, 0))
	ready := int32(0)
	for _, p := range t.active {
		if isReady(p) {
			ready++
		}
	}
	st.Ready = &ready
	st.Terminating = ptr.To(int32(len(t.terminating)))
	if indexed {
		st.CompletedIndexes = t.completed.String()
		if job.Spec.BackoffLimitPerIndex != nil {
			st.FailedIndexes = ptr.To(t.failed.String())
		}
	}
	if !apiequality.Semantic.DeepEqual(orig, st) {
		if _, err := c.client.BatchV1().Jobs(job.Namespace).UpdateStatus(ctx, job, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("update status: %w", err))
		}
	}
	return errors.Join(errs...)
}

// manage creates or deletes pods so that the right number run, returning
// the change in active pods.
func (c *Controller) manage(ctx context.Context, key string, job *batchv1.Job, t *tally, succeededN int32, now time.Time) (int, error) {
	parallelism := int(ptr.Deref(job.Spec.Parallelism, 1))
	var excess []*corev1.Pod
	var create []int
	failures := map[int]int{}

	if ptr.Deref(job.Spec.CompletionMode, batchv1.NonIndexedCompletion) == batchv1.IndexedCompletion {
		completions := int(ptr.Deref(job.Spec.Completions, 0))
		// Keep one active pod per index still to do; the rest go.
		running := map[int]bool{}
		var keep []*corev1.Pod
		for _, p := range t.active {
			ix := podIndex(p)
			if ix < 0 || ix >= completions || t.completed[ix] || t.failed[ix] || running[ix] {
				excess = append(excess, p)
				continue
			}
			running[ix] = true
			keep = append(keep, p)
		}
		want := min(parallelism, completions-len(t.completed)-len(t.failed))
		if extra := len(keep) - want; extra > 0 {
			// Stop the highest indexes first, as upstream does.
			slices.SortFunc(keep, func(a, b *corev1.Pod) int { return podIndex(b) - podIndex(a) })
			excess = append(excess, keep[:extra]...)
		}
		for ix := 0; ix < completions && len(keep)+len(create) < want; ix++ {
			if !running[ix] && !t.completed[ix] && !t.failed[ix] {
				create = append(create, ix)
			}
		}
		if job.Spec.BackoffLimitPerIndex != nil {
			for _, p := range t.finishedPods {
				if ix := podIndex(p); ix >= 0 && podOutcome(job, p) == failed {
					failures[ix] = max(failures[ix], indexFailures(p)+1)
				}
			}
		}
	} else {
		want := parallelism
		switch {
		case job.Spec.Completions != nil:
			want = min(parallelism, int(*job.Spec.Completions-succeededN))
		case succeededN > 0:
			// A work queue starts no new worker after one succeeded, and
			// lets those running finish.
			want = len(t.active)
		}
		want = max(want, 0)
		if extra := len(t.active) - want; extra > 0 {
			// Prefer stopping pods that are not ready yet, newest first.
			pods := slices.Clone(t.active)
			slices.SortFunc(pods, func(a, b *corev1.Pod) int {
				if isReady(a) != isReady(b) {
					if isReady(a) {
						return 1
					}
					return -1
				}
				return b.CreationTimestamp.Compare(a.CreationTimestamp.Time)
			})
			excess = pods[:extra]
		}
		for i := len(t.active); i < want; i++ {
			create = append(create, -1)
		}
	}

	deleted, derr := c.deletePods(ctx, key, job, excess)
	if len(create) > 0 {
		if wait := retryWait(c.failures.get(key), c.backoff, c.maxBackoff, now); wait > 0 {
			c.queue.AddAfter(key, wait)
			create = nil
		}
	}
	created, cerr := c.createPods(ctx, key, job, create, failures)
	return created - deleted, errors.Join(derr, cerr)
}

// uidSet makes a lookup set of UIDs.
func uidSet(uids []types.UID) map[types.UID]bool {
	m := make(map[types.UID]bool, len(uids))
	for _, u := range uids {
		m[u] = true
	}
	return m
}
