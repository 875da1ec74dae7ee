package framework

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
)

// Diagnosis records why each node was rejected.
type Diagnosis struct {
	NodeToStatus NodeToStatus
	// UnschedulablePlugins are the plugins that rejected the pod somewhere;
	// the queue retries the pod on events those plugins care about.
	UnschedulablePlugins sets.Set[string]
	// PreFilterMsg is set when a PreFilter rejected the pod for all nodes.
	PreFilterMsg string
	// PostFilterMsg is preemption's explanation.
	PostFilterMsg string
}

// FitError is the "no node fits" outcome of a scheduling attempt. It is
// an error only in the sense of a value the caller must handle: it is the
// normal result for a pod that does not fit.
type FitError struct {
	Pod         *corev1.Pod
	NumAllNodes int
	Diagnosis   Diagnosis
}

// NoNodeAvailableMsg is upstream's text for a cluster without nodes.
const NoNodeAvailableMsg = "0/%v nodes are available"

// Error renders upstream's message: "0/20 nodes are available: 3
// node(s) had untolerated taint {key: value}, 17 Insufficient cpu.
// preemption: ...".
func (f *FitError) Error() string {
	if f.NumAllNodes == 0 {
		return "no nodes available to schedule pods"
	}
	msg := fmt.Sprintf(NoNodeAvailableMsg+":", f.NumAllNodes)
	if f.Diagnosis.PreFilterMsg != "" {
		msg += " " + f.Diagnosis.PreFilterMsg + "."
	} else {
		msg += " " + ReasonHistogram(f.Diagnosis.NodeToStatus) + "."
	}
	if f.Diagnosis.PostFilterMsg != "" {
		msg += " " + f.Diagnosis.PostFilterMsg
	}
	return msg
}

// ReasonHistogram counts each reason over the nodes and renders "N reason"
// items sorted by text, comma separated, as upstream.
func ReasonHistogram(m NodeToStatus) string {
	counts := map[string]int{}
	for _, s := range m {
		for _, r := range s.Reasons() {
			counts[r]++
		}
	}
	return RenderHistogram(counts)
}

// RenderHistogram renders reason counts as "N reason, M reason".
func RenderHistogram(counts map[string]int) string {
	items := make([]string, 0, len(counts))
	for r, n := range counts {
		items = append(items, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(items)
	return strings.Join(items, ", ")
}
