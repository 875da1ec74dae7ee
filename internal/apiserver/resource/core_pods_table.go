package resource

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
)

// podColumns are upstream's `kubectl get pods` columns; priority 1 shows
// only with -o wide.
var podColumns = []metav1.TableColumnDefinition{
	NameColumn,
	{Name: "Ready", Type: "string", Description: "The aggregate readiness state of this pod for accepting traffic."},
	{Name: "Status", Type: "string", Description: "The aggregate status of the containers in this pod."},
	{Name: "Restarts", Type: "string", Description: "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."},
	AgeColumn,
	{Name: "IP", Type: "string", Priority: 1, Description: "IP address assigned to the pod"},
	{Name: "Node", Type: "string", Priority: 1, Description: "Name of the node the pod is assigned to"},
	{Name: "Nominated Node", Type: "string", Priority: 1, Description: "Name of the node the pod is nominated to run on"},
	{Name: "Readiness Gates", Type: "string", Priority: 1, Description: "The readiness gates that have been evaluated for this pod"},
}

func podRow(pod *corev1.Pod) []any {
	s := summarizePod(pod, time.Now())
	gates := "<none>"
	if n := len(pod.Spec.ReadinessGates); n > 0 {
		met := 0
		for _, g := range pod.Spec.ReadinessGates {
			for _, c := range pod.Status.Conditions {
				if c.Type == g.ConditionType && c.Status == corev1.ConditionTrue {
					met++
					break
				}
			}
		}
		gates = fmt.Sprintf("%d/%d", met, n)
	}
	return []any{
		pod.Name, s.ready, s.status, s.restarts, Age(pod.CreationTimestamp),
		coreNoneOr(pod.Status.PodIP), coreNoneOr(pod.Spec.NodeName), coreNoneOr(pod.Status.NominatedNodeName), gates,
	}
}

// podSummary holds the READY, STATUS and RESTARTS cells.
type podSummary struct{ ready, status, restarts string }

// summarizePod computes the cells as kubectl shows them: STATUS is the
// most telling reason found (a failing init container, then the app
// containers from last to first, as upstream scans them), and a pod being
// deleted shows Terminating whatever its containers say.
func summarizePod(pod *corev1.Pod, now time.Time) podSummary {
	reason := string(pod.Status.Phase)
	if pod.Status.Reason != "" {
		reason = pod.Status.Reason
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonSchedulingGated {
			reason = corev1.PodReasonSchedulingGated
		}
	}

	sidecars := map[string]bool{}
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars[c.Name] = true
		}
	}
	total := len(pod.Spec.Containers) + len(sidecars)
	ready, restarts := 0, 0
	var lastRestart time.Time
	noteRestart := func(cs corev1.ContainerStatus) {
		restarts += int(cs.RestartCount)
		if t := cs.LastTerminationState.Terminated; t != nil && t.FinishedAt.After(lastRestart) {
			lastRestart = t.FinishedAt.Time
		}
	}

	initializing := false
	for i, cs := range pod.Status.InitContainerStatuses {
		noteRestart(cs)
		if sidecars[cs.Name] && cs.Started != nil && *cs.Started {
			if cs.Ready {
				ready++
			}
			continue
		}
		switch t, w := cs.State.Terminated, cs.State.Waiting; {
		case t != nil && t.ExitCode == 0:
			continue
		case t != nil && t.Reason != "":
			reason = "Init:" + t.Reason
		case t != nil && t.Signal != 0:
			reason = fmt.Sprintf("Init:Signal:%d", t.Signal)
		case t != nil:
			reason = fmt.Sprintf("Init:ExitCode:%d", t.ExitCode)
		case w != nil && w.Reason != "" && w.Reason != "PodInitializing":
			reason = "Init:" + w.Reason
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(pod.Spec.InitContainers))
		}
		initializing = true
		break
	}

	if !initializing {
		hasRunning := false
		for i := len(pod.Status.ContainerStatuses) - 1; i >= 0; i-- {
			cs := pod.Status.ContainerStatuses[i]
			noteRestart(cs)
			switch t, w := cs.State.Terminated, cs.State.Waiting; {
			case w != nil && w.Reason != "":
				reason = w.Reason
			case t != nil && t.Reason != "":
				reason = t.Reason
			case t != nil && t.Signal != 0:
				reason = fmt.Sprintf("Signal:%d", t.Signal)
			case t != nil:
				reason = fmt.Sprintf("ExitCode:%d", t.ExitCode)
			case cs.Ready && cs.State.Running != nil:
				hasRunning = true
				ready++
			}
		}
		// Some containers finished, others still run: say whether the pod
		// as a whole still serves rather than the misleading "Completed".
		if reason == "Completed" && hasRunning {
			reason = "NotReady"
			for _, c := range pod.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					reason = string(corev1.PodRunning)
				}
			}
		}
	}

	if pod.DeletionTimestamp != nil {
		if pod.Status.Reason == "NodeLost" {
			reason = string(corev1.PodUnknown)
		} else {
			reason = "Terminating"
		}
	}

	r := fmt.Sprint(restarts)
	if restarts > 0 && !lastRestart.IsZero() {
		r = fmt.Sprintf("%d (%s ago)", restarts, duration.HumanDuration(now.Sub(lastRestart)))
	}
	return podSummary{ready: fmt.Sprintf("%d/%d", ready, total), status: reason, restarts: r}
}
