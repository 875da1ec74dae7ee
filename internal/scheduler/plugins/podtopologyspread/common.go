// Package podtopologyspread spreads a pod's group evenly over topology
// domains (nodes, zones): with whenUnsatisfiable DoNotSchedule a node is
// filtered out when placing the pod there would make its domain exceed
// the least loaded one by more than maxSkew; with ScheduleAnyway less
// loaded domains score higher.
package podtopologyspread

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/helper"
)

// Name is the plugin's name.
const Name = "PodTopologySpread"

// Upstream's reason texts.
const (
	ErrReasonConstraintsNotMatch = "node(s) didn't match pod topology spread constraints"
	ErrReasonNodeLabelNotMatch   = ErrReasonConstraintsNotMatch + " (missing required label)"
)

// constraint is a parsed TopologySpreadConstraint.
type constraint struct {
	MaxSkew      int32
	TopologyKey  string
	Selector     labels.Selector
	MinDomains   int32
	HonorAffnity bool // nodeAffinityPolicy Honor (default)
	HonorTaints  bool // nodeTaintsPolicy Honor (default Ignore)
}

// constraints parses the pod's constraints with the given action. As
// upstream, matchLabelKeys add the pod's own label values to the selector.
func constraints(pod *corev1.Pod, action corev1.UnsatisfiableConstraintAction) ([]constraint, error) {
	var out []constraint
	for _, c := range pod.Spec.TopologySpreadConstraints {
		if c.WhenUnsatisfiable != action {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(c.LabelSelector)
		if err != nil {
			return nil, fmt.Errorf("topologySpreadConstraints labelSelector: %w", err)
		}
		if c.LabelSelector == nil {
			sel = labels.Nothing()
		}
		for _, k := range c.MatchLabelKeys {
			if v, ok := pod.Labels[k]; ok {
				if r, err := labels.NewRequirement(k, "in", []string{v}); err == nil {
					sel = sel.Add(*r)
				}
			}
		}
		pc := constraint{MaxSkew: c.MaxSkew, TopologyKey: c.TopologyKey, Selector: sel, MinDomains: 1, HonorAffnity: true}
		if c.MinDomains != nil {
			pc.MinDomains = *c.MinDomains
		}
		if c.NodeAffinityPolicy != nil && *c.NodeAffinityPolicy == corev1.NodeInclusionPolicyIgnore {
			pc.HonorAffnity = false
		}
		if c.NodeTaintsPolicy != nil && *c.NodeTaintsPolicy == corev1.NodeInclusionPolicyHonor {
			pc.HonorTaints = true
		}
		out = append(out, pc)
	}
	return out, nil
}

// nodeCounts reports whether a node takes part in constraint c's domains
// for pod: it must pass the pod's node affinity and tolerate its taints
// when the policies say so.
func (c *constraint) nodeCounts(pod *corev1.Pod, node *corev1.Node) bool {
	if c.HonorAffnity && !helper.PodMatchesNodeSelectorAndAffinity(pod, node) {
		return false
	}
	if c.HonorTaints {
		if _, bad := helper.FindUntoleratedTaint(node.Spec.Taints, pod.Spec.Tolerations, corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute); bad {
			return false
		}
	}
	return true
}

// hasAllKeys reports whether node carries every constraint's key.
func hasAllKeys(node *corev1.Node, cs []constraint) bool {
	for i := range cs {
		if _, ok := node.Labels[cs[i].TopologyKey]; !ok {
			return false
		}
	}
	return true
}

// countMatching counts the pods on a node in ns that sel selects and that
// are not terminating (they are leaving the domain).
func countMatching(pods []*framework.PodInfo, ns string, sel labels.Selector) int64 {
	var n int64
	for _, pi := range pods {
		p := pi.Pod
		if p.Namespace == ns && p.DeletionTimestamp == nil && sel.Matches(labels.Set(p.Labels)) {
			n++
		}
	}
	return n
}

// countFromIndex fills matchNum from the snapshot's pod index instead of
// walking every node. It applies when every listed node takes part in
// every constraint's domains (the pod has no node selector or required
// affinity to honour, no taint policy, and every node carries every key)
// and reports whether it did; otherwise the caller walks the nodes.
func countFromIndex(lister framework.SharedLister, pod *corev1.Pod, cs []constraint, matchNum map[pair]int64) bool {
	total := len(lister.List())
	pinned := len(pod.Spec.NodeSelector) > 0 || (pod.Spec.Affinity != nil && pod.Spec.Affinity.NodeAffinity != nil &&
		pod.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil)
	for i := range cs {
		if cs[i].HonorTaints || (cs[i].HonorAffnity && pinned) || lister.LabelValues(cs[i].TopologyKey).Nodes != total {
			return false
		}
	}
	// Every domain exists, empty ones included: they are the minimum.
	for i := range cs {
		for v := range lister.LabelValues(cs[i].TopologyKey).Values {
			matchNum[pair{cs[i].TopologyKey, v}] += 0
		}
	}
	for _, po := range lister.PodsInNamespace(pod.Namespace) {
		p := po.Pod.Pod
		if p.DeletionTimestamp != nil {
			continue
		}
		set := labels.Set(p.Labels)
		for i := range cs {
			if cs[i].Selector.Matches(set) {
				matchNum[pair{cs[i].TopologyKey, po.Node.Node().Labels[cs[i].TopologyKey]}]++
			}
		}
	}
	return true
}
