package replicaset

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// calculateStatus derives rs's status from the pods it owns and the
// outcome of this sync's create or delete calls.
func calculateStatus(rs *appsv1.ReplicaSet, pods []*corev1.Pod, manageErr error, now time.Time) appsv1.ReplicaSetStatus {
	st := rs.Status.DeepCopy()
	st.Replicas = int32(len(pods))
	st.FullyLabeledReplicas, st.ReadyReplicas, st.AvailableReplicas = 0, 0, 0
	tmpl := labels.SelectorFromSet(rs.Spec.Template.Labels)
	for _, p := range pods {
		if tmpl.Matches(labels.Set(p.Labels)) {
			st.FullyLabeledReplicas++
		}
		if podReady(p) {
			st.ReadyReplicas++
			if podAvailable(p, rs.Spec.MinReadySeconds, now) {
				st.AvailableReplicas++
			}
		}
	}
	st.ObservedGeneration = rs.Generation
	failure := replicaFailure(st)
	switch {
	case manageErr != nil && failure == nil:
		reason, verb := "FailedCreate", "create"
		if len(pods) > int(replicas(rs)) {
			reason, verb = "FailedDelete", "delete"
		}
		st.Conditions = append(st.Conditions, appsv1.ReplicaSetCondition{
			Type:               appsv1.ReplicaSetReplicaFailure,
			Status:             corev1.ConditionTrue,
			Reason:             reason,
			Message:            fmt.Sprintf("failed to %s pods: %v", verb, manageErr),
			LastTransitionTime: metav1.NewTime(now),
		})
	case manageErr == nil && failure != nil:
		var keep []appsv1.ReplicaSetCondition
		for _, c := range st.Conditions {
			if c.Type != appsv1.ReplicaSetReplicaFailure {
				keep = append(keep, c)
			}
		}
		st.Conditions = keep
	}
	return *st
}

func replicaFailure(st *appsv1.ReplicaSetStatus) *appsv1.ReplicaSetCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == appsv1.ReplicaSetReplicaFailure {
			return &st.Conditions[i]
		}
	}
	return nil
}

// updateStatus writes status if it changed. A conflict means the spec
// moved on: the update event requeues the ReplicaSet, so one fresh retry
// is enough, as upstream does.
func (c *Controller) updateStatus(ctx context.Context, rs *appsv1.ReplicaSet, st appsv1.ReplicaSetStatus) (*appsv1.ReplicaSet, error) {
	if apiequality.Semantic.DeepEqual(rs.Status, st) {
		return rs, nil
	}
	rsc := c.client.AppsV1().ReplicaSets(rs.Namespace)
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		rs.Status = st
		var out *appsv1.ReplicaSet
		out, err = rsc.UpdateStatus(ctx, rs, metav1.UpdateOptions{})
		if err == nil {
			return out, nil
		}
		fresh, gerr := rsc.Get(ctx, rs.Name, metav1.GetOptions{})
		if gerr != nil {
			break
		}
		// Status derived from the old generation must not claim the new.
		st.ObservedGeneration = min(st.ObservedGeneration, fresh.Generation)
		rs = fresh
	}
	return nil, fmt.Errorf("update status of %s: %w", rs.Name, err)
}

// podReady reports the pod's Ready condition.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// readySince is when the pod last became ready.
func readySince(p *corev1.Pod) metav1.Time {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.LastTransitionTime
		}
	}
	return metav1.Time{}
}

// podAvailable reports a ready pod that has stayed ready minReadySeconds.
func podAvailable(p *corev1.Pod, minReadySeconds int32, now time.Time) bool {
	if !podReady(p) {
		return false
	}
	if minReadySeconds == 0 {
		return true
	}
	since := readySince(p)
	return !since.IsZero() && !since.Add(time.Duration(minReadySeconds)*time.Second).After(now)
}
