package framework

import (
	corev1 "k8s.io/api/core/v1"
)

// Defaults counted for containers that request no CPU or memory when
// scoring, as upstream, so that many request-less pods do not all land
// on one node. Filtering uses the real requests.
const (
	DefaultMilliCPURequest int64 = 100
	DefaultMemoryRequest   int64 = 200 * 1024 * 1024
)

// Resource is an amount of each schedulable resource.
type Resource struct {
	MilliCPU         int64
	Memory           int64
	EphemeralStorage int64
	// AllowedPodNumber is the pod count a node allows (allocatable only).
	AllowedPodNumber int64
	// Scalar holds extended resources (e.g. example.com/gpu, hugepages-2Mi).
	Scalar map[corev1.ResourceName]int64
}

// NewResource converts a ResourceList.
func NewResource(rl corev1.ResourceList) *Resource {
	r := &Resource{}
	r.Add(rl)
	return r
}

// Add adds every quantity in rl.
func (r *Resource) Add(rl corev1.ResourceList) {
	for name, q := range rl {
		switch name {
		case corev1.ResourceCPU:
			r.MilliCPU += q.MilliValue()
		case corev1.ResourceMemory:
			r.Memory += q.Value()
		case corev1.ResourceEphemeralStorage:
			r.EphemeralStorage += q.Value()
		case corev1.ResourcePods:
			r.AllowedPodNumber += q.Value()
		default:
			if r.Scalar == nil {
				r.Scalar = map[corev1.ResourceName]int64{}
			}
			r.Scalar[name] += q.Value()
		}
	}
}

// AddResource adds o to r.
func (r *Resource) AddResource(o *Resource) {
	r.MilliCPU += o.MilliCPU
	r.Memory += o.Memory
	r.EphemeralStorage += o.EphemeralStorage
	r.AllowedPodNumber += o.AllowedPodNumber
	for k, v := range o.Scalar {
		if r.Scalar == nil {
			r.Scalar = map[corev1.ResourceName]int64{}
		}
		r.Scalar[k] += v
	}
}

// SubResource subtracts o from r.
func (r *Resource) SubResource(o *Resource) {
	r.MilliCPU -= o.MilliCPU
	r.Memory -= o.Memory
	r.EphemeralStorage -= o.EphemeralStorage
	r.AllowedPodNumber -= o.AllowedPodNumber
	for k, v := range o.Scalar {
		if r.Scalar != nil {
			r.Scalar[k] -= v
		}
	}
}

// maxWith raises each amount of r to at least o's.
func (r *Resource) maxWith(o *Resource) {
	r.MilliCPU = max(r.MilliCPU, o.MilliCPU)
	r.Memory = max(r.Memory, o.Memory)
	r.EphemeralStorage = max(r.EphemeralStorage, o.EphemeralStorage)
	for k, v := range o.Scalar {
		if r.Scalar == nil {
			r.Scalar = map[corev1.ResourceName]int64{}
		}
		r.Scalar[k] = max(r.Scalar[k], v)
	}
}

// Clone deep-copies r.
func (r *Resource) Clone() *Resource {
	c := *r
	if r.Scalar != nil {
		c.Scalar = make(map[corev1.ResourceName]int64, len(r.Scalar))
		for k, v := range r.Scalar {
			c.Scalar[k] = v
		}
	}
	return &c
}

// Get returns the amount of one resource by name.
func (r *Resource) Get(name corev1.ResourceName) int64 {
	switch name {
	case corev1.ResourceCPU:
		return r.MilliCPU
	case corev1.ResourceMemory:
		return r.Memory
	case corev1.ResourceEphemeralStorage:
		return r.EphemeralStorage
	case corev1.ResourcePods:
		return r.AllowedPodNumber
	}
	return r.Scalar[name]
}

// PodRequests computes what a pod asks of a node, as upstream: the sum of
// its containers, raised to what any init container needs while it runs
// (sidecar init containers, restartPolicy Always, keep running and so add
// to everything after them), plus the pod overhead. Pod-level requests
// (spec.resources), when set, replace the container sum for CPU and
// memory. nonZero substitutes the scoring defaults for a container that
// requests no CPU or memory.
func PodRequests(pod *corev1.Pod, nonZero bool) *Resource {
	containerReq := func(c *corev1.Container) *Resource {
		r := NewResource(c.Resources.Requests)
		if nonZero {
			if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok || r.MilliCPU == 0 {
				r.MilliCPU = DefaultMilliCPURequest
			}
			if _, ok := c.Resources.Requests[corev1.ResourceMemory]; !ok || r.Memory == 0 {
				r.Memory = DefaultMemoryRequest
			}
		}
		return r
	}
	reqs := &Resource{}
	for i := range pod.Spec.Containers {
		reqs.AddResource(containerReq(&pod.Spec.Containers[i]))
	}
	sidecars := &Resource{}
	initMax := &Resource{}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		r := containerReq(c)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			reqs.AddResource(r)
			sidecars.AddResource(r)
			initMax.maxWith(sidecars)
			continue
		}
		r.AddResource(sidecars)
		initMax.maxWith(r)
	}
	reqs.maxWith(initMax)
	if pr := pod.Spec.Resources; pr != nil && len(pr.Requests) > 0 {
		p := NewResource(pr.Requests)
		if _, ok := pr.Requests[corev1.ResourceCPU]; ok {
			reqs.MilliCPU = p.MilliCPU
		}
		if _, ok := pr.Requests[corev1.ResourceMemory]; ok {
			reqs.Memory = p.Memory
		}
	}
	if pod.Spec.Overhead != nil {
		reqs.Add(pod.Spec.Overhead)
	}
	return reqs
}
