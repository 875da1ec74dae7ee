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
	return k.buildStatus(pod, state, waiting, false)
}

// finalStatus is the status of a pod being deleted once its containers
// stopped: terminal, Succeeded only if every app container succeeded.
func (k *Kubelet) finalStatus(pod *corev1.Pod, state *podState) *corev1.PodStatus {
	return k.buildStatus(pod, state, nil, true)
}

func (k *Kubelet) buildStatus(pod *corev1.Pod, state *podState, waiting map[string]*corev1.ContainerStateWaiting, terminating bool) *corev1.PodStatus {
	// old is the newest status this kubelet knows: the one it last
	// posted, which the informer's copy may not show yet, else the API's.
	old := &pod.Status
	k.statusMu.Lock()
	if last := k.lastStatus[pod.UID]; last != nil {
		old = last
	}
	k.statusMu.Unlock()
	st := &corev1.PodStatus{
		HostIP:                k.cfg.NodeIP.String(),
		HostIPs:               []corev1.HostIP{{IP: k.cfg.NodeIP.String()}},
		StartTime:             old.StartTime,
		QOSClass:              qosClass(pod),
		NominatedNodeName:     pod.Status.NominatedNodeName,
		ResourceClaimStatuses: pod.Status.ResourceClaimStatuses,
	}
	if st.StartTime == nil {
		st.StartTime = pod.Status.StartTime
	}
	if st.StartTime == nil {
		st.StartTime = ptrTime(k.clock.Now())
	}
	sandboxReady := false
	if sb := state.readySandbox(); sb != nil && state.ip != "" {
		sandboxReady = true
		st.PodIP = state.ip
		st.PodIPs = []corev1.PodIP{{IP: state.ip}}
	}
	if pod.Spec.HostNetwork {
		// The node's IP is a host-network pod's whether or not its
		// sandbox runs.
		st.PodIP = k.cfg.NodeIP.String()
		st.PodIPs = []corev1.PodIP{{IP: st.PodIP}}
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		st.InitContainerStatuses = append(st.InitContainerStatuses, k.containerStatusFor(pod, c, state, waiting[c.Name], true))
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		st.ContainerStatuses = append(st.ContainerStatuses, k.containerStatusFor(pod, c, state, waiting[c.Name], false))
	}
	st.Phase = podPhase(pod, st, terminating)
	// A pod never leaves a terminal phase, whatever its containers say
	// now (a second look after they were removed, say).
	switch {
	case isTerminalPhase(st.Phase):
	case isTerminalPhase(old.Phase):
		st.Phase = old.Phase
	case isTerminalPhase(pod.Status.Phase):
		st.Phase = pod.Status.Phase
	case terminating:
		st.Phase = corev1.PodFailed // stopped before it could finish
	}
	if st.Phase == old.Phase {
		st.Reason, st.Message = old.Reason, old.Message
	}
	st.Conditions = k.podConditions(pod, pod.Status.Conditions, st, sandboxReady, old.Conditions)
	return st
}

// containerStatusFor reports one container.
func (k *Kubelet) containerStatusFor(pod *corev1.Pod, c *corev1.Container, state *podState, waiting *corev1.ContainerStateWaiting, init bool) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, Started: ptrBool(false)}
	probed := !init || isSidecar(c) // readiness and startup come from the prober
	inst := state.instances(c.Name, "")
	if len(inst) > 0 {
		cur := inst[0]
		cs.RestartCount = int32(cur.Metadata.GetAttempt())
		cs.ContainerID = k.cfg.RuntimeName + "://" + cur.Id
		cs.ImageID = cur.ImageRef
		switch cur.State {
		case runtimeapi.ContainerState_CONTAINER_RUNNING:
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(time.Unix(0, cur.StartedAt))}
			cs.Started = ptrBool(!probed || k.probes.Started(pod.UID, c.Name))
			cs.Ready = probed && k.probes.Ready(pod.UID, c.Name)
		case runtimeapi.ContainerState_CONTAINER_EXITED:
			cs.State.Terminated = k.terminated(c, cur)
			// An init container that succeeded is ready, as upstream
			// reports it; Initialized is made of these.
			cs.Ready = !probed && cur.ExitCode == 0
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
			cs.Ready = false
		}
	} else {
		if waiting == nil {
			waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
			if len(pod.Spec.InitContainers) > 0 {
				waiting.Reason = "PodInitializing"
			}
		}
		cs.State.Waiting = waiting
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
// Sidecars count while they run but not once they stopped, and hold the
// pod Pending only until they started. terminating: the pod's containers
// were stopped for good because it is being deleted.
func podPhase(pod *corev1.Pod, st *corev1.PodStatus, terminating bool) corev1.PodPhase {
	var pendingInit, failedInit, unknown, running, waiting, stopped, succeeded int
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		cs := findStatus(st.InitContainerStatuses, c.Name)
		if isSidecar(c) {
			switch {
			case cs == nil:
				unknown++
			case cs.State.Running != nil:
				running++
				if cs.Started == nil || !*cs.Started {
					pendingInit++
				}
			case cs.State.Terminated != nil, cs.LastTerminationState.Terminated != nil:
				// stopped or restarting: no bearing on the phase
			default:
				pendingInit++
				waiting++
			}
			continue
		}
		switch {
		case cs == nil:
			pendingInit++
		case cs.State.Terminated != nil:
			if cs.State.Terminated.ExitCode != 0 {
				failedInit++
			}
		case cs.State.Waiting != nil && cs.LastTerminationState.Terminated != nil:
			if cs.LastTerminationState.Terminated.ExitCode != 0 {
				failedInit++
			}
		default:
			pendingInit++
		}
	}
	appStarted := false
	for i := range pod.Spec.Containers {
		cs := findStatus(st.ContainerStatuses, pod.Spec.Containers[i].Name)
		switch {
		case cs == nil:
			unknown++
		case cs.State.Running != nil:
			running++
			appStarted = true
		case cs.State.Terminated != nil:
			stopped++
			appStarted = true
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.State.Waiting != nil && cs.LastTerminationState.Terminated != nil:
			stopped++
			appStarted = true
		default:
			waiting++
		}
	}
	if failedInit > 0 && pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
		return corev1.PodFailed
	}
	switch {
	case pendingInit > 0 && !appStarted, waiting > 0:
		return corev1.PodPending
	case running > 0 && unknown == 0:
		return corev1.PodRunning
	case running == 0 && stopped > 0 && unknown == 0:
		switch {
		case terminating && stopped == succeeded:
			return corev1.PodSucceeded
		case terminating:
			return corev1.PodFailed
		case pod.Spec.RestartPolicy == corev1.RestartPolicyAlways:
			return corev1.PodRunning // restarting
		case stopped == succeeded:
			return corev1.PodSucceeded
		case pod.Spec.RestartPolicy == corev1.RestartPolicyNever:
			return corev1.PodFailed
		}
		return corev1.PodRunning // OnFailure: restarting the failed ones
	}
	return corev1.PodPending
}

func findStatus(list []corev1.ContainerStatus, name string) *corev1.ContainerStatus {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

// kubeletConditions are the pod conditions the kubelet owns; all others
// (PodScheduled, readiness gates, DisruptionTarget) belong to others and
// are kept as the API server has them.
var kubeletConditions = []corev1.PodConditionType{
	corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.PodReady, corev1.ContainersReady,
}

// podConditions computes the kubelet's conditions from st and merges them
// with the others' conditions in api (the API server's copy, which also
// holds the readiness gates' conditions). prev, the conditions last
// known, keeps transition times across syncs.
func (k *Kubelet) podConditions(pod *corev1.Pod, api []corev1.PodCondition, st *corev1.PodStatus, sandboxReady bool, prev []corev1.PodCondition) []corev1.PodCondition {
	cond := func(t corev1.PodConditionType, ok bool, reason, msg string) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, Reason: reason}
		if !ok {
			c.Status, c.Message = corev1.ConditionFalse, msg
		}
		return c
	}
	terminal := isTerminalPhase(st.Phase)

	// Initialized: every ordinary init container succeeded (is ready),
	// every sidecar started.
	var incomplete []string
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		cs := findStatus(st.InitContainerStatuses, c.Name)
		done := cs != nil && cs.Ready
		if isSidecar(c) {
			done = cs != nil && cs.Started != nil && *cs.Started
		}
		if !done {
			incomplete = append(incomplete, c.Name)
		}
	}
	initialized := cond(corev1.PodInitialized, len(incomplete) == 0, "", "")
	switch {
	case st.Phase == corev1.PodSucceeded:
		initialized = cond(corev1.PodInitialized, true, "PodCompleted", "")
	case len(incomplete) > 0:
		initialized = cond(corev1.PodInitialized, false, "ContainersNotInitialized", fmt.Sprintf("containers with incomplete status: %v", incomplete))
	}

	// ContainersReady: every app container and sidecar is ready; none
	// is once the pod finished.
	var unready []string
	for _, cs := range st.InitContainerStatuses {
		if c := specOf(pod, cs.Name); c != nil && isSidecar(c) && !cs.Ready {
			unready = append(unready, cs.Name)
		}
	}
	for _, cs := range st.ContainerStatuses {
		if !cs.Ready {
			unready = append(unready, cs.Name)
		}
	}
	containersReady := cond(corev1.ContainersReady, true, "", "")
	switch {
	case st.Phase == corev1.PodSucceeded:
		containersReady = cond(corev1.ContainersReady, false, "PodCompleted", "")
	case st.Phase == corev1.PodFailed:
		containersReady = cond(corev1.ContainersReady, false, "PodFailed", "")
	case len(unready) > 0:
		containersReady = cond(corev1.ContainersReady, false, "ContainersNotReady", fmt.Sprintf("containers with unready status: %v", unready))
	}

	// Ready: containers ready and every readiness gate's condition True.
	ready := containersReady
	ready.Type = corev1.PodReady
	if ready.Status == corev1.ConditionTrue {
		var gates []string
		for _, g := range pod.Spec.ReadinessGates {
			switch c := findCondition(api, g.ConditionType); {
			case c == nil:
				gates = append(gates, fmt.Sprintf("readiness gate %q has no condition yet", g.ConditionType))
			case c.Status != corev1.ConditionTrue:
				gates = append(gates, fmt.Sprintf("readiness gate %q is %s, not True", g.ConditionType, c.Status))
			}
		}
		if len(gates) > 0 {
			ready = cond(corev1.PodReady, false, "ReadinessGatesNotReady", strings.Join(gates, ", "))
		}
	}
	ours := []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, sandboxReady && !terminal, "", ""),
		initialized, ready, containersReady,
	}

	var out []corev1.PodCondition
	for _, c := range api {
		if !slices.Contains(kubeletConditions, c.Type) {
			out = append(out, c)
		}
	}
	now := metav1.NewTime(k.clock.Now())
	for _, c := range ours {
		c.LastTransitionTime = now
		if old := findCondition(prev, c.Type); old != nil && old.Status == c.Status {
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
// On a conflict it merges into the newest copy: the others' conditions
// (and the readiness gates they decide) come from that copy, and a
// terminal phase someone already recorded is never undone.
func (k *Kubelet) postStatus(ctx context.Context, pod *corev1.Pod, status *corev1.PodStatus) error {
	if apiequality.Semantic.DeepEqual(&pod.Status, status) {
		return nil
	}
	k.statusMu.Lock()
	last, over := k.lastStatus[pod.UID], k.postedOver[pod.UID]
	k.statusMu.Unlock()
	// Sent already and the informer still has the copy we wrote over:
	// it has not caught up yet. Once it has a newer copy that differs,
	// someone else changed the status (the node lifecycle controller
	// marking the pod not ready, say) and ours must be written again.
	if last != nil && over == pod.ResourceVersion && apiequality.Semantic.DeepEqual(last, status) {
		return nil
	}
	pods := k.cfg.Client.CoreV1().Pods(pod.Namespace)
	updated := pod.DeepCopy()
	updated.Status = *status
	postedOver := pod.ResourceVersion
	_, err := pods.UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		cur, gerr := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if gerr != nil {
			return fmt.Errorf("update status of %s/%s: %w", pod.Namespace, pod.Name, gerr)
		}
		if cur.UID != pod.UID {
			return nil
		}
		if isTerminalPhase(cur.Status.Phase) && cur.Status.Phase != status.Phase {
			return nil // finished already: nothing to add
		}
		st := status.DeepCopy()
		ready := findCondition(status.Conditions, corev1.PodReadyToStartContainers)
		st.Conditions = k.podConditions(cur, cur.Status.Conditions, st, ready != nil && ready.Status == corev1.ConditionTrue, status.Conditions)
		cur.Status = *st
		postedOver = cur.ResourceVersion
		_, err = pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		status = st
	}
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("update status of %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	k.statusMu.Lock()
	k.lastStatus[pod.UID] = status
	k.postedOver[pod.UID] = postedOver
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
