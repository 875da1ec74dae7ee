package framework

import (
	"strings"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// generation orders NodeInfo changes process-wide, so a snapshot can tell
// which nodes changed since it was last updated.
var generation atomic.Int64

func nextGeneration() int64 { return generation.Add(1) }

// NodeInfo is the scheduler's view of one node: the Node object and what
// the pods on it (bound or assumed) use.
type NodeInfo struct {
	node *corev1.Node
	// Pods on the node, including assumed ones.
	Pods []*PodInfo
	// PodsWithAffinity and PodsWithRequiredAntiAffinity index Pods for
	// the InterPodAffinity plugin.
	PodsWithAffinity             []*PodInfo
	PodsWithRequiredAntiAffinity []*PodInfo
	// UsedPorts are the host ports taken.
	UsedPorts HostPortInfo
	// Requested sums the pods' requests; NonZeroRequested the same with
	// the scoring defaults.
	Requested, NonZeroRequested *Resource
	// Allocatable is the node's status.allocatable.
	Allocatable *Resource
	// ImageStates are the node's images, normalised name → summary.
	ImageStates map[string]*ImageStateSummary
	// Generation increases on every change, so snapshots copy only what
	// changed.
	Generation int64
}

// ImageStateSummary is an image's size and on how many nodes it is, for
// ImageLocality: images present on many nodes count for less.
type ImageStateSummary struct {
	Size     int64
	NumNodes int
}

// NewNodeInfo makes a NodeInfo holding pods.
func NewNodeInfo(pods ...*corev1.Pod) *NodeInfo {
	ni := &NodeInfo{Requested: &Resource{}, NonZeroRequested: &Resource{}, Allocatable: &Resource{}, UsedPorts: HostPortInfo{}, ImageStates: map[string]*ImageStateSummary{}}
	for _, p := range pods {
		ni.AddPod(p)
	}
	return ni
}

// Node returns the Node object; nil for a node deleted while pods remain.
func (n *NodeInfo) Node() *corev1.Node {
	if n == nil {
		return nil
	}
	return n.node
}

// SetNode sets the Node object and its allocatable.
func (n *NodeInfo) SetNode(node *corev1.Node) {
	n.node = node
	n.Allocatable = NewResource(node.Status.Allocatable)
	n.Generation = nextGeneration()
}

// RemoveNode forgets the Node object, keeping the pods.
func (n *NodeInfo) RemoveNode() {
	n.node = nil
	n.Generation = nextGeneration()
}

// AddPod adds a pod to the node.
func (n *NodeInfo) AddPod(pod *corev1.Pod) { n.AddPodInfo(NewPodInfo(pod)) }

// AddPodInfo adds a parsed pod to the node.
func (n *NodeInfo) AddPodInfo(pi *PodInfo) {
	n.Pods = append(n.Pods, pi)
	if pi.HasAffinity() {
		n.PodsWithAffinity = append(n.PodsWithAffinity, pi)
	}
	if len(pi.RequiredAntiAffinityTerms) > 0 {
		n.PodsWithRequiredAntiAffinity = append(n.PodsWithRequiredAntiAffinity, pi)
	}
	n.update(pi, 1)
}

// RemovePod removes the pod with pod's UID; it reports whether it was there.
func (n *NodeInfo) RemovePod(pod *corev1.Pod) bool {
	uid := pod.UID
	n.PodsWithAffinity = removeByUID(n.PodsWithAffinity, uid)
	n.PodsWithRequiredAntiAffinity = removeByUID(n.PodsWithRequiredAntiAffinity, uid)
	for i, pi := range n.Pods {
		if pi.Pod.UID == uid {
			n.Pods[i] = n.Pods[len(n.Pods)-1]
			n.Pods[len(n.Pods)-1] = nil
			n.Pods = n.Pods[:len(n.Pods)-1]
			n.update(pi, -1)
			return true
		}
	}
	return false
}

func removeByUID(list []*PodInfo, uid types.UID) []*PodInfo {
	for i, pi := range list {
		if pi.Pod.UID == uid {
			list[i] = list[len(list)-1]
			list[len(list)-1] = nil
			return list[:len(list)-1]
		}
	}
	return list
}

func (n *NodeInfo) update(pi *PodInfo, sign int64) {
	if sign > 0 {
		n.Requested.AddResource(pi.Requests)
		n.NonZeroRequested.MilliCPU += pi.NonZero.MilliCPU
		n.NonZeroRequested.Memory += pi.NonZero.Memory
	} else {
		n.Requested.SubResource(pi.Requests)
		n.NonZeroRequested.MilliCPU -= pi.NonZero.MilliCPU
		n.NonZeroRequested.Memory -= pi.NonZero.Memory
	}
	for _, c := range pi.Pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort <= 0 {
				continue
			}
			if sign > 0 {
				n.UsedPorts.Add(p.HostIP, string(p.Protocol), p.HostPort)
			} else {
				n.UsedPorts.Remove(p.HostIP, string(p.Protocol), p.HostPort)
			}
		}
	}
	n.Generation = nextGeneration()
}

// Clone copies the NodeInfo so that the copy can change independently; the
// pods themselves are shared and never modified.
func (n *NodeInfo) Clone() *NodeInfo {
	c := &NodeInfo{
		node:                         n.node,
		Pods:                         append([]*PodInfo(nil), n.Pods...),
		PodsWithAffinity:             append([]*PodInfo(nil), n.PodsWithAffinity...),
		PodsWithRequiredAntiAffinity: append([]*PodInfo(nil), n.PodsWithRequiredAntiAffinity...),
		UsedPorts:                    n.UsedPorts.Clone(),
		Requested:                    n.Requested.Clone(),
		NonZeroRequested:             n.NonZeroRequested.Clone(),
		Allocatable:                  n.Allocatable.Clone(),
		ImageStates:                  n.ImageStates,
		Generation:                   n.Generation,
	}
	return c
}

// NormalizeImageName adds the ":latest" tag to an image without tag or
// digest, as node status lists images with one.
func NormalizeImageName(name string) string {
	if strings.Contains(name, "@") {
		return name
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		return name
	}
	return name + ":latest"
}

// HostPortInfo records used host ports: IP → "protocol/port".
type HostPortInfo map[string]map[protocolPort]struct{}

type protocolPort struct {
	protocol string
	port     int32
}

const anyIP = "0.0.0.0"

func sanitize(ip, protocol string) (string, string) {
	if ip == "" {
		ip = anyIP
	}
	if protocol == "" {
		protocol = string(corev1.ProtocolTCP)
	}
	return ip, protocol
}

// Add records a used port.
func (h HostPortInfo) Add(ip, protocol string, port int32) {
	ip, protocol = sanitize(ip, protocol)
	if h[ip] == nil {
		h[ip] = map[protocolPort]struct{}{}
	}
	h[ip][protocolPort{protocol, port}] = struct{}{}
}

// Remove forgets a used port.
func (h HostPortInfo) Remove(ip, protocol string, port int32) {
	ip, protocol = sanitize(ip, protocol)
	if m := h[ip]; m != nil {
		delete(m, protocolPort{protocol, port})
		if len(m) == 0 {
			delete(h, ip)
		}
	}
}

// CheckConflict reports whether the port is taken: 0.0.0.0 conflicts with
// every address on the same protocol and port.
func (h HostPortInfo) CheckConflict(ip, protocol string, port int32) bool {
	if port <= 0 {
		return false
	}
	ip, protocol = sanitize(ip, protocol)
	pp := protocolPort{protocol, port}
	if ip == anyIP {
		for _, m := range h {
			if _, ok := m[pp]; ok {
				return true
			}
		}
		return false
	}
	for _, key := range []string{ip, anyIP} {
		if _, ok := h[key][pp]; ok {
			return true
		}
	}
	return false
}

// Clone copies the port map.
func (h HostPortInfo) Clone() HostPortInfo {
	c := make(HostPortInfo, len(h))
	for ip, m := range h {
		cm := make(map[protocolPort]struct{}, len(m))
		for k := range m {
			cm[k] = struct{}{}
		}
		c[ip] = cm
	}
	return c
}
