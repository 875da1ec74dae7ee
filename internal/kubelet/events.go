package kubelet

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// newRecorder records events as component "kubelet" from this node.
func newRecorder(client kubernetes.Interface, node string) (record.EventRecorder, func()) {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	return b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: node}), b.Shutdown
}

// event records an event about the pod, or one of its containers when
// container is set (upstream's fieldPath spec.containers{name}).
func (k *Kubelet) event(pod *corev1.Pod, container, eventType, reason, format string, args ...any) {
	ref := &corev1.ObjectReference{
		Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
		ResourceVersion: pod.ResourceVersion,
	}
	if container != "" {
		ref.FieldPath = fmt.Sprintf("spec.containers{%s}", container)
		for _, c := range pod.Spec.InitContainers {
			if c.Name == container {
				ref.FieldPath = fmt.Sprintf("spec.initContainers{%s}", container)
			}
		}
	}
	k.recorder.Eventf(ref, eventType, reason, format, args...)
}
