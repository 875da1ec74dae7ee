package replicaset

import (
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// deletionCostAnnotation lets users say which pods to remove first when a
// ReplicaSet shrinks; lower costs go first. Upstream's name and meaning.
const deletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"

// podsToDelete picks the n least valuable pods, the ones whose loss hurts
// the workload least, following upstream's ranking: unscheduled before
// scheduled, pending before unknown before running, not ready before
// ready, lower deletion cost first, pods doubled up on a node before
// lone ones, recently ready before long ready, more restarts before
// fewer, and newer before older.
func podsToDelete(pods []*corev1.Pod, n int) []*corev1.Pod {
	if n >= len(pods) {
		return pods
	}
	perNode := map[string]int{}
	for _, p := range pods {
		if p.Spec.NodeName != "" {
			perNode[p.Spec.NodeName]++
		}
	}
	sorted := slices.Clone(pods)
	slices.SortStableFunc(sorted, func(a, b *corev1.Pod) int { return compareForDeletion(a, b, perNode) })
	return sorted[:n]
}

// compareForDeletion orders a before b (negative) when a should be deleted
// first.
func compareForDeletion(a, b *corev1.Pod, perNode map[string]int) int {
	// Unscheduled pods cost nothing to remove.
	if sa, sb := a.Spec.NodeName != "", b.Spec.NodeName != ""; sa != sb {
		return boolFirst(!sa)
	}
	if pa, pb := phaseRank(a.Status.Phase), phaseRank(b.Status.Phase); pa != pb {
		return pa - pb
	}
	if ra, rb := podReady(a), podReady(b); ra != rb {
		return boolFirst(!ra)
	}
	if ca, cb := deletionCost(a), deletionCost(b); ca != cb {
		if ca < cb {
			return -1
		}
		return 1
	}
	// Removing a pod that shares its node with siblings spreads the rest.
	if na, nb := perNode[a.Spec.NodeName], perNode[b.Spec.NodeName]; a.Spec.NodeName != "" && na != nb {
		return nb - na
	}
	if podReady(a) && podReady(b) {
		ta, tb := readySince(a), readySince(b)
		if !ta.Equal(&tb) {
			// Ready for less time: less proven, goes first.
			if ta.After(tb.Time) {
				return -1
			}
			return 1
		}
	}
	if ra, rb := restarts(a), restarts(b); ra != rb {
		return rb - ra
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		if a.CreationTimestamp.After(b.CreationTimestamp.Time) {
			return -1
		}
		return 1
	}
	return 0
}

// boolFirst returns -1 when first is true and 1 otherwise.
func boolFirst(first bool) int {
	if first {
		return -1
	}
	return 1
}

// phaseRank puts pending pods first, then unknown, then running.
func phaseRank(p corev1.PodPhase) int {
	switch p {
	case corev1.PodPending:
		return 0
	case corev1.PodUnknown:
		return 1
	case corev1.PodRunning:
		return 2
	}
	return 0
}

func deletionCost(p *corev1.Pod) int64 {
	v, ok := p.Annotations[deletionCostAnnotation]
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0
	}
	return n
}

func restarts(p *corev1.Pod) int {
	n := 0
	for _, s := range p.Status.ContainerStatuses {
		n += int(s.RestartCount)
	}
	return n
}
