package kubelet

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffhq/skiff/internal/kubelet/prober"
)

// syncPod drives one pod one step towards its spec and reports its status.
// It is level-triggered: it looks at what runs now, not at what changed.
// ctx is cancelled when the pod starts terminating, so that a long image
// pull or sandbox start does not hold up its deletion.
func (k *Kubelet) syncPod(ctx context.Context, pod *corev1.Pod, deleted bool) syncResult {
	log := k.log.With("pod", pod.Namespace+"/"+pod.Name)
	state, err := k.podState(ctx, pod.UID)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("read pod state", "err", err)
		}
		return syncResult{requeueAfter: time.Second}
	}
	if deleted || pod.DeletionTimestamp != nil {
		return k.terminatePod(ctx, pod, state, deleted)
	}
	if k.isTerminal(pod) {
		// Terminal pods never run again; their containers stay for logs
		// until the pod is deleted.
		k.stopSandboxes(ctx, state)
		k.probes.RemovePod(pod.UID)
		return syncResult{}
	}
	deadline, hasDeadline := k.activeDeadline(pod)
	if hasDeadline && deadline <= 0 {
		return k.failDeadline(ctx, pod, state)
	}

	s := &podSync{k: k, pod: pod, state: state, waiting: map[string]*corev1.ContainerStateWaiting{}}
	s.run(ctx)
	if ctx.Err() != nil {
		return syncResult{} // aborted: the pod is terminating and its worker was woken
	}
	// The prober learns of new containers before the status is computed,
	// so a container without probes is reported ready by the very sync
	// that started it: nothing else would wake the pod to say so.
	k.probes.UpdatePod(pod, probeStates(s.state))
	status := k.podStatus(pod, s.state, s.waiting)
	if err := k.postStatus(ctx, pod, status); err != nil && ctx.Err() == nil {
		log.Warn("post pod status", "err", err)
		s.res.soonest(time.Second)
	}
	if isTerminalPhase(status.Phase) {
		k.stopSandboxes(ctx, s.state)
		k.probes.RemovePod(pod.UID)
		return syncResult{}
	}
	k.pruneDead(ctx, s.state)
	if hasDeadline {
		s.res.soonest(deadline)
	}
	return s.res
}

// isTerminal reports whether the pod finished for good, by the informer's
// copy or by the status last posted, which the informer may not show yet.
func (k *Kubelet) isTerminal(pod *corev1.Pod) bool {
	if isTerminalPhase(pod.Status.Phase) {
		return true
	}
	k.statusMu.Lock()
	defer k.statusMu.Unlock()
	last := k.lastStatus[pod.UID]
	return last != nil && isTerminalPhase(last.Phase)
}

func isTerminalPhase(p corev1.PodPhase) bool {
	return p == corev1.PodSucceeded || p == corev1.PodFailed
}

// podSync is one sync of one pod.
type podSync struct {
	k     *Kubelet
	pod   *corev1.Pod
	state *podState
	// waiting holds why a container is not running, for its status.
	waiting map[string]*corev1.ContainerStateWaiting
	res     syncResult

	sandbox    *runtimeapi.PodSandbox
	sandboxCfg *runtimeapi.PodSandboxConfig
	volumes    map[string]string
	// starting: this sync holds a start slot (see Kubelet.starts).
	starting bool
}

// acquireStart takes one of the kubelet's start slots for the rest of this
// sync, the first time the sync is about to start something. Starting a
// sandbox or a container is CPU-bound (namespaces, CNI plugins, runc); with
// a burst of pods, letting all of them contend makes every pod finish late,
// while a few at a time lets most finish early at the same total cost.
func (s *podSync) acquireStart(ctx context.Context) bool {
	if s.starting {
		return true
	}
	select {
	case s.k.starts <- struct{}{}:
		s.starting = true
		return true
	case <-ctx.Done():
		return false
	}
}

// release gives back the start slot, if held.
func (s *podSync) release() {
	if s.starting {
		<-s.k.starts
		s.starting = false
	}
}

func (s *podSync) run(ctx context.Context) {
	defer s.release()
	k, pod := s.k, s.pod
	vols, err := k.cfg.Volumes.Setup(ctx, pod)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		k.event(pod, "", corev1.EventTypeWarning, "FailedMount", "MountVolume.SetUp failed: %v", err)
		s.waitAll("ContainerCreating", "")
		s.res.soonest(2 * time.Second)
		return
	}
	s.volumes = vols
	if !s.ensureSandbox(ctx) {
		return
	}
	if !s.runInitContainers(ctx) {
		return
	}
	for i := range pod.Spec.Containers {
		if ctx.Err() != nil {
			return
		}
		s.syncContainer(ctx, &pod.Spec.Containers[i], pod.Spec.RestartPolicy)
	}
	// Sidecars serve the app containers: once those are done for good,
	// the sidecars are stopped too, so that the pod can finish.
	if s.appsDone() {
		var sidecars []*runtimeapi.ContainerStatus
		for _, c := range s.state.running() {
			if spec := specOf(pod, c.Metadata.GetName()); spec != nil && isSidecar(spec) {
				sidecars = append(sidecars, c)
			}
		}
		if len(sidecars) > 0 {
			k.killAll(ctx, pod, sidecars, gracePeriod(pod), "app containers finished")
			s.refresh(ctx)
		}
	}
}

// waitAll marks every container not yet created as waiting.
func (s *podSync) waitAll(reason, message string) {
	for _, c := range allContainers(s.pod) {
		if s.state.latest(c.Name) == nil {
			s.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: reason, Message: message}
		}
	}
}

// ensureSandbox makes sure the pod has a ready sandbox, creating a new one
// (and so restarting every container) when the old one died.
func (s *podSync) ensureSandbox(ctx context.Context) bool {
	k, pod := s.k, s.pod
	if sb := s.state.readySandbox(); sb != nil {
		cfg, err := k.sandboxConfig(pod, sb.Metadata.GetAttempt())
		if err != nil {
			s.waitAll("ContainerCreating", err.Error())
			s.res.soonest(2 * time.Second)
			return false
		}
		s.sandbox, s.sandboxCfg = sb, cfg
		return true
	}
	attempt := uint32(0)
	if len(s.state.sandboxes) > 0 {
		// The sandbox died. Whatever still runs in it goes with it, as
		// upstream kills the whole pod, and stopping the old sandboxes
		// gives their network (the pod IP) back.
		if running := s.state.running(); len(running) > 0 {
			k.killAll(ctx, pod, running, gracePeriod(pod), "sandbox changed")
		}
		k.stopSandboxes(ctx, s.state)
		s.refresh(ctx)
		if !s.mayRecreateSandbox() {
			return false
		}
		attempt = s.state.sandboxes[0].Metadata.GetAttempt() + 1
		k.event(pod, "", corev1.EventTypeNormal, "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")
	}
	cfg, err := k.sandboxConfig(pod, attempt)
	if err != nil {
		s.waitAll("ContainerCreating", err.Error())
		s.res.soonest(2 * time.Second)
		return false
	}
	if err := k.ensureImagePresent(ctx, k.cfg.SandboxImage); err != nil && ctx.Err() == nil {
		k.log.Warn("sandbox image", "image", k.cfg.SandboxImage, "err", err)
	}
	if !s.acquireStart(ctx) {
		return false
	}
	resp, err := k.cfg.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		k.event(pod, "", corev1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
		s.waitAll("ContainerCreating", "")
		s.res.soonest(k.backoffFor("sandbox/"+string(pod.UID), k.clock.Now()))
		return false
	}
	if !s.refresh(ctx) {
		s.res.soonest(time.Second)
		return false
	}
	for _, sb := range s.state.sandboxes {
		if sb.Id == resp.PodSandboxId {
			s.sandbox = sb
		}
	}
	if s.sandbox == nil {
		s.res.soonest(time.Second)
		return false
	}
	s.sandboxCfg = cfg
	return true
}

// mayRecreateSandbox applies the restart policy to the pod as a whole
// once its sandbox is gone, as upstream does: a Never pod gets no new
// sandbox once anything ran in the old one, an OnFailure pod none once
// all its containers succeeded.
func (s *podSync) mayRecreateSandbox() bool {
	switch s.pod.Spec.RestartPolicy {
	case corev1.RestartPolicyNever:
		return len(s.state.containers) == 0
	case corev1.RestartPolicyOnFailure:
		for _, c := range s.pod.Spec.Containers {
			last := s.state.latest(c.Name)
			if last == nil || last.State != runtimeapi.ContainerState_CONTAINER_EXITED || last.ExitCode != 0 {
				return true
			}
		}
		return false
	}
	return true
}

// backoffFor records a failure of key and returns the wait before the
// next attempt.
func (k *Kubelet) backoffFor(key string, at time.Time) time.Duration {
	if d := k.backoff.wait(key, at); d > 0 {
		return d
	}
	k.backoff.next(key, at)
	return k.backoff.current(key)
}

// syncContainer keeps one container as policy, its probes and its spec
// ask: started, restarted after back-off, or killed and restarted.
func (s *podSync) syncContainer(ctx context.Context, c *corev1.Container, policy corev1.RestartPolicy) {
	k, pod := s.k, s.pod
	inst := s.state.instances(c.Name, s.sandbox.Id)
	if len(inst) == 0 {
		if prev := s.state.latest(c.Name); prev != nil && !shouldRestart(policy, prev) {
			return // ran in an earlier sandbox and must not run again
		}
		s.startContainer(ctx, c)
		return
	}
	last := inst[0]
	switch last.State {
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		reason := ""
		switch {
		case last.Annotations[annotationHash] != containerHash(c):
			reason = "spec changed"
			k.event(pod, c.Name, corev1.EventTypeNormal, "Killing", "Container %s definition changed, will be restarted", c.Name)
		case k.probes.Result(pod.UID, c.Name, prober.Liveness) == prober.Failure:
			reason = "liveness probe failed"
			k.event(pod, c.Name, corev1.EventTypeNormal, "Killing", "Container %s failed liveness probe, will be restarted", c.Name)
		case k.probes.Result(pod.UID, c.Name, prober.Startup) == prober.Failure:
			reason = "startup probe failed"
			k.event(pod, c.Name, corev1.EventTypeNormal, "Killing", "Container %s failed startup probe, will be restarted", c.Name)
		}
		if reason == "" {
			return
		}
		k.killContainer(ctx, pod, last, probeGrace(pod, c), reason)
		if !s.refresh(ctx) {
			s.res.soonest(time.Second)
			return
		}
		inst = s.state.instances(c.Name, s.sandbox.Id)
		if len(inst) == 0 || inst[0].State != runtimeapi.ContainerState_CONTAINER_EXITED {
			s.res.soonest(time.Second)
			return
		}
		last = inst[0]
	case runtimeapi.ContainerState_CONTAINER_CREATED, runtimeapi.ContainerState_CONTAINER_UNKNOWN:
		// A worker creates and starts a container in one go, so one still
		// created was left by a failed start or a crash in between, and
		// one in an unknown state cannot be trusted: as upstream, it is
		// replaced by a new attempt whatever the restart policy.
		if s.discard(ctx, last) {
			s.restartAfterBackoff(ctx, c, last)
		}
		return
	}
	if !shouldRestart(policy, last) {
		return
	}
	s.restartAfterBackoff(ctx, c, last)
}

// discard stops and removes a container that will be replaced.
func (s *podSync) discard(ctx context.Context, st *runtimeapi.ContainerStatus) bool {
	k, pod := s.k, s.pod
	name := st.Metadata.GetName()
	if st.State == runtimeapi.ContainerState_CONTAINER_UNKNOWN {
		k.stopContainer(ctx, pod, name, st.Id, 0)
	}
	if _, err := k.cfg.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: st.Id}); err != nil {
		if ctx.Err() == nil {
			k.log.Warn("remove stale container", "pod", pod.Namespace+"/"+pod.Name, "container", name, "state", st.State.String(), "err", err)
			s.res.soonest(time.Second)
		}
		return false
	}
	k.forgetContainer(st.Id)
	return s.refresh(ctx)
}

// shouldRestart applies a restart policy to an exited container.
func shouldRestart(policy corev1.RestartPolicy, last *runtimeapi.ContainerStatus) bool {
	if last.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		return false
	}
	switch policy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return last.ExitCode != 0
	}
	return true
}

// restartAfterBackoff starts c again unless it is in crash-loop back-off,
// in which case its status says so and the sync runs again when the
// back-off ends.
func (s *podSync) restartAfterBackoff(ctx context.Context, c *corev1.Container, last *runtimeapi.ContainerStatus) {
	k, pod := s.k, s.pod
	key := backoffKey(pod, c.Name)
	finished := time.Unix(0, last.FinishedAt)
	if last.FinishedAt == 0 {
		finished = time.Unix(0, last.CreatedAt) // never ran
	}
	if d := k.backoff.wait(key, finished); d > 0 {
		s.waiting[c.Name] = &corev1.ContainerStateWaiting{
			Reason:  "CrashLoopBackOff",
			Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", k.backoff.current(key), c.Name, pod.Name, pod.Namespace, pod.UID),
		}
		k.event(pod, c.Name, corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s_%s(%s)", c.Name, pod.Name, pod.Namespace, pod.UID)
		s.res.soonest(d)
		return
	}
	k.backoff.next(key, finished)
	s.startContainer(ctx, c)
}

func backoffKey(pod *corev1.Pod, container string) string {
	return string(pod.UID) + "/" + container
}

// startContainer pulls c's image if needed, creates and starts it, and runs
// its postStart hook. Failures become the container's waiting reason.
func (s *podSync) startContainer(ctx context.Context, c *corev1.Container) {
	k, pod := s.k, s.pod
	attempt := uint32(0)
	if prev := s.state.latest(c.Name); prev != nil {
		attempt = prev.Metadata.GetAttempt() + 1
	}
	image, waiting := k.pullImage(ctx, pod, c)
	if ctx.Err() != nil {
		return
	}
	if waiting != nil {
		s.waiting[c.Name] = waiting
		// Whatever kept the image (a failed pull, pull policy Never) is
		// retried with back-off, not at once.
		s.res.soonest(k.backoffFor("pull/"+backoffKey(pod, c.Name), k.clock.Now()))
		return
	}
	cfg, err := k.containerConfig(pod, c, attempt, image, s.volumes, s.state.ip)
	if err == nil {
		err = k.verifyNonRoot(ctx, pod, c, image)
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		k.event(pod, c.Name, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		s.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}
		s.res.soonest(2 * time.Second)
		return
	}
	if !s.acquireStart(ctx) {
		return
	}
	created, err := k.cfg.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: s.sandbox.Id, Config: cfg, SandboxConfig: s.sandboxCfg})
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		k.event(pod, c.Name, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		s.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "CreateContainerError", Message: err.Error()}
		s.res.soonest(k.backoffFor(backoffKey(pod, c.Name), k.clock.Now()))
		return
	}
	k.event(pod, c.Name, corev1.EventTypeNormal, "Created", "Created container %s", c.Name)
	if _, err := k.cfg.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: created.ContainerId}); err != nil {
		if ctx.Err() != nil {
			return
		}
		k.event(pod, c.Name, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		s.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "RunContainerError", Message: err.Error()}
		s.res.soonest(k.backoffFor(backoffKey(pod, c.Name), k.clock.Now()))
		s.refresh(ctx)
		return
	}
	k.event(pod, c.Name, corev1.EventTypeNormal, "Started", "Started container %s", c.Name)
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		if err := k.runHook(ctx, pod, c, created.ContainerId, c.Lifecycle.PostStart, s.state.ip, hookTimeout); err != nil && ctx.Err() == nil {
			k.event(pod, c.Name, corev1.EventTypeWarning, "FailedPostStartHook", "PostStartHook failed: %v", err)
			k.stopContainer(ctx, pod, c.Name, created.ContainerId, 0)
		}
	}
	s.refresh(ctx)
}

// refresh reads the pod's state again after a change, so the status posted
// at the end of the sync already shows it.
func (s *podSync) refresh(ctx context.Context) bool {
	st, err := s.k.podState(ctx, s.pod.UID)
	if err != nil {
		return false
	}
	s.state = st
	return true
}

// hookTimeout bounds a postStart hook, which has no grace period of its
// own.
const hookTimeout = 30 * time.Second

var errNoHandler = errors.New("no handler in hook")
