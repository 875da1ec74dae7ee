// Package interpodaffinity places pods relative to other pods: required
// affinity puts a pod in a topology domain (node, zone) that already runs
// pods matching a selector, required anti-affinity keeps it out of such
// domains, and existing pods' anti-affinity keeps matching newcomers away
// from them. Preferred terms are scored.
package interpodaffinity

import (
	"context"
	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
)

// Name is the plugin's name.
const Name = "InterPodAffinity"

// Upstream's reason texts.
const (
	ErrReasonAffinity             = "node(s) didn't match pod affinity rules"
	ErrReasonAntiAffinity         = "node(s) didn't match pod anti-affinity rules"
	ErrReasonExistingAntiAffinity = "node(s) didn't satisfy existing pods anti-affinity rules"
)

// Args configure the plugin.
type Args struct {
	// HardPodAffinityWeight is the score an existing pod's required
	// affinity to the incoming pod is worth (upstream default 1).
	HardPodAffinityWeight int32
}

type topologyPair struct{ key, value string }

type counts map[topologyPair]int64

func (c counts) add(node *corev1.Node, key string, delta int64) {
	if v, ok := node.Labels[key]; ok {
		p := topologyPair{key, v}
		c[p] += delta
		if c[p] == 0 {
			delete(c, p)
		}
	}
}

const filterKey framework.StateKey = "PreFilter" + Name

// preFilterState counts, per topology domain, the pods that an incoming
// pod's terms select and the existing pods whose anti-affinity selects it.
type preFilterState struct {
	podInfo      *framework.PodInfo
	nsLabels     labels.Set
	existingAnti counts
	affinity     counts
	antiAffinity counts
}

func (s *preFilterState) Clone() framework.StateData {
	c := *s
	c.existingAnti, c.affinity, c.antiAffinity = maps.Clone(s.existingAnti), maps.Clone(s.affinity), maps.Clone(s.antiAffinity)
	return &c
}

// InterPodAffinity is the plugin.
type InterPodAffinity struct {
	h          framework.Handle
	hardWeight int64
}

var (
	_ framework.PreFilterPlugin     = (*InterPodAffinity)(nil)
	_ framework.PreFilterExtensions = (*InterPodAffinity)(nil)
	_ framework.FilterPlugin        = (*InterPodAffinity)(nil)
	_ framework.PreScorePlugin      = (*InterPodAffinity)(nil)
	_ framework.ScorePlugin         = (*InterPodAffinity)(nil)
	_ framework.EnqueueExtensions   = (*InterPodAffinity)(nil)
)

// New builds the plugin; args may be nil or Args.
func New(args any, h framework.Handle) (framework.Plugin, error) {
	p := &InterPodAffinity{h: h, hardWeight: 1}
	if a, ok := args.(Args); ok && a.HardPodAffinityWeight > 0 {
		p.hardWeight = int64(a.HardPodAffinityWeight)
	}
	return p, nil
}

// Name implements framework.Plugin.
func (*InterPodAffinity) Name() string { return Name }

// PreFilter counts, over the whole snapshot, what Filter checks per node.
func (p *InterPodAffinity) PreFilter(_ context.Context, state *framework.CycleState, pod *corev1.Pod) (*framework.PreFilterResult, *framework.Status) {
	pi := framework.NewPodInfo(pod)
	if pi.ParseError != nil {
		return nil, framework.NewStatus(framework.UnschedulableAndUnresolvable, pi.ParseError.Error())
	}
	lister := p.h.SnapshotSharedLister()
	withAnti := lister.HavePodsWithRequiredAntiAffinityList()
	if len(pi.RequiredAffinityTerms) == 0 && len(pi.RequiredAntiAffinityTerms) == 0 && len(withAnti) == 0 {
		return nil, framework.NewStatus(framework.Skip)
	}
	s := &preFilterState{podInfo: pi, nsLabels: p.h.NamespaceLabels(pod.Namespace), existingAnti: counts{}, affinity: counts{}, antiAffinity: counts{}}
	for _, ni := range withAnti {
		for _, existing := range ni.PodsWithRequiredAntiAffinity {
			s.existingAntiOf(existing, ni.Node(), 1)
		}
	}
	if len(pi.RequiredAffinityTerms) > 0 || len(pi.RequiredAntiAffinityTerms) > 0 {
		// Only pods in the namespaces the terms look at can match, and the
		// snapshot indexes pods by namespace: this walks those pods, not
		// every node.
		for _, ns := range termNamespaces(lister, pi) {
			nsLabels := p.h.NamespaceLabels(ns)
			for _, po := range lister.PodsInNamespace(ns) {
				s.incomingTermsOf(po.Pod.Pod, nsLabels, po.Node.Node(), 1)
			}
		}
	}
	state.Write(filterKey, s)
	return nil, nil
}

// termNamespaces lists the namespaces the pod's required terms can select
// pods in: all of them when a term has a namespaceSelector.
func termNamespaces(lister framework.SharedLister, pi *framework.PodInfo) []string {
	seen := map[string]struct{}{}
	for _, terms := range [][]framework.AffinityTerm{pi.RequiredAffinityTerms, pi.RequiredAntiAffinityTerms} {
		for i := range terms {
			if terms[i].NamespaceSelector != nil {
				return lister.Namespaces()
			}
			for ns := range terms[i].Namespaces {
				seen[ns] = struct{}{}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for ns := range seen {
		out = append(out, ns)
	}
	return out
}

// existingAntiOf counts the domains an existing pod's anti-affinity closes
// to the incoming pod.
func (s *preFilterState) existingAntiOf(existing *framework.PodInfo, node *corev1.Node, delta int64) {
	for i := range existing.RequiredAntiAffinityTerms {
		t := &existing.RequiredAntiAffinityTerms[i]
		if t.Matches(s.podInfo.Pod, s.nsLabels) {
			s.existingAnti.add(node, t.TopologyKey, delta)
		}
	}
}

// incomingTermsOf counts an existing pod against the incoming pod's terms:
// for affinity it must match every term (upstream's rule), for
// anti-affinity each matching term counts.
func (s *preFilterState) incomingTermsOf(existing *corev1.Pod, nsLabels labels.Set, node *corev1.Node, delta int64) {
	pi := s.podInfo
	if len(pi.RequiredAffinityTerms) > 0 {
		all := true
		for i := range pi.RequiredAffinityTerms {
			if !pi.RequiredAffinityTerms[i].Matches(existing, nsLabels) {
				all = false
				break
			}
		}
		if all {
			for i := range pi.RequiredAffinityTerms {
				s.affinity.add(node, pi.RequiredAffinityTerms[i].TopologyKey, delta)
			}
		}
	}
	for i := range pi.RequiredAntiAffinityTerms {
		t := &pi.RequiredAntiAffinityTerms[i]
		if t.Matches(existing, nsLabels) {
			s.antiAffinity.add(node, t.TopologyKey, delta)
		}
	}
}

// PreFilterExtensions implements framework.PreFilterPlugin.
func (p *InterPodAffinity) PreFilterExtensions() framework.PreFilterExtensions { return p }

// AddPod implements framework.PreFilterExtensions.
func (p *InterPodAffinity) AddPod(_ context.Context, state *framework.CycleState, _ *corev1.Pod, add *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	return p.update(state, add, ni, 1)
}

// RemovePod implements framework.PreFilterExtensions.
func (p *InterPodAffinity) RemovePod(_ context.Context, state *framework.CycleState, _ *corev1.Pod, remove *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	return p.update(state, remove, ni, -1)
}

func (p *InterPodAffinity) update(state *framework.CycleState, pi *framework.PodInfo, ni *framework.NodeInfo, delta int64) *framework.Status {
	s, ok := state.Read(filterKey).(*preFilterState)
	if !ok {
		return nil
	}
	s.existingAntiOf(pi, ni.Node(), delta)
	s.incomingTermsOf(pi.Pod, p.h.NamespaceLabels(pi.Pod.Namespace), ni.Node(), delta)
	return nil
}

// Filter implements framework.FilterPlugin.
func (p *InterPodAffinity) Filter(_ context.Context, state *framework.CycleState, _ *corev1.Pod, ni *framework.NodeInfo) *framework.Status {
	s, ok := state.Read(filterKey).(*preFilterState)
	if !ok {
		return nil
	}
	node := ni.Node()
	if len(s.existingAnti) > 0 {
		for k, v := range node.Labels {
			if s.existingAnti[topologyPair{k, v}] > 0 {
				return framework.NewStatus(framework.Unschedulable, ErrReasonExistingAntiAffinity)
			}
		}
	}
	for i := range s.podInfo.RequiredAntiAffinityTerms {
		k := s.podInfo.RequiredAntiAffinityTerms[i].TopologyKey
		if v, ok := node.Labels[k]; ok && s.antiAffinity[topologyPair{k, v}] > 0 {
			return framework.NewStatus(framework.Unschedulable, ErrReasonAntiAffinity)
		}
	}
	if !s.satisfiesAffinity(node) {
		return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonAffinity)
	}
	return nil
}

// satisfiesAffinity: every term's domain on this node must hold a match.
// The first pod of a group, whose terms select itself, may go anywhere
// while no pod anywhere matches, or a group could never start.
func (s *preFilterState) satisfiesAffinity(node *corev1.Node) bool {
	terms := s.podInfo.RequiredAffinityTerms
	if len(terms) == 0 {
		return true
	}
	ok := true
	for i := range terms {
		v, has := node.Labels[terms[i].TopologyKey]
		if !has || s.affinity[topologyPair{terms[i].TopologyKey, v}] <= 0 {
			ok = false
			break
		}
	}
	if ok {
		return true
	}
	if len(s.affinity) > 0 {
		return false
	}
	for i := range terms {
		if !terms[i].Matches(s.podInfo.Pod, s.nsLabels) {
			return false
		}
		if _, has := node.Labels[terms[i].TopologyKey]; !has {
			return false
		}
	}
	return true
}

// EventsToRegister implements framework.EnqueueExtensions.
func (*InterPodAffinity) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{
		{Resource: framework.AssignedPod, ActionType: framework.Add | framework.Delete | framework.UpdatePodLabel},
		{Resource: framework.Node, ActionType: framework.Add | framework.UpdateNodeLabel},
		{Resource: framework.Namespace, ActionType: framework.Add | framework.UpdateNamespaceLabel},
	}
}
