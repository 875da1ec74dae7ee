package deployment

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// rolloutRolling moves pods from the old ReplicaSets to the new one: the
// new grows while the total stays within replicas+maxSurge, the old
// shrink while availability stays at or above replicas-maxUnavailable.
func (c *Controller) rolloutRolling(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) error {
	newRS, old, err := c.getAllReplicaSets(ctx, d, rsList, true)
	if err != nil {
		return err
	}
	all := append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	scaled, err := c.reconcileNewRS(ctx, d, all, newRS)
	if err != nil {
		return err
	}
	if !scaled {
		if scaled, err = c.reconcileOldRSs(ctx, d, all, active(old), newRS); err != nil {
			return err
		}
	}
	if !scaled {
		st := c.calculateStatus(d, all, newRS)
		if complete(d, &st) {
			if err := c.cleanup(ctx, d, old); err != nil {
				return err
			}
		}
	}
	return c.syncRolloutStatus(ctx, d, all, newRS)
}

// reconcileNewRS grows (or, if over, shrinks) the new ReplicaSet.
func (c *Controller) reconcileNewRS(ctx context.Context, d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (bool, error) {
	want := replicas(d)
	if rsReplicas(newRS) == want {
		return false, nil
	}
	if rsReplicas(newRS) < want {
		want = newRSReplicas(d, all, newRS)
	}
	if want == rsReplicas(newRS) {
		return false, nil
	}
	_, err := c.scaleRS(ctx, newRS, want, d)
	return err == nil, err
}

// reconcileOldRSs shrinks old ReplicaSets as far as availability allows:
// first pods that are not available anyway, then healthy ones.
func (c *Controller) reconcileOldRSs(ctx context.Context, d *appsv1.Deployment, all, old []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (bool, error) {
	if sumSpec(old) == 0 {
		return false, nil
	}
	minAvailable := replicas(d) - maxUnavailable(d)
	newUnavailable := rsReplicas(newRS) - newRS.Status.AvailableReplicas
	// Unavailable new pods already use up part of the budget: counting
	// them keeps a broken new template from eating all old capacity.
	maxScaleDown := sumSpec(all) - minAvailable - newUnavailable
	if maxScaleDown <= 0 {
		return false, nil
	}
	byCreation(old)
	var cleaned int32
	for _, rs := range old {
		if cleaned >= maxScaleDown {
			break
		}
		unhealthy := rsReplicas(rs) - rs.Status.AvailableReplicas
		if rsReplicas(rs) == 0 || unhealthy <= 0 {
			continue
		}
		down := min(maxScaleDown-cleaned, unhealthy)
		if _, err := c.scaleRS(ctx, rs, rsReplicas(rs)-down, d); err != nil {
			return false, err
		}
		cleaned += down
	}
	// Healthy old pods may go only while enough stay available overall.
	available := sumStatus(append(append([]*appsv1.ReplicaSet(nil), old...), newRS), func(s *appsv1.ReplicaSetStatus) int32 { return s.AvailableReplicas })
	var scaledDown int32
	if budget := available - minAvailable; budget > 0 {
		for _, rs := range old {
			if scaledDown >= budget {
				break
			}
			if rsReplicas(rs) == 0 {
				continue
			}
			down := min(rsReplicas(rs), budget-scaledDown)
			if _, err := c.scaleRS(ctx, rs, rsReplicas(rs)-down, d); err != nil {
				return false, err
			}
			scaledDown += down
		}
	}
	return cleaned+scaledDown > 0, nil
}

// rolloutRecreate takes every old pod down before the new ReplicaSet
// starts any, for applications that cannot run two versions at once.
func (c *Controller) rolloutRecreate(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) error {
	newRS, old, err := c.getAllReplicaSets(ctx, d, rsList, false)
	if err != nil {
		return err
	}
	all := old
	if newRS != nil {
		all = append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	}
	scaledDown := false
	for _, rs := range active(old) {
		if _, err := c.scaleRS(ctx, rs, 0, d); err != nil {
			return err
		}
		scaledDown = true
	}
	if scaledDown || c.oldPodsRunning(newRS, old) {
		return c.syncRolloutStatus(ctx, d, all, newRS)
	}
	if newRS == nil {
		if newRS, old, err = c.getAllReplicaSets(ctx, d, rsList, true); err != nil {
			return err
		}
		all = append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	}
	if _, err := c.scaleRS(ctx, newRS, replicas(d), d); err != nil {
		return err
	}
	st := c.calculateStatus(d, all, newRS)
	if complete(d, &st) {
		if err := c.cleanup(ctx, d, old); err != nil {
			return err
		}
	}
	return c.syncRolloutStatus(ctx, d, all, newRS)
}

// oldPodsRunning reports whether any pod of an old ReplicaSet still
// exists and has not finished, terminating ones included: Recreate
// promises the versions never overlap.
func (c *Controller) oldPodsRunning(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) bool {
	if sumStatus(old, func(s *appsv1.ReplicaSetStatus) int32 { return s.Replicas }) > 0 {
		return true
	}
	uids := map[string]bool{}
	ns := ""
	for _, rs := range old {
		uids[string(rs.UID)] = true
		ns = rs.Namespace
	}
	if len(uids) == 0 {
		return false
	}
	pods, err := c.pods.Pods(ns).List(labels.Everything())
	if err != nil {
		return true
	}
	for _, p := range pods {
		ref := metav1.GetControllerOfNoCopy(p)
		if ref == nil || !uids[string(ref.UID)] || (newRS != nil && ref.UID == newRS.UID) {
			continue
		}
		if p.Status.Phase != corev1.PodFailed && p.Status.Phase != corev1.PodSucceeded {
			return true
		}
	}
	return false
}

// calculateStatus sums the ReplicaSets' counts into d's status and sets
// the Available condition.
func (c *Controller) calculateStatus(d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) appsv1.DeploymentStatus {
	available := sumStatus(all, func(s *appsv1.ReplicaSetStatus) int32 { return s.AvailableReplicas })
	st := appsv1.DeploymentStatus{
		ObservedGeneration:  d.Generation,
		Replicas:            sumStatus(all, func(s *appsv1.ReplicaSetStatus) int32 { return s.Replicas }),
		UpdatedReplicas:     sumStatus([]*appsv1.ReplicaSet{newRS}, func(s *appsv1.ReplicaSetStatus) int32 { return s.Replicas }),
		ReadyReplicas:       sumStatus(all, func(s *appsv1.ReplicaSetStatus) int32 { return s.ReadyReplicas }),
		AvailableReplicas:   available,
		UnavailableReplicas: max(sumSpec(all)-available, 0),
		CollisionCount:      d.Status.CollisionCount,
	}
	st.Conditions = append(st.Conditions, d.Status.Conditions...)
	if available >= replicas(d)-maxUnavailable(d) {
		setCondition(&st, newCondition(appsv1.DeploymentAvailable, corev1.ConditionTrue, reasonMinAvailable, "Deployment has minimum availability.", c.now()))
	} else {
		setCondition(&st, newCondition(appsv1.DeploymentAvailable, corev1.ConditionFalse, reasonMinUnavailable, "Deployment does not have minimum availability.", c.now()))
	}
	return st
}

// complete reports a finished rollout: every replica updated and
// available, and nothing else left running.
func complete(d *appsv1.Deployment, st *appsv1.DeploymentStatus) bool {
	n := replicas(d)
	return st.UpdatedReplicas == n && st.Replicas == n && st.AvailableReplicas == n && st.ObservedGeneration >= d.Generation
}

// progressing reports progress since the last recorded status: more
// updated, ready or available pods, or fewer old ones.
func progressing(d *appsv1.Deployment, st *appsv1.DeploymentStatus) bool {
	was := d.Status
	return st.UpdatedReplicas > was.UpdatedReplicas ||
		st.Replicas-st.UpdatedReplicas < was.Replicas-was.UpdatedReplicas ||
		st.ReadyReplicas > was.ReadyReplicas ||
		st.AvailableReplicas > was.AvailableReplicas
}

// timedOut reports a rollout without progress for progressDeadlineSeconds
// since the Progressing condition last changed.
func timedOut(d *appsv1.Deployment, st *appsv1.DeploymentStatus, now time.Time) bool {
	if !hasProgressDeadline(d) {
		return false
	}
	cond := condition(st, appsv1.DeploymentProgressing)
	if cond == nil || cond.Reason == reasonNewRSAvailable {
		return false
	}
	if cond.Reason == reasonTimedOut {
		return true
	}
	deadline := cond.LastUpdateTime.Add(time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second)
	return deadline.Before(now)
}

// syncRolloutStatus writes status with the Progressing condition brought
// up to date, and schedules a look at the deadline when none is due
// otherwise.
func (c *Controller) syncRolloutStatus(ctx context.Context, d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) error {
	st := c.calculateStatus(d, all, newRS)
	if !hasProgressDeadline(d) {
		removeCondition(&st, appsv1.DeploymentProgressing)
	}
	now := c.now()
	cur := condition(&st, appsv1.DeploymentProgressing)
	done := st.Replicas == st.UpdatedReplicas && cur != nil && cur.Reason == reasonNewRSAvailable
	if hasProgressDeadline(d) && !done {
		subject := "Deployment"
		if newRS != nil {
			subject = fmt.Sprintf("ReplicaSet %q", newRS.Name)
		}
		switch {
		case complete(d, &st):
			setCondition(&st, newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonNewRSAvailable, subject+" has successfully progressed.", now))
		case progressing(d, &st):
			cond := newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonRSUpdated, subject+" is progressing.", now)
			// Progress refreshes the update time, which is what the
			// deadline counts from, even when the reason stays the same.
			if cur != nil && cur.Status == corev1.ConditionTrue {
				cond.LastTransitionTime = cur.LastTransitionTime
			}
			removeCondition(&st, appsv1.DeploymentProgressing)
			st.Conditions = append(st.Conditions, cond)
		case timedOut(d, &st, now):
			setCondition(&st, newCondition(appsv1.DeploymentProgressing, corev1.ConditionFalse, reasonTimedOut, subject+" has timed out progressing.", now))
		}
	}
	if failure := rsFailure(all); failure != nil {
		setCondition(&st, newCondition(appsv1.DeploymentReplicaFailure, failure.Status, failure.Reason, failure.Message, now))
	} else {
		removeCondition(&st, appsv1.DeploymentReplicaFailure)
	}
	if err := c.writeStatus(ctx, d, st); err != nil {
		return err
	}
	c.requeueForDeadline(d, &st)
	return nil
}

// rsFailure returns the first ReplicaFailure condition among the
// ReplicaSets: a quota or admission error the user must see on the
// Deployment.
func rsFailure(all []*appsv1.ReplicaSet) *appsv1.ReplicaSetCondition {
	for _, rs := range all {
		if rs == nil {
			continue
		}
		for i := range rs.Status.Conditions {
			if rs.Status.Conditions[i].Type == appsv1.ReplicaSetReplicaFailure {
				return &rs.Status.Conditions[i]
			}
		}
	}
	return nil
}

// requeueForDeadline looks at d again when its progress deadline would
// pass: no event marks the moment nothing happened.
func (c *Controller) requeueForDeadline(d *appsv1.Deployment, st *appsv1.DeploymentStatus) {
	cond := condition(st, appsv1.DeploymentProgressing)
	if !hasProgressDeadline(d) || cond == nil || cond.Reason == reasonTimedOut || complete(d, st) {
		return
	}
	key := d.Namespace + "/" + d.Name
	after := cond.LastUpdateTime.Add(time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second).Sub(c.now())
	if after < time.Second {
		c.queue.AddAfter(key, time.Second)
		return
	}
	c.queue.AddAfter(key, after+time.Second/2)
}
