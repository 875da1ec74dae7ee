package job

import (
	"context"
	"errors"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// track counts finished pods the way upstream does with the
// batch.kubernetes.io/job-tracking finalizer, in three steps that make
// each pod count exactly once even across crashes and lost updates:
//
//  1. a finished pod that still has the finalizer has its UID written to
//     status.uncountedTerminatedPods (with any completed or failed index
//     and a FailureTarget condition its failure policy calls for);
//  2. its finalizer is removed, so it may now be deleted by anyone;
//  3. UIDs whose pods are released or gone move from the uncounted lists
//     into status.succeeded and status.failed.
//
// Step 3's status write is the caller's; track leaves job.Status ready
// for it and returns the status as last stored, to compare against.
func (c *Controller) track(ctx context.Context, key string, job *batchv1.Job, pods []*corev1.Pod, now time.Time) (*tally, *batchv1.JobStatus, error) {
	indexed := ptr.Deref(job.Spec.CompletionMode, batchv1.NonIndexedCompletion) == batchv1.IndexedCompletion
	completions := int(ptr.Deref(job.Spec.Completions, 0))
	stored := job.Status.DeepCopy()
	st := &job.Status
	if st.UncountedTerminatedPods == nil {
		st.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{}
	}
	unc := st.UncountedTerminatedPods
	t := &tally{completed: indexSet{}, failed: indexSet{}}
	if indexed {
		t.completed = parseIndexes(st.CompletedIndexes, completions)
		t.failed = parseIndexes(ptr.Deref(st.FailedIndexes, ""), completions)
	}
	uncS, uncF := uidSet(unc.Succeeded), uidSet(unc.Failed)

	var toRelease []*corev1.Pod
	newS, newF := 0, 0
	for _, p := range pods {
		o := podOutcome(job, p)
		if o == running {
			if p.DeletionTimestamp != nil {
				t.terminating = append(t.terminating, p)
			} else {
				t.active = append(t.active, p)
			}
			continue
		}
		t.finishedPods = append(t.finishedPods, p)
		if !hasFinalizer(p) || c.removals.has(key, p.UID) {
			continue // counted already (the cache may not show it yet)
		}
		toRelease = append(toRelease, p)
		if uncS[p.UID] || uncF[p.UID] {
			continue
		}
		ix := -1
		if indexed {
			ix = podIndex(p)
		}
		validIx := ix >= 0 && ix < completions
		if o == succeeded {
			unc.Succeeded = append(unc.Succeeded, p.UID)
			newS++
			if validIx {
				t.completed[ix] = true
			}
			continue
		}
		var action *batchv1.PodFailurePolicyAction
		var msg string
		// Rules look at how the pod ended: only pods that reached phase
		// Failed have exit codes and conditions to match.
		if p.Status.Phase == corev1.PodFailed {
			action, msg = matchFailurePolicy(job.Spec.PodFailurePolicy, p)
		}
		switch {
		case action != nil && *action == batchv1.PodFailurePolicyActionIgnore:
			continue // released without counting
		case action != nil && *action == batchv1.PodFailurePolicyActionFailJob:
			if t.failJob == "" {
				t.failJob = msg
			}
		case action != nil && *action == batchv1.PodFailurePolicyActionFailIndex:
			if validIx {
				t.failed[ix] = true
			}
		case job.Spec.BackoffLimitPerIndex != nil && validIx && indexFailures(p)+1 > int(*job.Spec.BackoffLimitPerIndex):
			t.failed[ix] = true
		}
		unc.Failed = append(unc.Failed, p.UID)
		newF++
	}

	// Step 1: persist what step 2 is about to make unrecoverable.
	if newS+newF > 0 {
		if indexed {
			st.CompletedIndexes = t.completed.String()
			if job.Spec.BackoffLimitPerIndex != nil {
				st.FailedIndexes = ptr.To(t.failed.String())
			}
		}
		if t.failJob != "" {
			setCondition(job, batchv1.JobFailureTarget, corev1.ConditionTrue, batchv1.JobReasonPodFailurePolicy, t.failJob, now)
		}
		got, err := c.client.BatchV1().Jobs(job.Namespace).UpdateStatus(ctx, job, metav1.UpdateOptions{})
		if err != nil {
			return nil, nil, fmt.Errorf("record finished pods: %w", err)
		}
		*job = *got
		st = &job.Status
		if st.UncountedTerminatedPods == nil {
			st.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{}
		}
		unc = st.UncountedTerminatedPods
		stored = st.DeepCopy()
		c.failures.record(key, now, newS, newF)
	}

	// Step 2.
	released := map[types.UID]bool{}
	var errs []error
	for _, p := range toRelease {
		if err := c.releaseTracked(ctx, key, p); err != nil {
			errs = append(errs, err)
			continue
		}
		released[p.UID] = true
	}

	// Step 3.
	present := make(map[types.UID]*corev1.Pod, len(pods))
	for _, p := range pods {
		present[p.UID] = p
	}
	pending := func(uid types.UID) bool {
		p, ok := present[uid]
		return ok && hasFinalizer(p) && !released[uid] && !c.removals.has(key, uid)
	}
	var keepS, keepF []types.UID
	for _, uid := range unc.Succeeded {
		if pending(uid) {
			keepS = append(keepS, uid)
		} else {
			st.Succeeded++
		}
	}
	for _, uid := range unc.Failed {
		if pending(uid) {
			keepF = append(keepF, uid)
		} else {
			st.Failed++
		}
	}
	unc.Succeeded, unc.Failed = keepS, keepF
	return t, stored, errors.Join(errs...)
}
