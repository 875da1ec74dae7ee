package server

import "errors"

// Provider is what the server needs to know of the pods a kubelet runs:
// which runtime container backs a pod's container, and which sandbox a pod
// has. The kubelet core implements it from its own state, so the server
// never asks the API server.
type Provider interface {
	// Container returns the runtime instances of one of a pod's containers
	// (init and ephemeral containers included). An unknown pod gives an
	// error wrapping ErrPodNotFound; an unknown container one wrapping
	// ErrContainerNotFound.
	Container(namespace, pod, container string) (ContainerRef, error)
	// PodSandbox returns the ID of the pod's current sandbox, or an error
	// wrapping ErrPodNotFound.
	PodSandbox(namespace, pod string) (string, error)
}

// ContainerRef names the runtime containers behind a pod's container: the
// most recent instance (running, or the last one to exit) and the one
// before it, which `kubectl logs --previous` reads.
type ContainerRef struct {
	// ID and LogPath are the most recent instance's; ID is empty while
	// the container has not been created yet.
	ID, LogPath string
	// PreviousID and PreviousLogPath are the instance before, empty if
	// the container has not restarted.
	PreviousID, PreviousLogPath string
	// Waiting is why there is no instance yet ("ContainerCreating",
	// "ErrImagePull"); it only words the error when ID is empty.
	Waiting string
}

// Errors a Provider wraps so the server answers 404 with upstream's
// message rather than 500.
var (
	ErrPodNotFound       = errors.New("pod not found")
	ErrContainerNotFound = errors.New("container not found")
)
