// Package noderesourcesfit filters out nodes without room for a pod's
// requests (CPU, memory, ephemeral storage, pod count, extended
// resources) and scores nodes by how much would be left
// (LeastAllocated, the default, spreads) or used (MostAllocated packs).
package noderesourcesfit

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
)

// Name is the plugin's name.
const Name = "NodeResourcesFit"

// Scoring strategies.
const (
	LeastAllocated = "LeastAllocated"
	MostAllocated  = "MostAllocated"
)

// Args configure the plugin.
type Args struct {
	// ScoringStrategy is LeastAllocated (default) or MostAllocated.
	ScoringStrategy string
}

const stateKey framework.StateKey = "PreFilter" + Name

type preFilterState struct{ *framework.Resource }

func (s preFilterState) Clone() framework.StateData { return s }

// Fit is the plugin.
type Fit struct {
	most bool
}

var (
	_ framework.PreFilterPlugin   = (*Fit)(nil)
	_ framework.FilterPlugin      = (*Fit)(nil)
	_ framework.PreScorePlugin    = (*Fit)(nil)
	_ framework.ScorePlugin       = (*Fit)(nil)
	_ framework.EnqueueExtensions = (*Fit)(nil)
)

// New builds the plugin; args may be nil, Args or *Args.
func New(args any, _ framework.Handle) (framework.Plugin, error) {
	var a Args
	switch v := args.(type) {
	case nil:
	case Args:
		a = v
	case *Args:
		a = *v
	default:
		return nil, fmt.Errorf("want noderesourcesfit.Args, got %T", args)
	}
	switch a.ScoringStrategy {
	case "", LeastAllocated:
		return &Fit{}, nil
	case MostAllocated:
		return &Fit{most: true}, nil
	}
	return nil, fmt.Errorf("scoring strategy %q: want %s or %s", a.ScoringStrategy, LeastAllocated, MostAllocated)
}

// Name implements framework.Plugin.
func (*Fit) Name() string { return Name }

// PreFilter computes the pod's requests once.
func (*Fit) PreFilter(_ context.Context, state *framework.CycleState, pod *corev1.Pod) (*framework.PreFilterResult, *framework.Status) {
	state.Write(stateKey, preFilterState{framework.PodRequests(pod, false)})
	return nil, nil
}

// PreFilterExtensions implements framework.PreFilterPlugin.
func (*Fit) PreFilterExtensions() framework.PreFilterExtensions { return nil }

// Filter implements framework.FilterPlugin.
func (*Fit) Filter(_ context.Context, state *framework.CycleState, pod *corev1.Pod, ni *framework.NodeInfo) *framework.Status {
	s, ok := state.Read(stateKey).(preFilterState)
	if !ok {
		s = preFilterState{framework.PodRequests(pod, false)}
	}
	return Fits(s.Resource, ni)
}

// Fits checks req against the node's free room and reports every resource
// that is short, as upstream does. When a request exceeds the node's whole
// allocatable, no preemption can help and the code says so.
func Fits(req *framework.Resource, ni *framework.NodeInfo) *framework.Status {
	a, u := ni.Allocatable, ni.Requested
	// The common case, checked without allocating: this runs for every
	// node of every attempt.
	if int64(len(ni.Pods))+1 <= a.AllowedPodNumber && req.MilliCPU <= a.MilliCPU-u.MilliCPU &&
		req.Memory <= a.Memory-u.Memory && req.EphemeralStorage <= a.EphemeralStorage-u.EphemeralStorage && len(req.Scalar) == 0 {
		return nil
	}
	var reasons []string
	unresolvable := false
	short := func(name string, want, alloc, used int64) {
		if want > 0 && want > alloc-used {
			reasons = append(reasons, "Insufficient "+name)
			if want > alloc {
				unresolvable = true
			}
		}
	}
	if int64(len(ni.Pods))+1 > ni.Allocatable.AllowedPodNumber {
		reasons = append(reasons, "Too many pods")
	}
	short(string(corev1.ResourceCPU), req.MilliCPU, a.MilliCPU, u.MilliCPU)
	short(string(corev1.ResourceMemory), req.Memory, a.Memory, u.Memory)
	short(string(corev1.ResourceEphemeralStorage), req.EphemeralStorage, a.EphemeralStorage, u.EphemeralStorage)
	for name, want := range req.Scalar {
		short(string(name), want, a.Scalar[name], u.Scalar[name])
	}
	if len(reasons) == 0 {
		return nil
	}
	code := framework.Unschedulable
	if unresolvable {
		code = framework.UnschedulableAndUnresolvable
	}
	return framework.NewStatus(code, reasons...)
}

const scoreKey framework.StateKey = "PreScore" + Name

// PreScore computes the pod's requests as scoring counts them once.
func (*Fit) PreScore(_ context.Context, state *framework.CycleState, pod *corev1.Pod, _ []*framework.NodeInfo) *framework.Status {
	state.Write(scoreKey, preFilterState{framework.PodRequests(pod, true)})
	return nil
}

// Score rates CPU and memory, equally weighted, counting request-less
// containers at the defaults so that they spread too.
func (f *Fit) Score(_ context.Context, state *framework.CycleState, pod *corev1.Pod, ni *framework.NodeInfo) (int64, *framework.Status) {
	s, ok := state.Read(scoreKey).(preFilterState)
	if !ok {
		s = preFilterState{framework.PodRequests(pod, true)}
	}
	req := s.Resource
	score := func(alloc, used int64) int64 {
		if alloc == 0 {
			return 0
		}
		if used > alloc {
			if f.most {
				return framework.MaxNodeScore
			}
			return 0
		}
		if f.most {
			return used * framework.MaxNodeScore / alloc
		}
		return (alloc - used) * framework.MaxNodeScore / alloc
	}
	a, u := ni.Allocatable, ni.NonZeroRequested
	cpu := score(a.MilliCPU, u.MilliCPU+req.MilliCPU)
	mem := score(a.Memory, u.Memory+req.Memory)
	return (cpu + mem) / 2, nil
}

// ScoreExtensions implements framework.ScorePlugin.
func (*Fit) ScoreExtensions() framework.ScoreExtensions { return nil }

// EventsToRegister implements framework.EnqueueExtensions: room appears
// when pods go or shrink, or nodes come or grow.
func (*Fit) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{
		{Resource: framework.AssignedPod, ActionType: framework.Delete | framework.UpdatePodRequest},
		{Resource: framework.Node, ActionType: framework.Add | framework.UpdateNodeAllocatable},
	}
}
