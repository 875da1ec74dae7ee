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
func (k *Kubelet) syncPod(ctx context.Context, pod *corev1.Pod, deleted bool) syncResult {
	log := k.log.With("pod", pod.Namespace+"/"+pod.Name)
	state, err := k.podState(ctx, pod.UID)
	if err != nil {
		log.Warn("read pod state", "err", err)
		return syncResult{requeueAfter: time.Second}
	}
	if deleted || pod.DeletionTimestamp != nil {
		return k.terminatePod(ctx, pod, state, deleted)
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		// Terminal pods never run again; their containers stay for logs
		// until the pod is deleted.
		k.stopSandboxes(ctx, state)
		return syncResult{}
	}

	s := &podSync{k: k, pod: pod, state: state, waiting: map[string]*corev1.ContainerStateWaiting{}}
	s.run(ctx)
	status := k.podStatus(pod, s.state, s.waiting)
	if err := k.postStatus(ctx, pod, status); err != nil && ctx.Err() == nil {
		log.Warn("post pod status", "err", err)
		s.res.soonest(time.Second)
	}
	if status.Phase == corev1.PodSucceeded || status.Phase == corev1.PodFailed {
		k.stopSandboxes(ctx, s.state)
		k.probes.RemovePod(pod.UID)
		return syncResult{}
	}
	k.probes.UpdatePod(pod, probeStates(s.state))
	k.pruneDead(ctx, s.state)
	return s.res
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
}

func (s *podSync) run(ctx context.Context) {
	k, pod := s.k, s.pod
	vols, err := k.cfg.Volumes.Setup(ctx, pod)
	if err != nil {
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
		s.syncContainer(ctx, &pod.Spec.Containers[i])
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
			return false
		}
		s.sandbox, s.sandboxCfg = sb, cfg
		return true
	}
	if len(s.state.sandboxes) > 0 && s.finished() {
		return false // a pod that ran to completion is not restarted with a new sandbox
	}
	// Whatever still runs in an old sandbox goes with it.
	for _, c := range s.state.running() {
		k.killContainer(ctx, pod, c, 0, "sandbox changed")
	}
	attempt := uint32(0)
	if len(s.state.sandboxes) > 0 {
		attempt = s.state.sandboxes[0].Metadata.GetAttempt() + 1
		k.event(pod, "", corev1.EventTypeNormal, "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")
	}
	cfg, err := k.sandboxConfig(pod, attempt)
	if err != nil {
		s.waitAll("ContainerCreating", err.Error())
		s.res.soonest(2 * time.Second)
		return false
	}
	if err := k.ensureImagePresent(ctx, k.cfg.SandboxImage); err != nil {
		k.log.Warn("sandbox image", "image", k.cfg.SandboxImage, "err", err)
	}
	resp, err := k.cfg.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		k.event(pod, "", corev1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
		s.waitAll("ContainerCreating", "")
		s.res.soonest(k.backoffFor("sandbox/"+string(pod.UID), k.clock.Now()))
		return false
	}
	st, err := k.podState(ctx, pod.UID)
	if err != nil {
		s.res.soonest(time.Second)
		return false
	}
	s.state = st
	for _, sb := range st.sandboxes {
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

// backoffFor records a failure of key and returns the wait before the
// next attempt.
func (k *Kubelet) backoffFor(key string, at time.Time) time.Duration {
	if d := k.backoff.wait(key, at); d > 0 {
		return d
	}
	k.backoff.next(key, at)
	return k.backoff.current(key)
}

// finished reports whether the pod's containers ran to the end its
// restart policy allows.
func (s *podSync) finished() bool {
	policy := s.pod.Spec.RestartPolicy
	if policy == corev1.RestartPolicyAlways {
		return false
	}
	for _, c := range s.pod.Spec.Containers {
		last := s.state.latest(c.Name)
		if last == nil || last.State != runtimeapi.ContainerState_CONTAINER_EXITED {
			return false
		}
		if policy == corev1.RestartPolicyOnFailure && last.ExitCode != 0 {
			return false
		}
	}
	return true
}

// runInitContainers runs the init containers one after the other and
// reports whether all have succeeded.
func (s *podSync) runInitContainers(ctx context.Context) bool {
	for i := range s.pod.Spec.InitContainers {
		c := &s.pod.Spec.InitContainers[i]
		inst := s.state.instances(c.Name, s.sandbox.Id)
		if len(inst) == 0 {
			s.startContainer(ctx, c)
			s.waitRest(i + 1)
			return false
		}
		last := inst[0]
		switch {
		case last.State == runtimeapi.ContainerState_CONTAINER_EXITED && last.ExitCode == 0:
			continue
		case last.State != runtimeapi.ContainerState_CONTAINER_EXITED:
			s.waitRest(i + 1) // still running: the relist wakes us when it ends
			return false
		case s.pod.Spec.RestartPolicy == corev1.RestartPolicyNever:
			s.waitRest(i + 1) // failed for good: the status says Failed
			return false
		default:
			s.restartAfterBackoff(ctx, c, last)
			s.waitRest(i + 1)
			return false
		}
	}
	return true
}

// waitRest marks init containers from index i and all app containers as
// waiting for initialization.
func (s *podSync) waitRest(i int) {
	for j := i; j < len(s.pod.Spec.InitContainers); j++ {
		if s.state.latest(s.pod.Spec.InitContainers[j].Name) == nil {
			s.waiting[s.pod.Spec.InitContainers[j].Name] = &corev1.ContainerStateWaiting{Reason: "PodInitializing"}
		}
	}
	for _, c := range s.pod.Spec.Containers {
		if _, ok := s.waiting[c.Name]; !ok {
			s.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "PodInitializing"}
		}
	}
}

// syncContainer keeps one app container running as the restart policy,
// its probes and its spec ask.
func (s *podSync) syncContainer(ctx context.Context, c *corev1.Container) {
	k, pod := s.k, s.pod
	inst := s.state.instances(c.Name, s.sandbox.Id)
	if len(inst) == 0 {
		if prev := s.state.latest(c.Name); prev != nil && !shouldRestart(pod, prev) {
			return // ran in an earlier sandbox and must not run again
		}
		s.startContainer(ctx, c)
		return
	}
	last := inst[0]
	if last.State == runtimeapi.ContainerState_CONTAINER_RUNNING || last.State == runtimeapi.ContainerState_CONTAINER_CREATED {
		reason := ""
		switch {
		case last.Annotations[annotationHash] != containerHash(c):
			reason = "spec changed"
			k.event(pod, c.Name, corev1.EventTypeNormal, "Killing", "Container %s definition changed, will be restarted", c.Name)
		case k.probes.Result(pod.UID, c.Name, prober.Liveness) == prober.Failure || k.probes.Result(pod.UID, c.Name, prober.Startup) == prober.Failure:
			reason = "probe failed"
			k.event(pod, c.Name, corev1.EventTypeNormal, "Killing", "Container %s failed liveness probe, will be restarted", c.Name)
		}
		if reason == "" {
			return
		}
		k.killContainer(ctx, pod, last, probeGrace(pod, c), reason)
		st, err := k.podState(ctx, pod.UID)
		if err != nil {
			s.res.soonest(time.Second)
			return
		}
		s.state = st
		last = s.state.instances(c.Name, s.sandbox.Id)[0]
		if last.State != runtimeapi.ContainerState_CONTAINER_EXITED {
			s.res.soonest(time.Second)
			return
		}
	}
	if !shouldRestart(pod, last) {
		return
	}
	s.restartAfterBackoff(ctx, c, last)
}

// shouldRestart applies the restart policy to an exited container.
func shouldRestart(pod *corev1.Pod, last *runtimeapi.ContainerStatus) bool {
	if last.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		return false
	}
	switch pod.Spec.RestartPolicy {
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
	if waiting != nil {
		s.waiting[c.Name] = waiting
		s.res.soonest(k.backoff.wait("pull/"+backoffKey(pod, c.Name), k.clock.Now()) + time.Millisecond)
		return
	}
	cfg, err := k.containerConfig(pod, c, attempt, image, s.volumes, s.state.ip)
	if err != nil {
		k.event(pod, c.Name, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		s.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}
		s.res.soonest(2 * time.Second)
		return
	}
	created, err := k.cfg.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: s.sandbox.Id, Config: cfg, SandboxConfig: s.sandboxCfg})
	if err != nil {
		k.event(pod, c.Name, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		s.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "CreateContainerError", Message: err.Error()}
		s.res.soonest(k.backoffFor(backoffKey(pod, c.Name), k.clock.Now()))
		return
	}
	k.event(pod, c.Name, corev1.EventTypeNormal, "Created", "Created container %s", c.Name)
	if _, err := k.cfg.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: created.ContainerId}); err != nil {
		k.event(pod, c.Name, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		s.waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: "RunContainerError", Message: err.Error()}
		s.res.soonest(k.backoffFor(backoffKey(pod, c.Name), k.clock.Now()))
		s.refresh(ctx)
		return
	}
	k.event(pod, c.Name, corev1.EventTypeNormal, "Started", "Started container %s", c.Name)
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		if err := k.runHook(ctx, pod, c, created.ContainerId, c.Lifecycle.PostStart, s.state.ip, hookTimeout); err != nil {
			k.event(pod, c.Name, corev1.EventTypeWarning, "FailedPostStartHook", "PostStartHook failed: %v", err)
			k.stopContainer(ctx, pod, c.Name, created.ContainerId, 0)
		}
	}
	s.refresh(ctx)
}

// refresh reads the pod's state again after a change, so the status posted
// at the end of the sync already shows it.
func (s *podSync) refresh(ctx context.Context) {
	if st, err := s.k.podState(ctx, s.pod.UID); err == nil {
		st.ip = s.state.ip
		s.state = st
	}
}

// hookTimeout bounds a postStart hook, which has no grace period of its
// own.
const hookTimeout = 30 * time.Second

var errNoHandler = errors.New("no handler in hook")
