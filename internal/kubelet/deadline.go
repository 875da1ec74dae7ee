package kubelet

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Reason and message of a pod stopped by its activeDeadlineSeconds; the
// reason is the one upstream reports, which tools match.
const (
	reasonDeadlineExceeded  = "DeadlineExceeded"
	messageDeadlineExceeded = "Pod ran on the node longer than its activeDeadlineSeconds allow"
)

// activeDeadline returns how long the pod may still run under its
// activeDeadlineSeconds, counted from its start time; ok is false when it
// has no deadline.
func (k *Kubelet) activeDeadline(pod *corev1.Pod) (remaining time.Duration, ok bool) {
	if pod.Spec.ActiveDeadlineSeconds == nil {
		return 0, false
	}
	start := pod.Status.StartTime
	k.statusMu.Lock()
	if last := k.lastStatus[pod.UID]; last != nil && last.StartTime != nil {
		start = last.StartTime
	}
	k.statusMu.Unlock()
	limit := time.Duration(*pod.Spec.ActiveDeadlineSeconds) * time.Second
	if start == nil {
		return limit, true // starts now
	}
	return start.Add(limit).Sub(k.clock.Now()), true
}

// failDeadline ends a pod that outran its deadline, as upstream does: its
// containers are killed and it fails for good with reason
// DeadlineExceeded, whatever its restart policy.
func (k *Kubelet) failDeadline(ctx context.Context, pod *corev1.Pod, state *podState) syncResult {
	if running := state.running(); len(running) > 0 {
		k.event(pod, "", corev1.EventTypeNormal, reasonDeadlineExceeded, "%s", messageDeadlineExceeded)
		k.killAll(ctx, pod, running, gracePeriod(pod), "active deadline exceeded")
	}
	st, err := k.podState(ctx, pod.UID)
	if err != nil {
		return syncResult{requeueAfter: time.Second}
	}
	status := k.buildStatus(pod, st, nil, true)
	status.Phase = corev1.PodFailed
	status.Reason, status.Message = reasonDeadlineExceeded, messageDeadlineExceeded
	status.Conditions = k.podConditions(pod, pod.Status.Conditions, status, false, status.Conditions)
	if err := k.postStatus(ctx, pod, status); err != nil {
		if ctx.Err() == nil {
			k.log.Warn("post pod status", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		}
		return syncResult{requeueAfter: time.Second}
	}
	k.stopSandboxes(ctx, st)
	k.probes.RemovePod(pod.UID)
	return syncResult{}
}
