// Package helper holds the matching rules several scheduler plugins share:
// node selector terms, taints and tolerations, and score normalisation.
package helper

import (
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
)

// MatchNodeSelector reports whether node's labels carry every key/value of
// a pod's spec.nodeSelector.
func MatchNodeSelector(sel map[string]string, node *corev1.Node) bool {
	for k, v := range sel {
		if got, ok := node.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// MatchNodeSelectorTerms reports whether node matches any of terms (terms
// are ORed; a term's expressions and fields are ANDed; an empty term
// matches nothing).
func MatchNodeSelectorTerms(node *corev1.Node, terms []corev1.NodeSelectorTerm) bool {
	for i := range terms {
		if MatchNodeSelectorTerm(node, &terms[i]) {
			return true
		}
	}
	return false
}

// MatchNodeSelectorTerm reports whether node matches one term.
func MatchNodeSelectorTerm(node *corev1.Node, t *corev1.NodeSelectorTerm) bool {
	if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
		return false
	}
	for _, r := range t.MatchExpressions {
		v, ok := node.Labels[r.Key]
		if !matchRequirement(r.Operator, v, ok, r.Values) {
			return false
		}
	}
	for _, r := range t.MatchFields {
		if r.Key != "metadata.name" {
			return false // the only field upstream supports
		}
		if !matchRequirement(r.Operator, node.Name, true, r.Values) {
			return false
		}
	}
	return true
}

func matchRequirement(op corev1.NodeSelectorOperator, v string, present bool, values []string) bool {
	switch op {
	case corev1.NodeSelectorOpIn:
		return present && slices.Contains(values, v)
	case corev1.NodeSelectorOpNotIn:
		return !present || !slices.Contains(values, v)
	case corev1.NodeSelectorOpExists:
		return present
	case corev1.NodeSelectorOpDoesNotExist:
		return !present
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if !present || len(values) != 1 {
			return false
		}
		have, err1 := strconv.ParseInt(v, 10, 64)
		want, err2 := strconv.ParseInt(values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if op == corev1.NodeSelectorOpGt {
			return have > want
		}
		return have < want
	}
	return false
}

// PodMatchesNodeSelectorAndAffinity applies nodeSelector and required
// node affinity, as NodeAffinity's filter does.
func PodMatchesNodeSelectorAndAffinity(pod *corev1.Pod, node *corev1.Node) bool {
	if !MatchNodeSelector(pod.Spec.NodeSelector, node) {
		return false
	}
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		return MatchNodeSelectorTerms(node, a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms)
	}
	return true
}

// Tolerates reports whether toleration t tolerates taint.
func Tolerates(t *corev1.Toleration, taint *corev1.Taint) bool {
	if t.Effect != "" && t.Effect != taint.Effect {
		return false
	}
	if t.Key != "" && t.Key != taint.Key {
		return false
	}
	switch t.Operator {
	case "", corev1.TolerationOpEqual:
		return t.Value == taint.Value
	case corev1.TolerationOpExists:
		return true
	}
	return false
}

// TolerationsTolerate reports whether any toleration tolerates taint.
func TolerationsTolerate(ts []corev1.Toleration, taint *corev1.Taint) bool {
	for i := range ts {
		if Tolerates(&ts[i], taint) {
			return true
		}
	}
	return false
}

// FindUntoleratedTaint returns the first taint with one of effects that
// no toleration tolerates.
func FindUntoleratedTaint(taints []corev1.Taint, ts []corev1.Toleration, effects ...corev1.TaintEffect) (*corev1.Taint, bool) {
	for i := range taints {
		if !slices.Contains(effects, taints[i].Effect) {
			continue
		}
		if !TolerationsTolerate(ts, &taints[i]) {
			return &taints[i], true
		}
	}
	return nil, false
}

// DefaultNormalizeScore scales scores so the highest becomes maxPriority;
// with reverse, the lowest raw score gets the highest result.
func DefaultNormalizeScore(maxPriority int64, reverse bool, scores []framework.NodeScore) {
	var highest int64
	for _, s := range scores {
		highest = max(highest, s.Score)
	}
	if highest == 0 {
		if reverse {
			for i := range scores {
				scores[i].Score = maxPriority
			}
		}
		return
	}
	for i := range scores {
		s := maxPriority * scores[i].Score / highest
		if reverse {
			s = maxPriority - s
		}
		scores[i].Score = s
	}
}
