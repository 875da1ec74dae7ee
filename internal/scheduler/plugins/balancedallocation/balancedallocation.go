// Package balancedallocation prefers nodes whose CPU and memory would be
// used in similar proportions after placing the pod, so that neither runs
// out while the other sits idle.
package balancedallocation

import (
	"context"
	"math"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
)

// Name is the plugin's name.
const Name = "NodeResourcesBalancedAllocation"

const stateKey framework.StateKey = "PreScore" + Name

type preScoreState struct{ req *framework.Resource }

func (s preScoreState) Clone() framework.StateData { return s }

// BalancedAllocation is the plugin.
type BalancedAllocation struct{}

var (
	_ framework.PreScorePlugin = (*BalancedAllocation)(nil)
	_ framework.ScorePlugin    = (*BalancedAllocation)(nil)
)

// New builds the plugin.
func New(_ any, _ framework.Handle) (framework.Plugin, error) { return &BalancedAllocation{}, nil }

// Name implements framework.Plugin.
func (*BalancedAllocation) Name() string { return Name }

// PreScore skips pods that request neither CPU nor memory, as upstream:
// they cannot unbalance anything.
func (*BalancedAllocation) PreScore(_ context.Context, state *framework.CycleState, pod *corev1.Pod, _ []*framework.NodeInfo) *framework.Status {
	req := framework.PodRequests(pod, false)
	if req.MilliCPU == 0 && req.Memory == 0 {
		return framework.NewStatus(framework.Skip)
	}
	state.Write(stateKey, preScoreState{req})
	return nil
}

// Score is 100 × (1 − the standard deviation of the CPU and memory
// fractions); with two resources that deviation is half their difference.
func (*BalancedAllocation) Score(_ context.Context, state *framework.CycleState, pod *corev1.Pod, ni *framework.NodeInfo) (int64, *framework.Status) {
	s, ok := state.Read(stateKey).(preScoreState)
	if !ok {
		s = preScoreState{framework.PodRequests(pod, false)}
	}
	frac := func(used, alloc int64) float64 {
		if alloc == 0 {
			return 0
		}
		return math.Min(float64(used)/float64(alloc), 1)
	}
	cpu := frac(ni.Requested.MilliCPU+s.req.MilliCPU, ni.Allocatable.MilliCPU)
	mem := frac(ni.Requested.Memory+s.req.Memory, ni.Allocatable.Memory)
	std := math.Abs(cpu-mem) / 2
	return int64((1 - std) * float64(framework.MaxNodeScore)), nil
}

// ScoreExtensions implements framework.ScorePlugin.
func (*BalancedAllocation) ScoreExtensions() framework.ScoreExtensions { return nil }
