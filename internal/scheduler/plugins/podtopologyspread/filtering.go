package podtopologyspread

import (
	"context"
	"maps"
	"math"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
)

const filterKey framework.StateKey = "PreFilter" + Name

type pair struct{ key, value string }

// preFilterState holds the matching pods per domain for each DoNotSchedule
// constraint, and per key the domain count and minimum.
type preFilterState struct {
	constraints []constraint
	matchNum    map[pair]int64
	// self[i] is 1 when constraint i's selector matches the incoming pod.
	self []int64
	// mins holds per key the least loaded domain's count and the number
	// of domains, kept current by AddPod/RemovePod so that Filter, run
	// on thousands of nodes, does not scan every domain each time.
	mins map[string]minCount
}

type minCount struct {
	lo      int64
	domains int
}

func (s *preFilterState) Clone() framework.StateData {
	return &preFilterState{constraints: s.constraints, matchNum: maps.Clone(s.matchNum), self: s.self, mins: maps.Clone(s.mins)}
}

// computeMins recomputes the minimum of key (every key when empty).
func (s *preFilterState) computeMins(key string) {
	if s.mins == nil {
		s.mins = map[string]minCount{}
	}
	for i := range s.constraints {
		k := s.constraints[i].TopologyKey
		if key != "" && k != key {
			continue
		}
		s.mins[k] = s.minMatch(k)
	}
}

// bump changes one domain's count and keeps its key's minimum current,
// rescanning the domains only when the minimum itself may have risen.
func (s *preFilterState) bump(p pair, delta int64) {
	old, existed := s.matchNum[p]
	s.matchNum[p] = old + delta
	m := s.mins[p.key]
	switch {
	case existed && delta < 0:
		m.lo = min(m.lo, old+delta)
		s.mins[p.key] = m
	case existed && old > m.lo:
	default:
		s.computeMins(p.key)
	}
}

// minMatch returns the least loaded domain's count for key and how many
// domains the key has.
func (s *preFilterState) minMatch(key string) minCount {
	lo, n := int64(math.MaxInt64), 0
	for p, v := range s.matchNum {
		if p.key == key {
			lo = min(lo, v)
			n++
		}
	}
	if n == 0 {
		lo = 0
	}
	return minCount{lo, n}
}

// Spread is the plugin.
type Spread struct {
	h framework.Handle
}

var (
	_ framework.PreFilterPlugin     = (*Spread)(nil)
	_ framework.PreFilterExtensions = (*Spread)(nil)
	_ framework.FilterPlugin        = (*Spread)(nil)
	_ framework.PreScorePlugin      = (*Spread)(nil)
	_ framework.ScorePlugin         = (*Spread)(nil)
	_ framework.EnqueueExtensions   = (*Spread)(nil)
)

// New builds the plugin.
func New(_ any, h framework.Handle) (framework.Plugin, error) { return &Spread{h: h}, nil }

// Name implements framework.Plugin.
func (*Spread) Name() string { return Name }

// PreFilter counts matching pods in every eligible domain.
func (p *Spread) PreFilter(_ context.Context, state *framework.CycleState, pod *corev1.Pod) (*framework.PreFilterResult, *framework.Status) {
	cs, err := constraints(pod, corev1.DoNotSchedule)
	if err != nil {
		return nil, framework.NewStatus(framework.UnschedulableAndUnresolvable, err.Error())
	}
	if len(cs) == 0 {
		return nil, framework.NewStatus(framework.Skip)
	}
	s := &preFilterState{constraints: cs, matchNum: map[pair]int64{}, self: make([]int64, len(cs))}
	for i := range cs {
		if cs[i].Selector.Matches(labels.Set(pod.Labels)) {
			s.self[i] = 1
		}
	}
	lister := p.h.SnapshotSharedLister()
	if !countFromIndex(lister, pod, cs, s.matchNum) {
		for _, ni := range lister.List() {
			node := ni.Node()
			if !hasAllKeys(node, cs) {
				continue
			}
			for i := range cs {
				c := &cs[i]
				if !c.nodeCounts(pod, node) {
					continue
				}
				s.matchNum[pair{c.TopologyKey, node.Labels[c.TopologyKey]}] += countMatching(ni.Pods, pod.Namespace, c.Selector)
			}
		}
	}
	s.computeMins("")
	state.Write(filterKey, s)
	return nil, nil
}

// PreFilterExtensions implements framework.PreFilterPlugin.
func (p *Spread) PreFilterExtensions() framework.PreFilterExtensions { return p }

// AddPod implements framework.PreFilterExtensions.
func (p *Spread) AddPod(_ context.Context, state *framework.CycleState, pod *corev1.Pod, add *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	p.update(state, pod, add.Pod, ni, 1)
	return nil
}

// RemovePod implements framework.PreFilterExtensions.
func (p *Spread) RemovePod(_ context.Context, state *framework.CycleState, pod *corev1.Pod, remove *framework.PodInfo, ni *framework.NodeInfo) *framework.Status {
	p.update(state, pod, remove.Pod, ni, -1)
	return nil
}

func (p *Spread) update(state *framework.CycleState, pod, other *corev1.Pod, ni *framework.NodeInfo, delta int64) {
	s, ok := state.Read(filterKey).(*preFilterState)
	node := ni.Node()
	if !ok || other.Namespace != pod.Namespace || !hasAllKeys(node, s.constraints) {
		return
	}
	for i := range s.constraints {
		c := &s.constraints[i]
		if c.nodeCounts(pod, node) && c.Selector.Matches(labels.Set(other.Labels)) {
			s.bump(pair{c.TopologyKey, node.Labels[c.TopologyKey]}, delta)
		}
	}
}

// Filter implements framework.FilterPlugin: the skew after placing the pod
// here, against the least loaded domain, must stay within maxSkew. With
// fewer domains than minDomains the minimum counts as zero, so pods go to
// new domains first.
func (p *Spread) Filter(_ context.Context, state *framework.CycleState, pod *corev1.Pod, ni *framework.NodeInfo) *framework.Status {
	s, ok := state.Read(filterKey).(*preFilterState)
	if !ok {
		return nil
	}
	node := ni.Node()
	for i := range s.constraints {
		c := &s.constraints[i]
		v, has := node.Labels[c.TopologyKey]
		if !has {
			return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonNodeLabelNotMatch)
		}
		m := s.mins[c.TopologyKey]
		lo := m.lo
		if int32(m.domains) < c.MinDomains {
			lo = 0
		}
		if s.matchNum[pair{c.TopologyKey, v}]+s.self[i]-lo > int64(c.MaxSkew) {
			return framework.NewStatus(framework.Unschedulable, ErrReasonConstraintsNotMatch)
		}
	}
	return nil
}

// EventsToRegister implements framework.EnqueueExtensions.
func (*Spread) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{
		{Resource: framework.AssignedPod, ActionType: framework.Add | framework.Delete | framework.UpdatePodLabel},
		{Resource: framework.Node, ActionType: framework.Add | framework.UpdateNodeLabel | framework.UpdateNodeTaint},
	}
}
