package daemonset

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// nodeNameField is the only field node affinity's matchFields supports.
const nodeNameField = "metadata.name"

// placement says what a DaemonSet may do on a node.
type placement struct {
	// run: a new daemon pod may be placed here.
	run bool
	// keep: an existing daemon pod may stay. A NoSchedule taint added
	// after the pod started does not evict it; only NoExecute does.
	keep bool
}

// place decides where a DaemonSet's pods belong: the node must match the
// template's nodeSelector and required node affinity, and the pod (with
// the default daemon tolerations) must tolerate the node's taints.
func place(ds *appsv1.DaemonSet, node *corev1.Node) placement {
	spec := &ds.Spec.Template.Spec
	if node.DeletionTimestamp != nil || !matchesNode(spec, node) {
		return placement{}
	}
	tols := withDaemonTolerations(spec.Tolerations, spec.HostNetwork)
	p := placement{run: true, keep: true}
	for i := range node.Spec.Taints {
		t := &node.Spec.Taints[i]
		if t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		if tolerated(tols, t) {
			continue
		}
		p.run = false
		if t.Effect == corev1.TaintEffectNoExecute {
			p.keep = false
		}
	}
	return p
}

// matchesNode applies the pod's nodeSelector and required node affinity.
func matchesNode(spec *corev1.PodSpec, node *corev1.Node) bool {
	if len(spec.NodeSelector) > 0 && !labels.SelectorFromSet(spec.NodeSelector).Matches(labels.Set(node.Labels)) {
		return false
	}
	if a := spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		return matchesNodeSelector(a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution, node)
	}
	return true
}

// matchesNodeSelector: terms are ORed, the requirements of a term ANDed,
// and a term with no requirements matches nothing, as upstream defines.
func matchesNodeSelector(ns *corev1.NodeSelector, node *corev1.Node) bool {
	for _, term := range ns.NodeSelectorTerms {
		if len(term.MatchExpressions) == 0 && len(term.MatchFields) == 0 {
			continue
		}
		if matchesRequirements(term.MatchExpressions, labels.Set(node.Labels)) &&
			matchesRequirements(term.MatchFields, labels.Set{nodeNameField: node.Name}) {
			return true
		}
	}
	return false
}

func matchesRequirements(reqs []corev1.NodeSelectorRequirement, set labels.Set) bool {
	for _, r := range reqs {
		if !matchesRequirement(r, set) {
			return false
		}
	}
	return true
}

func matchesRequirement(r corev1.NodeSelectorRequirement, set labels.Set) bool {
	v, has := set[r.Key]
	switch r.Operator {
	case corev1.NodeSelectorOpIn:
		return has && contains(r.Values, v)
	case corev1.NodeSelectorOpNotIn:
		return !has || !contains(r.Values, v)
	case corev1.NodeSelectorOpExists:
		return has
	case corev1.NodeSelectorOpDoesNotExist:
		return !has
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if !has || len(r.Values) != 1 {
			return false
		}
		got, err1 := strconv.ParseInt(v, 10, 64)
		want, err2 := strconv.ParseInt(r.Values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if r.Operator == corev1.NodeSelectorOpGt {
			return got > want
		}
		return got < want
	}
	return false
}

func contains(vals []string, v string) bool {
	for _, x := range vals {
		if x == v {
			return true
		}
	}
	return false
}

// tolerated says whether any toleration matches the taint.
func tolerated(tols []corev1.Toleration, t *corev1.Taint) bool {
	for _, tol := range tols {
		if tol.Effect != "" && tol.Effect != t.Effect {
			continue
		}
		switch tol.Operator {
		case corev1.TolerationOpExists:
			if tol.Key == "" || tol.Key == t.Key {
				return true
			}
		case corev1.TolerationOpEqual, "":
			if tol.Key == t.Key && tol.Value == t.Value {
				return true
			}
		}
	}
	return false
}

// withDaemonTolerations adds the tolerations upstream gives every daemon
// pod, so node conditions that keep ordinary pods away (not ready,
// pressure, cordoned) do not take a node's daemons with them.
func withDaemonTolerations(tols []corev1.Toleration, hostNetwork bool) []corev1.Toleration {
	out := append([]corev1.Toleration(nil), tols...)
	add := func(key string, effect corev1.TaintEffect) {
		want := corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: effect}
		for _, t := range out {
			if t.Key == key && t.Effect == effect && t.Operator == corev1.TolerationOpExists && t.TolerationSeconds == nil {
				return
			}
		}
		out = append(out, want)
	}
	add(corev1.TaintNodeNotReady, corev1.TaintEffectNoExecute)
	add(corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute)
	add(corev1.TaintNodeDiskPressure, corev1.TaintEffectNoSchedule)
	add(corev1.TaintNodeMemoryPressure, corev1.TaintEffectNoSchedule)
	add(corev1.TaintNodePIDPressure, corev1.TaintEffectNoSchedule)
	add(corev1.TaintNodeUnschedulable, corev1.TaintEffectNoSchedule)
	if hostNetwork {
		add(corev1.TaintNodeNetworkUnavailable, corev1.TaintEffectNoSchedule)
	}
	return out
}

// targetNode is the node a daemon pod is for: its nodeName once bound,
// before that the node its matchFields affinity names.
func targetNode(pod *corev1.Pod) string {
	if pod.Spec.NodeName != "" {
		return pod.Spec.NodeName
	}
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return ""
	}
	for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		for _, f := range term.MatchFields {
			if f.Key == nodeNameField && f.Operator == corev1.NodeSelectorOpIn && len(f.Values) == 1 {
				return f.Values[0]
			}
		}
	}
	return ""
}

// pinToNode replaces the pod's required node affinity with one selecting
// only node, by name, so the scheduler places the pod there (upstream's
// way since daemon pods stopped bypassing the scheduler). The controller
// has already checked that node satisfies the original affinity.
func pinToNode(spec *corev1.PodSpec, node string) {
	if spec.Affinity == nil {
		spec.Affinity = &corev1.Affinity{}
	}
	if spec.Affinity.NodeAffinity == nil {
		spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchFields: []corev1.NodeSelectorRequirement{{Key: nodeNameField, Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
		}},
	}
}
