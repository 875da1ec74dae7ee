package kubelet

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffhq/skiff/internal/kubelet/prober"
)

// podStatus computes the pod's status from what runs, as upstream reports
// it: phase, conditions, container statuses, IPs, start time, QoS class.
func (k *Kubelet) podStatus(pod *corev1.Pod, state *podState, waiting map[string]*corev1.ContainerStateWaiting) *corev1.PodStatus {
	old := pod.Status
	st := &corev1.PodStatus{
		HostIP:            k.cfg.NodeIP.String(),
		HostIPs:           []corev1.HostIP{{IP: k.cfg.NodeIP.String()}},
		StartTime:         old.StartTime,
		QOSClass:          qosClass(pod),
		NominatedNodeName: old.NominatedNodeName,
	}
	if st.StartTime == nil {
		k.statusMu.Lock()
		if last := k.lastStatus[pod.UID]; last != nil {
			st.StartTime = last.StartTime // sent already; the informer lags
		}
		k.statusMu.Unlock()
	}
	if st.StartTime == nil {
		st.StartTime = ptrTime(k.clock.Now())
	}
	sandboxID := ""
	if sb := state.readySandbox(); sb != nil {
		sandboxID = sb.Id
		if state.ip != "" {
			st.PodIP = state.ip
			st.PodIPs = []corev1.PodIP{{IP: state.ip}}
		}
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		st.InitContainerStatuses = append(st.InitContainerStatuses, k.containerStatusFor(pod, c, state, waiting[c.Name], true))
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		st.ContainerStatuses = append(st.ContainerStatuses, k.containerStatusFor(pod, c, state, waiting[c.Name], false))
	}
	st.Phase = podPhase(pod, st)
	st.Conditions = k.podConditions(pod, st, sandboxID != "" && state.ip != "")
	return st
}

// containerStatusFor reports one container.
func (k *Kubelet) containerStatusFor(pod *corev1.Pod, c *corev1.Container, state *podState, waiting *corev1.ContainerStateWaiting, init bool) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, Started: ptrBool(false)}
	inst := state.instances(c.Name, "")
	if len(inst) > 0 {
		cur := inst[0]
		cs.RestartCount = int32(cur.Metadata.GetAttempt())
		cs.ContainerID = k.cfg.RuntimeName + "://" + cur.Id
		cs.ImageID = cur.ImageRef
		switch cur.State {
		case runtimeapi.ContainerState_CONTAINER_RUNNING:
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(time.Unix(0, cur.StartedAt))}
			cs.Started = ptrBool(k.probes.Started(pod.UID, c.Name))
			cs.Ready = !init && k.probes.Ready(pod.UID, c.Name)
		case runtimeapi.ContainerState_CONTAINER_EXITED:
			cs.State.Terminated = k.terminated(c, cur)
		default:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		}
		if len(inst) > 1 && inst[1].State == runtimeapi.ContainerState_CONTAINER_EXITED {
			cs.LastTerminationState.Terminated = k.terminated(c, inst[1])
		}
		// An exited container about to be restarted shows as waiting,
		// its exit moving to lastState, as upstream reports it.
		if cs.State.Terminated != nil && waiting != nil {
			cs.LastTerminationState.Terminated = cs.State.Terminated
			cs.State = corev1.ContainerState{Waiting: waiting}
		}
	} else {
		if waiting == nil {
			waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
			if !init && len(pod.Spec.InitContainers) > 0 {
				waiting.Reason = "PodInitializing"
			}
		}
		cs.State.Waiting = waiting
	}
	if init {
		cs.Started = ptrBool(cs.State.Running != nil)
	}
	return cs
}

// terminated is a finished container's state, with its termination
// message read from the file it was given.
func (k *Kubelet) terminated(c *corev1.Container, s *runtimeapi.ContainerStatus) *corev1.ContainerStateTerminated {
	t := &corev1.ContainerStateTerminated{
		ExitCode:    s.ExitCode,
		Reason:      s.Reason,
		Message:     s.Message,
		StartedAt:   metav1.NewTime(time.Unix(0, s.StartedAt)),
		FinishedAt:  metav1.NewTime(time.Unix(0, s.FinishedAt)),
		ContainerID: k.cfg.RuntimeName + "://" + s.Id,
	}
	if t.Reason == "" {
		t.Reason = "Completed"
		if s.ExitCode != 0 {
			t.Reason = "Error"
		}
	}
	if f := s.Annotations[annotationTermFile]; f != "" {
		if data, err := os.ReadFile(f); err == nil && len(data) > 0 {
			t.Message = string(data[:min(len(data), 4096)])
		}
	}
	if t.Message == "" && s.ExitCode != 0 && c.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError {
		t.Message = tailLog(s.LogPath, 80, 2048)
	}
	return t
}

// podPhase applies upstream's phase rules to the container statuses.
func podPhase(pod *corev1.Pod, st *corev1.PodStatus) corev1.PodPhase {
	for _, cs := range st.InitContainerStatuses {
		if t := cs.State.Terminated; t != nil && t.ExitCode == 0 {
			continue
		}
		if t := cs.State.Terminated; t != nil && pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			return corev1.PodFailed
		}
		return corev1.PodPending
	}
	var waiting, running, stopped, succeeded int
	for _, cs := range st.ContainerStatuses {
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.State.Waiting != nil && cs.LastTerminationState.Terminated != nil:
			stopped++
		default:
			waiting++
		}
	}
	switch {
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case stopped > 0:
		switch {
		case pod.Spec.RestartPolicy == corev1.RestartPolicyAlways:
			return corev1.PodRunning
		case stopped == succeeded:
			return corev1.PodSucceeded
		case pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure:
			return corev1.PodRunning
		}
		return corev1.PodFailed
	}
	return corev1.PodPending
}

// podConditions computes the kubelet's conditions and keeps the others
// (PodScheduled, readiness gates, disruption) as they were.
func (k *Kubelet) podConditions(pod *corev1.Pod, st *corev1.PodStatus, sandboxReady bool) []corev1.PodCondition {
	terminal := st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed
	initialized := true
	var pendingInit []string
	for _, cs := range st.InitContainerStatuses {
		if t := cs.State.Terminated; t == nil || t.ExitCode != 0 {
			initialized = false
			pendingInit = append(pendingInit, cs.Name)
		}
	}
	var unready []string
	for _, cs := range st.ContainerStatuses {
		if !cs.Ready {
			unready = append(unready, cs.Name)
		}
	}
	cond := func(t corev1.PodConditionType, ok bool, reason, msg string) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionTrue}
		if !ok {
			c.Status, c.Reason, c.Message = corev1.ConditionFalse, reason, msg
		}
		return c
	}
	readyReason, readyMsg := "ContainersNotReady", fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	if terminal {
		readyReason, readyMsg = "PodCompleted", ""
	}
	containersReady := len(unready) == 0 && !terminal
	ready := containersReady
	for _, g := range pod.Spec.ReadinessGates {
		if c := findCondition(pod.Status.Conditions, g.ConditionType); c == nil || c.Status != corev1.ConditionTrue {
			ready = false
			if containersReady {
				readyReason, readyMsg = "ReadinessGatesNotReady", fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist or is not True", g.ConditionType)
			}
		}
	}
	initReason, initMsg := "ContainersNotInitialized", fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(pendingInit, " "))
	ours := []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, sandboxReady && !terminal, "", ""),
		cond(corev1.PodInitialized, initialized || terminal && len(pendingInit) == 0, initReason, initMsg),
		cond(corev1.PodReady, ready, readyReason, readyMsg),
		cond(corev1.ContainersReady, containersReady, readyReason, readyMsg),
	}
	var out []corev1.PodCondition
	for _, c := range pod.Status.Conditions {
		if !slices.ContainsFunc(ours, func(o corev1.PodCondition) bool { return o.Type == c.Type }) {
			out = append(out, c)
		}
	}
	now := metav1.NewTime(k.clock.Now())
	for _, c := range ours {
		c.LastTransitionTime = now
		if old := findCondition(pod.Status.Conditions, c.Type); old != nil && old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
		}
		out = append(out, c)
	}
	return out
}

func findCondition(conds []corev1.PodCondition, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// postStatus writes the pod's status unless it is what was last written.
func (k *Kubelet) postStatus(ctx context.Context, pod *corev1.Pod, status *corev1.PodStatus) error {
	if apiequality.Semantic.DeepEqual(&pod.Status, status) {
		return nil
	}
	k.statusMu.Lock()
	last := k.lastStatus[pod.UID]
	k.statusMu.Unlock()
	if last != nil && apiequality.Semantic.DeepEqual(last, status) {
		return nil // already sent; the informer has not caught up
	}
	pods := k.cfg.Client.CoreV1().Pods(pod.Namespace)
	updated := pod.DeepCopy()
	updated.Status = *status
	_, err := pods.UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		// Our copy is stale: redo on the newest, keeping others' conditions.
		cur, gerr := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if gerr != nil {
			return fmt.Errorf("update status of %s/%s: %w", pod.Namespace, pod.Name, gerr)
		}
		if cur.UID != pod.UID {
			return nil
		}
		st := status.DeepCopy()
		for _, c := range cur.Status.Conditions {
			if findCondition(st.Conditions, c.Type) == nil {
				st.Conditions = append(st.Conditions, c)
			}
		}
		cur.Status = *st
		_, err = pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	}
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("update status of %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	k.statusMu.Lock()
	k.lastStatus[pod.UID] = status
	k.statusMu.Unlock()
	return nil
}

// probeStates tells the prober which containers run, and since when.
func probeStates(state *podState) map[string]prober.ContainerState {
	out := map[string]prober.ContainerState{}
	sb := state.readySandbox()
	for _, c := range state.containers {
		name := c.Metadata.GetName()
		if _, ok := out[name]; ok || sb == nil || c.Labels[labelSandboxID] != sb.Id {
			continue
		}
		out[name] = prober.ContainerState{
			ID:        c.Id,
			Running:   c.State == runtimeapi.ContainerState_CONTAINER_RUNNING,
			StartedAt: time.Unix(0, c.StartedAt),
		}
	}
	return out
}

func ptrBool(b bool) *bool { return &b }

func ptrTime(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t)
	return &mt
}

// tailLog returns up to the last n lines (at most max bytes) a container
// wrote, taken from its CRI log file.
func tailLog(path string, n, max int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	for _, l := range lines {
		// "<time> <stream> <tag> <text>"
		parts := strings.SplitN(l, " ", 4)
		if len(parts) == 4 {
			b.WriteString(parts[3])
			if parts[2] == "F" {
				b.WriteByte('\n')
			}
		}
	}
	s := b.String()
	if len(s) > max {
		s = s[len(s)-max:]
	}
	return s
}
