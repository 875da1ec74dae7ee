package interpodaffinity

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
)

const scoreKey framework.StateKey = "PreScore" + Name

// preScoreState sums term weights per topology domain.
type preScoreState struct {
	scores map[topologyPair]int64
	keys   map[string]struct{}
}

func (s *preScoreState) Clone() framework.StateData { return s }

// PreScore walks the pods that can matter: all of them when the incoming
// pod has preferred terms, else only those with affinity terms of their
// own (which may select the incoming pod).
func (p *InterPodAffinity) PreScore(_ context.Context, state *framework.CycleState, pod *corev1.Pod, _ []*framework.NodeInfo) *framework.Status {
	pi := framework.NewPodInfo(pod)
	lister := p.h.SnapshotSharedLister()
	own := len(pi.PreferredAffinityTerms)+len(pi.PreferredAntiAffinityTerms) > 0
	nodes := lister.HavePodsWithAffinityList()
	if own {
		nodes = lister.List()
	}
	if !own && len(nodes) == 0 {
		return framework.NewStatus(framework.Skip)
	}
	s := &preScoreState{scores: map[topologyPair]int64{}, keys: map[string]struct{}{}}
	incomingNS := p.h.NamespaceLabels(pod.Namespace)
	nsCache := map[string]labels.Set{}
	add := func(node *corev1.Node, key string, w int64) {
		if v, ok := node.Labels[key]; ok && w != 0 {
			s.scores[topologyPair{key, v}] += w
			s.keys[key] = struct{}{}
		}
	}
	for _, ni := range nodes {
		node := ni.Node()
		list := ni.PodsWithAffinity
		if own {
			list = ni.Pods
		}
		for _, existing := range list {
			ns, ok := nsCache[existing.Pod.Namespace]
			if !ok {
				ns = p.h.NamespaceLabels(existing.Pod.Namespace)
				nsCache[existing.Pod.Namespace] = ns
			}
			for _, t := range pi.PreferredAffinityTerms {
				if t.Matches(existing.Pod, ns) {
					add(node, t.TopologyKey, int64(t.Weight))
				}
			}
			for _, t := range pi.PreferredAntiAffinityTerms {
				if t.Matches(existing.Pod, ns) {
					add(node, t.TopologyKey, -int64(t.Weight))
				}
			}
			for _, t := range existing.RequiredAffinityTerms {
				if t.Matches(pod, incomingNS) {
					add(node, t.TopologyKey, p.hardWeight)
				}
			}
			for _, t := range existing.PreferredAffinityTerms {
				if t.Matches(pod, incomingNS) {
					add(node, t.TopologyKey, int64(t.Weight))
				}
			}
			for _, t := range existing.PreferredAntiAffinityTerms {
				if t.Matches(pod, incomingNS) {
					add(node, t.TopologyKey, -int64(t.Weight))
				}
			}
		}
	}
	if len(s.scores) == 0 {
		return framework.NewStatus(framework.Skip)
	}
	state.Write(scoreKey, s)
	return nil
}

// Score sums the weights of the domains the node belongs to.
func (p *InterPodAffinity) Score(_ context.Context, state *framework.CycleState, _ *corev1.Pod, ni *framework.NodeInfo) (int64, *framework.Status) {
	s, ok := state.Read(scoreKey).(*preScoreState)
	if !ok {
		return 0, nil
	}
	var total int64
	for k := range s.keys {
		if v, ok := ni.Node().Labels[k]; ok {
			total += s.scores[topologyPair{k, v}]
		}
	}
	return total, nil
}

// ScoreExtensions implements framework.ScorePlugin.
func (p *InterPodAffinity) ScoreExtensions() framework.ScoreExtensions { return p }

// NormalizeScore maps [min, max] onto [0, 100]; raw scores may be negative.
func (p *InterPodAffinity) NormalizeScore(_ context.Context, _ *framework.CycleState, _ *corev1.Pod, scores []framework.NodeScore) *framework.Status {
	if len(scores) == 0 {
		return nil
	}
	lo, hi := scores[0].Score, scores[0].Score
	for _, s := range scores {
		lo, hi = min(lo, s.Score), max(hi, s.Score)
	}
	for i := range scores {
		if hi > lo {
			scores[i].Score = framework.MaxNodeScore * (scores[i].Score - lo) / (hi - lo)
		} else {
			scores[i].Score = 0
		}
	}
	return nil
}
