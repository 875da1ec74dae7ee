// Package nodeaffinity filters nodes by a pod's nodeSelector and required
// node affinity, and scores them by its preferred node affinity.
package nodeaffinity

import (
	"context"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/helper"
)

// Name is the plugin's name.
const Name = "NodeAffinity"

// ErrReason is upstream's reason text.
const ErrReason = "node(s) didn't match Pod's node affinity/selector"

// NodeAffinity is the plugin.
type NodeAffinity struct{}

var (
	_ framework.PreFilterPlugin   = (*NodeAffinity)(nil)
	_ framework.FilterPlugin      = (*NodeAffinity)(nil)
	_ framework.ScorePlugin       = (*NodeAffinity)(nil)
	_ framework.EnqueueExtensions = (*NodeAffinity)(nil)
)

// New builds the plugin.
func New(_ any, _ framework.Handle) (framework.Plugin, error) { return &NodeAffinity{}, nil }

// Name implements framework.Plugin.
func (*NodeAffinity) Name() string { return Name }

// PreFilter skips pods with neither selector nor required affinity, and
// narrows the nodes when the affinity names them by metadata.name, so a
// pod pinned to one node is not filtered against thousands.
func (*NodeAffinity) PreFilter(_ context.Context, _ *framework.CycleState, pod *corev1.Pod) (*framework.PreFilterResult, *framework.Status) {
	req := required(pod)
	if len(pod.Spec.NodeSelector) == 0 && req == nil {
		return nil, framework.NewStatus(framework.Skip)
	}
	if req == nil {
		return nil, nil
	}
	names := map[string]struct{}{}
	for _, t := range req.NodeSelectorTerms {
		only := false
		for _, f := range t.MatchFields {
			if f.Key == "metadata.name" && f.Operator == corev1.NodeSelectorOpIn {
				only = true
				for _, v := range f.Values {
					names[v] = struct{}{}
				}
			}
		}
		if !only {
			return nil, nil // some term may match any node
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	return &framework.PreFilterResult{NodeNames: names}, nil
}

func required(pod *corev1.Pod) *corev1.NodeSelector {
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil {
		return a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	}
	return nil
}

// PreFilterExtensions implements framework.PreFilterPlugin.
func (*NodeAffinity) PreFilterExtensions() framework.PreFilterExtensions { return nil }

// Filter implements framework.FilterPlugin.
func (*NodeAffinity) Filter(_ context.Context, _ *framework.CycleState, pod *corev1.Pod, ni *framework.NodeInfo) *framework.Status {
	if helper.PodMatchesNodeSelectorAndAffinity(pod, ni.Node()) {
		return nil
	}
	return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReason)
}

// Score sums the weights of the preferred terms the node matches.
func (*NodeAffinity) Score(_ context.Context, _ *framework.CycleState, pod *corev1.Pod, ni *framework.NodeInfo) (int64, *framework.Status) {
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil {
		return 0, nil
	}
	var score int64
	for i := range a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
		t := &a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution[i]
		if t.Weight != 0 && helper.MatchNodeSelectorTerm(ni.Node(), &t.Preference) {
			score += int64(t.Weight)
		}
	}
	return score, nil
}

// ScoreExtensions implements framework.ScorePlugin.
func (p *NodeAffinity) ScoreExtensions() framework.ScoreExtensions { return p }

// NormalizeScore scales the best node to 100.
func (*NodeAffinity) NormalizeScore(_ context.Context, _ *framework.CycleState, _ *corev1.Pod, scores []framework.NodeScore) *framework.Status {
	helper.DefaultNormalizeScore(framework.MaxNodeScore, false, scores)
	return nil
}

// EventsToRegister implements framework.EnqueueExtensions.
func (*NodeAffinity) EventsToRegister() []framework.ClusterEvent {
	return []framework.ClusterEvent{{Resource: framework.Node, ActionType: framework.Add | framework.UpdateNodeLabel}}
}
