package kubelet

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// isSidecar reports whether an init container keeps running beside the
// app containers (restartPolicy Always).
func isSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// initRestartPolicy is how a failed (non-sidecar) init container is
// retried: unless the pod never restarts, until it succeeds.
func initRestartPolicy(pod *corev1.Pod) corev1.RestartPolicy {
	if pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
		return corev1.RestartPolicyNever
	}
	return corev1.RestartPolicyOnFailure
}

// runInitContainers runs the init containers in order and reports whether
// the pod is initialized: every ordinary one succeeded and every sidecar
// started. Sidecars keep being restarted afterwards, on every sync.
func (s *podSync) runInitContainers(ctx context.Context) bool {
	for i := range s.pod.Spec.InitContainers {
		if ctx.Err() != nil {
			return false
		}
		c := &s.pod.Spec.InitContainers[i]
		if isSidecar(c) {
			if s.appsDone() {
				continue // being stopped with the pod, not restarted
			}
			s.syncContainer(ctx, c, corev1.RestartPolicyAlways)
			// Once app containers ran, a restarting sidecar no longer
			// holds them back.
			if s.sidecarStarted(c) || s.appStarted() {
				continue
			}
			s.waitRest(i + 1)
			return false
		}
		inst := s.state.instances(c.Name, s.sandbox.Id)
		switch {
		case len(inst) == 0:
			s.startContainer(ctx, c) // also in a new sandbox: init runs again
		case inst[0].State == runtimeapi.ContainerState_CONTAINER_EXITED && inst[0].ExitCode == 0:
			continue
		default:
			s.syncContainer(ctx, c, initRestartPolicy(s.pod))
		}
		s.waitRest(i + 1)
		return false
	}
	return true
}

// sidecarStarted reports whether a sidecar runs in the current sandbox and
// passed its startup probe, if it has one.
func (s *podSync) sidecarStarted(c *corev1.Container) bool {
	inst := s.state.instances(c.Name, s.sandbox.Id)
	if len(inst) == 0 || inst[0].State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return false
	}
	return c.StartupProbe == nil || s.k.probes.Started(s.pod.UID, c.Name)
}

// appStarted reports whether any app container was started in the
// current sandbox, that is whether the pod got past initialization.
func (s *podSync) appStarted() bool {
	for _, c := range s.pod.Spec.Containers {
		if len(s.state.instances(c.Name, s.sandbox.Id)) > 0 {
			return true
		}
	}
	return false
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

// appsDone reports whether every app container ran in the current
// sandbox and exited for good under the pod's restart policy.
func (s *podSync) appsDone() bool {
	if s.pod.Spec.RestartPolicy == corev1.RestartPolicyAlways || len(s.pod.Spec.Containers) == 0 {
		return false
	}
	for _, c := range s.pod.Spec.Containers {
		inst := s.state.instances(c.Name, s.sandbox.Id)
		if len(inst) == 0 || inst[0].State != runtimeapi.ContainerState_CONTAINER_EXITED || shouldRestart(s.pod.Spec.RestartPolicy, inst[0]) {
			return false
		}
	}
	return true
}
