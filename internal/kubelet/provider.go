package kubelet

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/internal/kubelet/server"
)

// The kubelet tells its HTTPS API which runtime containers back a pod.
var _ server.Provider = (*Kubelet)(nil)

// providerTimeout bounds the runtime calls behind one streaming request's
// lookup.
const providerTimeout = 10 * time.Second

// Container implements server.Provider.
func (k *Kubelet) Container(namespace, name, container string) (server.ContainerRef, error) {
	pod, err := k.pods.Pods(namespace).Get(name)
	if err != nil {
		return server.ContainerRef{}, fmt.Errorf("pod %s/%s: %w", namespace, name, server.ErrPodNotFound)
	}
	if specOf(pod, container) == nil && !isEphemeral(pod.Spec.EphemeralContainers, container) {
		return server.ContainerRef{}, fmt.Errorf("container %s in pod %s/%s: %w", container, namespace, name, server.ErrContainerNotFound)
	}
	ctx, cancel := context.WithTimeout(context.Background(), providerTimeout)
	defer cancel()
	state, err := k.podState(ctx, pod.UID)
	if err != nil {
		return server.ContainerRef{}, err
	}
	ref := server.ContainerRef{}
	inst := state.instances(container, "")
	if len(inst) > 0 {
		ref.ID, ref.LogPath = inst[0].Id, inst[0].LogPath
	}
	if len(inst) > 1 {
		ref.PreviousID, ref.PreviousLogPath = inst[1].Id, inst[1].LogPath
	}
	if ref.ID == "" {
		for _, cs := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
			if cs.Name == container && cs.State.Waiting != nil {
				ref.Waiting = cs.State.Waiting.Reason
			}
		}
	}
	return ref, nil
}

// PodSandbox implements server.Provider.
func (k *Kubelet) PodSandbox(namespace, name string) (string, error) {
	pod, err := k.pods.Pods(namespace).Get(name)
	if err != nil {
		return "", fmt.Errorf("pod %s/%s: %w", namespace, name, server.ErrPodNotFound)
	}
	ctx, cancel := context.WithTimeout(context.Background(), providerTimeout)
	defer cancel()
	state, err := k.podState(ctx, pod.UID)
	if err != nil {
		return "", err
	}
	sb := state.readySandbox()
	if sb == nil {
		return "", fmt.Errorf("pod %s/%s has no running sandbox: %w", namespace, name, server.ErrPodNotFound)
	}
	return sb.Id, nil
}

func isEphemeral(list []corev1.EphemeralContainer, name string) bool {
	for _, c := range list {
		if c.Name == name {
			return true
		}
	}
	return false
}
