package cache

import (
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
)

// podIndex finds a snapshot's pods by namespace without walking every
// node: InterPodAffinity and PodTopologySpread count the pods a selector
// matches, and those are always within some namespaces, while the nodes
// are thousands. It holds only pods on nodes with a Node object, as the
// snapshot lists only those nodes.
type podIndex map[string]*nsPods

type nsPods struct {
	pods []framework.PodOnNode
	pos  map[types.UID]int
}

func (x podIndex) add(ni *framework.NodeInfo) {
	if ni == nil || ni.Node() == nil {
		return
	}
	for _, pi := range ni.Pods {
		ns := x[pi.Pod.Namespace]
		if ns == nil {
			ns = &nsPods{pos: map[types.UID]int{}}
			x[pi.Pod.Namespace] = ns
		}
		if i, ok := ns.pos[pi.Pod.UID]; ok {
			ns.pods[i] = framework.PodOnNode{Pod: pi, Node: ni}
			continue
		}
		ns.pos[pi.Pod.UID] = len(ns.pods)
		ns.pods = append(ns.pods, framework.PodOnNode{Pod: pi, Node: ni})
	}
}

// remove drops ni's pods, but only entries that still point at ni: a pod
// that moved to a node added back already is left alone.
func (x podIndex) remove(ni *framework.NodeInfo) {
	if ni == nil {
		return
	}
	for _, pi := range ni.Pods {
		ns := x[pi.Pod.Namespace]
		if ns == nil {
			continue
		}
		i, ok := ns.pos[pi.Pod.UID]
		if !ok || ns.pods[i].Node != ni {
			continue
		}
		last := len(ns.pods) - 1
		moved := ns.pods[last]
		ns.pods[i] = moved
		ns.pos[moved.Pod.Pod.UID] = i
		ns.pods[last] = framework.PodOnNode{}
		ns.pods = ns.pods[:last]
		delete(ns.pos, pi.Pod.UID)
		if len(ns.pods) == 0 {
			delete(x, pi.Pod.Namespace)
		}
	}
}

// PodsInNamespace implements framework.SharedLister.
func (s *Snapshot) PodsInNamespace(ns string) []framework.PodOnNode {
	if x := s.pods[ns]; x != nil {
		return x.pods
	}
	return nil
}

// Namespaces implements framework.SharedLister.
func (s *Snapshot) Namespaces() []string {
	out := make([]string, 0, len(s.pods))
	for ns := range s.pods {
		out = append(out, ns)
	}
	return out
}

// LabelValues implements framework.SharedLister. The counts are computed
// once per label key and kept until a node comes, goes or changes its
// Node object; assuming pods, the common change, keeps them.
func (s *Snapshot) LabelValues(key string) framework.LabelCount {
	if lc, ok := s.labels[key]; ok {
		return lc
	}
	lc := framework.LabelCount{Values: map[string]int{}}
	for _, ni := range s.list {
		if v, ok := ni.Node().Labels[key]; ok {
			lc.Values[v]++
			lc.Nodes++
		}
	}
	if s.labels == nil {
		s.labels = map[string]framework.LabelCount{}
	}
	s.labels[key] = lc
	return lc
}
