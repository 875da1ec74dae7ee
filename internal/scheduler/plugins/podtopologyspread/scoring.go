package podtopologyspread

import (
	"context"
	"math"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
)

const scoreKey framework.StateKey = "PreScore" + Name

type preScoreState struct {
	constraints []constraint
	matchNum    map[pair]int64
	// weight per constraint: log(domains+2), so constraints over many
	// domains weigh more, as upstream.
	weights []float64
}

func (s *preScoreState) Clone() framework.StateData { return s }

// PreScore counts matching pods per domain for the ScheduleAnyway
// constraints.
func (p *Spread) PreScore(_ context.Context, state *framework.CycleState, pod *corev1.Pod, _ []*framework.NodeInfo) *framework.Status {
	cs, err := constraints(pod, corev1.ScheduleAnyway)
	if err != nil {
		return framework.AsStatus(err)
	}
	if len(cs) == 0 {
		return framework.NewStatus(framework.Skip)
	}
	s := &preScoreState{constraints: cs, matchNum: map[pair]int64{}, weights: make([]float64, len(cs))}
	lister := p.h.SnapshotSharedLister()
	if !countFromIndex(lister, pod, cs, s.matchNum) {
		for _, ni := range lister.List() {
			node := ni.Node()
			if !hasAllKeys(node, cs) {
				continue
			}
			for i := range cs {
				c := &cs[i]
				if c.nodeCounts(pod, node) {
					s.matchNum[pair{c.TopologyKey, node.Labels[c.TopologyKey]}] += countMatching(ni.Pods, pod.Namespace, c.Selector)
				}
			}
		}
	}
	for i := range cs {
		domains := 0
		for k := range s.matchNum {
			if k.key == cs[i].TopologyKey {
				domains++
			}
		}
		s.weights[i] = math.Log(float64(domains + 2))
	}
	state.Write(scoreKey, s)
	return nil
}

// Score is the weighted count of matching pods in the node's domains
// (lower is better; NormalizeScore flips it).
func (p *Spread) Score(_ context.Context, state *framework.CycleState, _ *corev1.Pod, ni *framework.NodeInfo) (int64, *framework.Status) {
	s, ok := state.Read(scoreKey).(*preScoreState)
	if !ok {
		return 0, nil
	}
	node := ni.Node()
	if !hasAllKeys(node, s.constraints) {
		return -1, nil // marked; NormalizeScore gives it 0
	}
	var score float64
	for i := range s.constraints {
		c := &s.constraints[i]
		n := s.matchNum[pair{c.TopologyKey, node.Labels[c.TopologyKey]}]
		score += float64(n+int64(c.MaxSkew)-1) * s.weights[i]
	}
	return int64(math.Round(score)), nil
}

// ScoreExtensions implements framework.ScorePlugin.
func (p *Spread) ScoreExtensions() framework.ScoreExtensions { return p }

// NormalizeScore gives the least loaded nodes 100.
func (p *Spread) NormalizeScore(_ context.Context, _ *framework.CycleState, _ *corev1.Pod, scores []framework.NodeScore) *framework.Status {
	lo, hi := int64(math.MaxInt64), int64(0)
	for _, s := range scores {
		if s.Score < 0 {
			continue
		}
		lo, hi = min(lo, s.Score), max(hi, s.Score)
	}
	for i := range scores {
		switch {
		case scores[i].Score < 0:
			scores[i].Score = 0
		case hi == 0:
			scores[i].Score = framework.MaxNodeScore
		default:
			scores[i].Score = framework.MaxNodeScore * (hi + lo - scores[i].Score) / hi
		}
	}
	return nil
}
