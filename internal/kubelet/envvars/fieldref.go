package envvars

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/skiffhq/skiff/internal/kubelet/downward"
)

// fieldValue answers a downward-API fieldRef. Whole label or annotation
// maps are formatted one key="value" per line as in downward-API volumes.
func fieldValue(ref *corev1.ObjectFieldSelector, pod *corev1.Pod, src Sources) (string, error) {
	if ref.APIVersion != "" && ref.APIVersion != "v1" {
		return "", fmt.Errorf("unsupported pod version: %s", ref.APIVersion)
	}
	path := ref.FieldPath
	if v, ok := downward.Field(pod, path); ok {
		return v, nil
	}
	switch path {
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP":
		if src.HostIP == "" {
			return "", errors.New("status.hostIP: host IP unknown")
		}
		return src.HostIP, nil
	case "status.hostIPs":
		if len(src.HostIPs) == 0 {
			return "", errors.New("status.hostIPs: host IP unknown")
		}
		return strings.Join(src.HostIPs, ","), nil
	case "status.podIP":
		return src.PodIP, nil
	case "status.podIPs":
		return strings.Join(src.PodIPs, ","), nil
	}
	return "", fmt.Errorf("unsupported fieldPath: %s", path)
}

// resourceValue answers a resourceFieldRef, rounding up to whole
// divisors (default 1: cores for cpu, bytes otherwise).
func resourceValue(ref *corev1.ResourceFieldSelector, pod *corev1.Pod, c *corev1.Container, allocatable corev1.ResourceList) (string, error) {
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") {
		return "", fmt.Errorf("unsupported container resource: %s", ref.Resource)
	}
	rn := corev1.ResourceName(name)
	switch {
	case rn == corev1.ResourceCPU, rn == corev1.ResourceMemory, rn == corev1.ResourceEphemeralStorage:
	case strings.HasPrefix(name, corev1.ResourceHugePagesPrefix):
	default:
		return "", fmt.Errorf("unsupported container resource: %s", ref.Resource)
	}

	var q resource.Quantity
	if kind == "requests" {
		q = c.Resources.Requests[rn]
	} else {
		q = effectiveLimits(pod, c, allocatable)[rn]
	}
	if rn == corev1.ResourceCPU {
		return strconv.FormatInt(ceilDiv(q.MilliValue(), divisor.MilliValue()), 10), nil
	}
	return strconv.FormatInt(ceilDiv(q.Value(), divisor.Value()), 10), nil
}

// effectiveLimits is the container's limits with unset cpu, memory and
// ephemeral-storage limits replaced by what bounds them in practice: the
// pod-level limit for cpu and memory if there is one, else the node's
// allocatable amount.
func effectiveLimits(pod *corev1.Pod, c *corev1.Container, allocatable corev1.ResourceList) corev1.ResourceList {
	bound := allocatable.DeepCopy()
	if pod.Spec.Resources != nil {
		for _, rn := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if v, ok := pod.Spec.Resources.Limits[rn]; ok && !v.IsZero() {
				if bound == nil {
					bound = corev1.ResourceList{}
				}
				bound[rn] = v.DeepCopy()
			}
		}
	}
	limits := c.Resources.Limits.DeepCopy()
	if limits == nil {
		limits = corev1.ResourceList{}
	}
	// Hugepages are never overcommitted, so they have no such default.
	for _, rn := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		if v, ok := limits[rn]; ok && !v.IsZero() {
			continue
		}
		if v, ok := bound[rn]; ok {
			limits[rn] = v.DeepCopy()
		}
	}
	return limits
}

func ceilDiv(a, b int64) int64 {
	if b == 0 {
		return 0
	}
	return int64(math.Ceil(float64(a) / float64(b)))
}
