package volume

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/skiffhq/skiff/internal/kubelet/downward"
)

// downwardAPIVolume renders items from pod. Because Setup runs on every
// sync, label and annotation changes reach the files without a restart.
func (m *Manager) downwardAPIVolume(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, defaultMode int32) (map[string]file, error) {
	out := make(map[string]file, len(items))
	for _, it := range items {
		var val string
		var err error
		switch {
		case it.FieldRef != nil:
			val, err = podFieldValue(pod, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			val, err = m.resourceValue(pod, it.ResourceFieldRef)
		default:
			err = errors.New("one of fieldRef or resourceFieldRef is required")
		}
		if err != nil {
			return nil, fmt.Errorf("downwardAPI item %q: %w", it.Path, err)
		}
		mode := defaultMode
		if it.Mode != nil {
			mode = *it.Mode
		}
		out[it.Path] = file{data: []byte(val), mode: mode}
	}
	return out, nil
}

// podFieldValue supports the pod fields a downwardAPI volume may name; the
// others (spec.nodeName, status.podIP, ...) are env-only upstream.
func podFieldValue(pod *corev1.Pod, fieldPath string) (string, error) {
	if v, ok := downward.Field(pod, fieldPath); ok {
		return v, nil
	}
	return "", fmt.Errorf("unsupported fieldPath: %v", fieldPath)
}

// resourceValue renders a container's limit or request divided by the
// divisor and rounded up. A missing cpu, memory or ephemeral-storage limit
// reads as the node's allocatable amount: that is the most the container
// can actually get, which is what apps sizing themselves want to know.
func (m *Manager) resourceValue(pod *corev1.Pod, ref *corev1.ResourceFieldSelector) (string, error) {
	if ref.ContainerName == "" {
		return "", errors.New("resourceFieldRef needs containerName in a volume")
	}
	c := findContainer(pod, ref.ContainerName)
	if c == nil {
		return "", fmt.Errorf("container %q not found in pod", ref.ContainerName)
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	kind, name, _ := strings.Cut(ref.Resource, ".")
	var list corev1.ResourceList
	switch kind {
	case "limits":
		list = c.Resources.Limits
		switch corev1.ResourceName(name) {
		case corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage:
			if _, ok := list[corev1.ResourceName(name)]; !ok {
				list = m.nodeAllocatable()
			}
		}
	case "requests":
		list = c.Resources.Requests
	default:
		return "", fmt.Errorf("unsupported container resource : %v", ref.Resource)
	}
	q := list[corev1.ResourceName(name)]
	var v int64
	var err error
	switch {
	case name == string(corev1.ResourceCPU):
		v, err = ceilDiv(q.MilliValue(), divisor.MilliValue())
	case name == string(corev1.ResourceMemory), name == string(corev1.ResourceEphemeralStorage),
		strings.HasPrefix(name, corev1.ResourceHugePagesPrefix):
		v, err = ceilDiv(q.Value(), divisor.Value())
	default:
		return "", fmt.Errorf("unsupported container resource : %v", ref.Resource)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", ref.Resource, err)
	}
	return strconv.FormatInt(v, 10), nil
}

func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

func ceilDiv(a, b int64) (int64, error) {
	if b <= 0 {
		return 0, fmt.Errorf("invalid divisor %d", b)
	}
	if a <= 0 {
		return 0, nil
	}
	return (a-1)/b + 1, nil
}
