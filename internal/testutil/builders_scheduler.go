package testutil

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// PodWrapper builds a Pod fixture by chaining:
// MakePod("web").Namespace("ns").Req("500m", "128Mi").Label("app", "web").Obj().
type PodWrapper struct{ corev1.Pod }

// MakePod starts a pod in "default" with one container "c" (image
// "pause"), the default scheduler and a UID derived from its name.
func MakePod(name string) *PodWrapper {
	return &PodWrapper{corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{
			SchedulerName: corev1.DefaultSchedulerName,
			Containers:    []corev1.Container{{Name: "c", Image: "pause"}},
		},
	}}
}

// Obj returns the pod.
func (p *PodWrapper) Obj() *corev1.Pod { return p.Pod.DeepCopy() }

// Namespace sets the namespace (and keeps the UID unique per namespace).
func (p *PodWrapper) Namespace(ns string) *PodWrapper {
	p.Pod.Namespace = ns
	p.Pod.UID = types.UID("uid-" + ns + "-" + p.Name)
	return p
}

// UID sets the UID.
func (p *PodWrapper) UID(uid string) *PodWrapper { p.Pod.UID = types.UID(uid); return p }

// Label adds a label.
func (p *PodWrapper) Label(k, v string) *PodWrapper {
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	p.Labels[k] = v
	return p
}

// Req sets the first container's CPU and memory requests ("" skips one).
func (p *PodWrapper) Req(cpu, mem string) *PodWrapper {
	return p.ReqList(corev1.ResourceList{}, cpu, mem)
}

// ReqList sets the first container's requests from rl plus cpu and mem.
func (p *PodWrapper) ReqList(rl corev1.ResourceList, cpu, mem string) *PodWrapper {
	c := &p.Spec.Containers[0]
	if c.Resources.Requests == nil {
		c.Resources.Requests = corev1.ResourceList{}
	}
	for k, v := range rl {
		c.Resources.Requests[k] = v
	}
	if cpu != "" {
		c.Resources.Requests[corev1.ResourceCPU] = resource.MustParse(cpu)
	}
	if mem != "" {
		c.Resources.Requests[corev1.ResourceMemory] = resource.MustParse(mem)
	}
	return p
}

// Container adds a container with CPU and memory requests.
func (p *PodWrapper) Container(image, cpu, mem string) *PodWrapper {
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", len(p.Spec.Containers)), Image: image, Resources: requests(cpu, mem)})
	return p
}

// InitContainer adds an init container; sidecar makes it restartable.
func (p *PodWrapper) InitContainer(cpu, mem string, sidecar bool) *PodWrapper {
	c := corev1.Container{Name: fmt.Sprintf("init%d", len(p.Spec.InitContainers)), Image: "init", Resources: requests(cpu, mem)}
	if sidecar {
		always := corev1.ContainerRestartPolicyAlways
		c.RestartPolicy = &always
	}
	p.Spec.InitContainers = append(p.Spec.InitContainers, c)
	return p
}

func requests(cpu, mem string) corev1.ResourceRequirements {
	rl := corev1.ResourceList{}
	if cpu != "" {
		rl[corev1.ResourceCPU] = resource.MustParse(cpu)
	}
	if mem != "" {
		rl[corev1.ResourceMemory] = resource.MustParse(mem)
	}
	return corev1.ResourceRequirements{Requests: rl}
}

// Overhead sets spec.overhead.
func (p *PodWrapper) Overhead(cpu, mem string) *PodWrapper {
	p.Spec.Overhead = requests(cpu, mem).Requests
	return p
}

// Image sets the first container's image.
func (p *PodWrapper) Image(image string) *PodWrapper { p.Spec.Containers[0].Image = image; return p }

// HostPort adds a host port on the first container.
func (p *PodWrapper) HostPort(port int32, protocol corev1.Protocol, hostIP string) *PodWrapper {
	c := &p.Spec.Containers[0]
	c.Ports = append(c.Ports, corev1.ContainerPort{ContainerPort: port, HostPort: port, Protocol: protocol, HostIP: hostIP})
	return p
}

// Node sets spec.nodeName (a bound pod).
func (p *PodWrapper) Node(name string) *PodWrapper { p.Spec.NodeName = name; return p }

// SchedulerName sets spec.schedulerName.
func (p *PodWrapper) SchedulerName(n string) *PodWrapper { p.Spec.SchedulerName = n; return p }

// NodeSelector adds a nodeSelector entry.
func (p *PodWrapper) NodeSelector(k, v string) *PodWrapper {
	if p.Spec.NodeSelector == nil {
		p.Spec.NodeSelector = map[string]string{}
	}
	p.Spec.NodeSelector[k] = v
	return p
}

// Toleration adds a toleration; op "" means Equal.
func (p *PodWrapper) Toleration(key string, op corev1.TolerationOperator, value string, effect corev1.TaintEffect) *PodWrapper {
	p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: key, Operator: op, Value: value, Effect: effect})
	return p
}

func (p *PodWrapper) affinity() *corev1.Affinity {
	if p.Spec.Affinity == nil {
		p.Spec.Affinity = &corev1.Affinity{}
	}
	return p.Spec.Affinity
}

// NodeAffinityIn adds a required node affinity term key In values (terms
// added by separate calls are ORed).
func (p *PodWrapper) NodeAffinityIn(key string, values ...string) *PodWrapper {
	return p.NodeAffinity(corev1.NodeSelectorRequirement{Key: key, Operator: corev1.NodeSelectorOpIn, Values: values})
}

// NodeAffinity adds a required node affinity term with the requirements.
func (p *PodWrapper) NodeAffinity(reqs ...corev1.NodeSelectorRequirement) *PodWrapper {
	a := p.affinity()
	if a.NodeAffinity == nil {
		a.NodeAffinity = &corev1.NodeAffinity{}
	}
	if a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{}
	}
	ns := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	ns.NodeSelectorTerms = append(ns.NodeSelectorTerms, corev1.NodeSelectorTerm{MatchExpressions: reqs})
	return p
}

// NodeAffinityFieldName requires metadata.name In names, ANDed into the
// last required term (a new term when there is none).
func (p *PodWrapper) NodeAffinityFieldName(names ...string) *PodWrapper {
	a := p.affinity()
	if a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil ||
		len(a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms) == 0 {
		p.NodeAffinity()
	}
	ns := p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	t := &ns.NodeSelectorTerms[len(ns.NodeSelectorTerms)-1]
	t.MatchFields = []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: names}}
	return p
}

// PreferredNodeAffinity adds a preferred node affinity term key In values.
func (p *PodWrapper) PreferredNodeAffinity(weight int32, key string, values ...string) *PodWrapper {
	a := p.affinity()
	if a.NodeAffinity == nil {
		a.NodeAffinity = &corev1.NodeAffinity{}
	}
	a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution = append(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution,
		corev1.PreferredSchedulingTerm{Weight: weight, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: corev1.NodeSelectorOpIn, Values: values}}}})
	return p
}

// PodAffinityTerm makes a term selecting label k=v over topologyKey.
func PodAffinityTerm(topologyKey, k, v string) corev1.PodAffinityTerm {
	return corev1.PodAffinityTerm{TopologyKey: topologyKey, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{k: v}}}
}

// PodAffinity adds required pod affinity terms.
func (p *PodWrapper) PodAffinity(terms ...corev1.PodAffinityTerm) *PodWrapper {
	a := p.affinity()
	if a.PodAffinity == nil {
		a.PodAffinity = &corev1.PodAffinity{}
	}
	a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution, terms...)
	return p
}

// PodAntiAffinity adds required pod anti-affinity terms.
func (p *PodWrapper) PodAntiAffinity(terms ...corev1.PodAffinityTerm) *PodWrapper {
	a := p.affinity()
	if a.PodAntiAffinity == nil {
		a.PodAntiAffinity = &corev1.PodAntiAffinity{}
	}
	a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution, terms...)
	return p
}

// PreferredPodAffinity adds a weighted pod affinity term.
func (p *PodWrapper) PreferredPodAffinity(weight int32, t corev1.PodAffinityTerm) *PodWrapper {
	a := p.affinity()
	if a.PodAffinity == nil {
		a.PodAffinity = &corev1.PodAffinity{}
	}
	a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution = append(a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution, corev1.WeightedPodAffinityTerm{Weight: weight, PodAffinityTerm: t})
	return p
}

// PreferredPodAntiAffinity adds a weighted pod anti-affinity term.
func (p *PodWrapper) PreferredPodAntiAffinity(weight int32, t corev1.PodAffinityTerm) *PodWrapper {
	a := p.affinity()
	if a.PodAntiAffinity == nil {
		a.PodAntiAffinity = &corev1.PodAntiAffinity{}
	}
	a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution = append(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution, corev1.WeightedPodAffinityTerm{Weight: weight, PodAffinityTerm: t})
	return p
}

// SpreadConstraint adds a topology spread constraint selecting k=v.
func (p *PodWrapper) SpreadConstraint(maxSkew int32, topologyKey string, when corev1.UnsatisfiableConstraintAction, k, v string, minDomains *int32) *PodWrapper {
	p.Spec.TopologySpreadConstraints = append(p.Spec.TopologySpreadConstraints, corev1.TopologySpreadConstraint{
		MaxSkew: maxSkew, TopologyKey: topologyKey, WhenUnsatisfiable: when, MinDomains: minDomains,
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{k: v}},
	})
	return p
}

// Priority sets spec.priority.
func (p *PodWrapper) Priority(n int32) *PodWrapper { p.Spec.Priority = &n; return p }

// PriorityClass sets spec.priorityClassName (admission fills priority).
func (p *PodWrapper) PriorityClass(name string) *PodWrapper {
	p.Spec.PriorityClassName = name
	return p
}

// PreemptNever sets preemptionPolicy Never.
func (p *PodWrapper) PreemptNever() *PodWrapper {
	never := corev1.PreemptNever
	p.Spec.PreemptionPolicy = &never
	return p
}

// GracePeriod sets terminationGracePeriodSeconds.
func (p *PodWrapper) GracePeriod(s int64) *PodWrapper {
	p.Spec.TerminationGracePeriodSeconds = &s
	return p
}

// NominatedNode sets status.nominatedNodeName.
func (p *PodWrapper) NominatedNode(n string) *PodWrapper { p.Status.NominatedNodeName = n; return p }

// NodeWrapper builds a Node fixture by chaining:
// MakeNode("n1").Capacity("4", "8Gi", 110).Label("zone", "a").Obj().
type NodeWrapper struct{ corev1.Node }

// MakeNode starts a node with label kubernetes.io/hostname=name and room
// for 110 pods, 4 CPUs and 8 GiB.
func MakeNode(name string) *NodeWrapper {
	w := &NodeWrapper{corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-node-" + name), Labels: map[string]string{corev1.LabelHostname: name}}}}
	return w.Capacity("4", "8Gi", 110)
}

// Obj returns the node.
func (n *NodeWrapper) Obj() *corev1.Node { return n.Node.DeepCopy() }

// Capacity sets capacity and allocatable CPU, memory and pods.
func (n *NodeWrapper) Capacity(cpu, mem string, pods int64) *NodeWrapper {
	rl := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
		corev1.ResourcePods: *resource.NewQuantity(pods, resource.DecimalSI), corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
	}
	n.Status.Capacity, n.Status.Allocatable = rl, rl.DeepCopy()
	return n
}

// Resource sets one more allocatable (and capacity) resource.
func (n *NodeWrapper) Resource(name corev1.ResourceName, q string) *NodeWrapper {
	n.Status.Capacity[name] = resource.MustParse(q)
	n.Status.Allocatable[name] = resource.MustParse(q)
	return n
}

// Label adds a label.
func (n *NodeWrapper) Label(k, v string) *NodeWrapper { n.Labels[k] = v; return n }

// Zone sets topology.kubernetes.io/zone.
func (n *NodeWrapper) Zone(z string) *NodeWrapper { return n.Label(corev1.LabelTopologyZone, z) }

// Taint adds a taint.
func (n *NodeWrapper) Taint(key, value string, effect corev1.TaintEffect) *NodeWrapper {
	n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: key, Value: value, Effect: effect})
	return n
}

// Unschedulable cordons the node.
func (n *NodeWrapper) Unschedulable() *NodeWrapper { n.Spec.Unschedulable = true; return n }

// Image lists an image on the node.
func (n *NodeWrapper) Image(name string, size int64) *NodeWrapper {
	n.Status.Images = append(n.Status.Images, corev1.ContainerImage{Names: []string{name}, SizeBytes: size})
	return n
}
