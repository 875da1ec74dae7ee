package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
	"github.com/skiffhq/skiff/internal/scheduler/queue"
)

// bindAPI binds through pods/binding. The UID guards against binding a
// pod recreated under the same name meanwhile.
func (s *sched) bindAPI(ctx context.Context, pod *corev1.Pod, node string) error {
	b := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}
	return s.client.CoreV1().Pods(pod.Namespace).Bind(ctx, b, metav1.CreateOptions{})
}

// bindAndReport binds an assumed pod. On failure the assumption is undone
// (its room freed for others) and the pod retried after back-off.
func (s *sched) bindAndReport(ctx context.Context, qpi *queue.QueuedPodInfo, assumed *corev1.Pod, cycle int64) {
	err := s.bind(ctx, assumed, assumed.Spec.NodeName)
	if err != nil {
		s.cache.ForgetPod(assumed)
		s.queue.MoveAllToActiveOrBackoff(framework.ClusterEvent{Resource: framework.AssignedPod, ActionType: framework.Delete, Label: "AssumedPodForgotten"})
		if ctx.Err() != nil {
			s.queue.Done(assumed.UID)
			return
		}
		s.handleFailure(ctx, qpi, fmt.Errorf("binding rejected: %w", err), "", cycle)
		return
	}
	s.queue.Done(assumed.UID)
	if s.client == nil {
		return
	}
	s.recorder.Eventf(qpi.Pod, corev1.EventTypeNormal, "Scheduled", "Successfully assigned %s/%s to %s", assumed.Namespace, assumed.Name, assumed.Spec.NodeName)
	s.clearFailure(ctx, qpi.Pod)
}

// clearFailure undoes what a failed attempt left on a pod that is now
// bound: a PodScheduled=False condition and the diagnosis annotation.
// Pods that never failed cost no extra write.
func (s *sched) clearFailure(ctx context.Context, pod *corev1.Pod) {
	if cond := podScheduledCondition(pod); cond != nil && cond.Status != corev1.ConditionTrue {
		patch := map[string]any{"status": map[string]any{"conditions": []any{map[string]any{
			"type": corev1.PodScheduled, "status": corev1.ConditionTrue, "reason": nil, "message": nil,
			"lastTransitionTime": metav1.NewTime(s.cfg.Now()),
		}}}}
		if err := s.patch(ctx, pod, types.StrategicMergePatchType, patch, "status"); err != nil {
			s.log.Warn("set PodScheduled", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		}
	}
	if _, ok := pod.Annotations[DiagnosisAnnotation]; ok {
		patch := map[string]any{"metadata": map[string]any{"annotations": map[string]any{DiagnosisAnnotation: nil}}}
		if err := s.patch(ctx, pod, types.MergePatchType, patch); err != nil {
			s.log.Warn("clear diagnosis", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		}
	}
}

func (s *sched) patch(ctx context.Context, pod *corev1.Pod, pt types.PatchType, body any, sub ...string) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	_, err = s.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, pt, data, metav1.PatchOptions{}, sub...)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func podScheduledCondition(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == corev1.PodScheduled {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// handleFailure requeues a pod after a failed attempt and tells the user:
// a FailedScheduling event, the PodScheduled=False condition (with
// nominatedNodeName when preemption made room) and the diagnosis
// annotation.
func (s *sched) handleFailure(ctx context.Context, qpi *queue.QueuedPodInfo, err error, nominated string, cycle int64) {
	pod := qpi.Pod
	reason := corev1.PodReasonUnschedulable
	var fitErr *framework.FitError
	if errors.As(err, &fitErr) {
		qpi.UnschedulablePlugins = fitErr.Diagnosis.UnschedulablePlugins
		qpi.Failed = false
	} else {
		reason = corev1.PodReasonSchedulerError
		qpi.Failed = true
		qpi.UnschedulablePlugins = nil
	}
	msg := err.Error()
	// Requeue the freshest copy; a pod deleted or bound meanwhile is done.
	if s.podLister != nil {
		latest, lerr := s.podLister.Pods(pod.Namespace).Get(pod.Name)
		if lerr != nil || latest.UID != pod.UID || latest.Spec.NodeName != "" {
			s.queue.Done(pod.UID)
			return
		}
		pod = latest
		qpi.PodInfo = framework.NewPodInfo(latest)
	}
	if nominated != "" {
		s.queue.Nominator().Add(qpi.PodInfo, nominated)
	}
	s.queue.AddUnschedulable(qpi, cycle)
	s.log.Debug("pod does not fit", "pod", pod.Namespace+"/"+pod.Name, "reason", msg)
	if s.client == nil {
		return
	}
	s.recorder.Event(pod, corev1.EventTypeWarning, "FailedScheduling", msg)
	var diagnosis string
	if fitErr != nil {
		diagnosis = renderDiagnosis(fitErr)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.reportFailure(ctx, pod, reason, msg, nominated, diagnosis)
	}()
}

// reportFailure writes the condition and annotation, each only when it
// changed, so a pod retried on every event does not churn.
func (s *sched) reportFailure(ctx context.Context, pod *corev1.Pod, reason, msg, nominated, diagnosis string) {
	cond := podScheduledCondition(pod)
	nom := pod.Status.NominatedNodeName
	if nominated != "" {
		nom = nominated
	}
	if cond == nil || cond.Status != corev1.ConditionFalse || cond.Reason != reason || cond.Message != msg || nom != pod.Status.NominatedNodeName {
		status := map[string]any{"conditions": []any{map[string]any{
			"type": corev1.PodScheduled, "status": corev1.ConditionFalse, "reason": reason, "message": msg,
			"lastProbeTime": nil, "lastTransitionTime": metav1.NewTime(s.cfg.Now()),
		}}}
		if nom != pod.Status.NominatedNodeName {
			status["nominatedNodeName"] = nom
		}
		if err := s.patch(ctx, pod, types.StrategicMergePatchType, map[string]any{"status": status}, "status"); err != nil && ctx.Err() == nil {
			s.log.Warn("set PodScheduled=False", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		}
	}
	if diagnosis != "" && pod.Annotations[DiagnosisAnnotation] != diagnosis {
		patch := map[string]any{"metadata": map[string]any{"annotations": map[string]any{DiagnosisAnnotation: diagnosis}}}
		if err := s.patch(ctx, pod, types.MergePatchType, patch); err != nil && ctx.Err() == nil {
			s.log.Warn("write diagnosis", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		}
	}
}

// maxDiagnosisNodes bounds the annotation; past it, nodes are summarised
// by reason only (the event already has the counts).
const maxDiagnosisNodes = 200

// Diagnosis is the JSON in DiagnosisAnnotation: node → "Plugin: reason".
type Diagnosis struct {
	// Nodes maps a node to the plugin that rejected the pod there and why.
	Nodes map[string]string `json:"nodes"`
	// Omitted counts nodes left out past the size bound.
	Omitted int `json:"omitted,omitempty"`
	// Preemption is why preemption did not help, when it ran.
	Preemption string `json:"preemption,omitempty"`
}

// renderDiagnosis builds the annotation's JSON. Keys are sorted by
// encoding/json, so an unchanged outcome renders identically and is not
// rewritten.
func renderDiagnosis(fe *framework.FitError) string {
	d := Diagnosis{Nodes: map[string]string{}, Preemption: fe.Diagnosis.PostFilterMsg}
	names := make([]string, 0, len(fe.Diagnosis.NodeToStatus))
	for n := range fe.Diagnosis.NodeToStatus {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		if i >= maxDiagnosisNodes {
			d.Omitted = len(names) - maxDiagnosisNodes
			break
		}
		st := fe.Diagnosis.NodeToStatus[n]
		d.Nodes[n] = st.Plugin() + ": " + st.Message()
	}
	data, _ := json.Marshal(d)
	return string(data)
}
