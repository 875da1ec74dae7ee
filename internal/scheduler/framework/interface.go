package framework

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
)

// Score bounds: each plugin's normalised score is in [MinNodeScore,
// MaxNodeScore] before its weight is applied.
const (
	MinNodeScore int64 = 0
	MaxNodeScore int64 = 100
)

// Plugin is anything the framework runs.
type Plugin interface {
	Name() string
}

// PreFilterResult narrows the nodes to filter; nil means all nodes.
type PreFilterResult struct {
	NodeNames map[string]struct{}
}

// PreFilterPlugin computes, once per attempt, what Filter needs on every
// node (counts per topology domain, parsed selectors). It may return Skip
// when Filter has nothing to check for this pod.
type PreFilterPlugin interface {
	Plugin
	PreFilter(ctx context.Context, state *CycleState, pod *corev1.Pod) (*PreFilterResult, *Status)
	// PreFilterExtensions returns how to update the PreFilter state when a
	// pod is added to or removed from a node (preemption's what-if, and
	// nominated pods); nil when the state does not depend on other pods.
	PreFilterExtensions() PreFilterExtensions
}

// PreFilterExtensions updates a PreFilter plugin's state for a pod added
// to or removed from nodeInfo, without recomputing it all.
type PreFilterExtensions interface {
	AddPod(ctx context.Context, state *CycleState, podToSchedule *corev1.Pod, podToAdd *PodInfo, nodeInfo *NodeInfo) *Status
	RemovePod(ctx context.Context, state *CycleState, podToSchedule *corev1.Pod, podToRemove *PodInfo, nodeInfo *NodeInfo) *Status
}

// FilterPlugin decides whether the pod can run on one node.
type FilterPlugin interface {
	Plugin
	Filter(ctx context.Context, state *CycleState, pod *corev1.Pod, nodeInfo *NodeInfo) *Status
}

// NodeToStatus maps node names to the status filtering gave them.
type NodeToStatus map[string]*Status

// PostFilterResult is what a PostFilter plugin proposes.
type PostFilterResult struct {
	NominatedNodeName string
}

// PostFilterPlugin runs when no node fits (preemption).
type PostFilterPlugin interface {
	Plugin
	PostFilter(ctx context.Context, state *CycleState, pod *corev1.Pod, filtered NodeToStatus) (*PostFilterResult, *Status)
}

// PreScorePlugin computes, once per attempt, what Score needs; it may
// return Skip.
type PreScorePlugin interface {
	Plugin
	PreScore(ctx context.Context, state *CycleState, pod *corev1.Pod, nodes []*NodeInfo) *Status
}

// ScorePlugin ranks a feasible node.
type ScorePlugin interface {
	Plugin
	Score(ctx context.Context, state *CycleState, pod *corev1.Pod, nodeInfo *NodeInfo) (int64, *Status)
	// ScoreExtensions returns the normaliser, or nil when scores are
	// already in [MinNodeScore, MaxNodeScore].
	ScoreExtensions() ScoreExtensions
}

// NodeScore is one node's score.
type NodeScore struct {
	Name  string
	Score int64
}

// ScoreExtensions maps raw scores into [MinNodeScore, MaxNodeScore].
type ScoreExtensions interface {
	NormalizeScore(ctx context.Context, state *CycleState, pod *corev1.Pod, scores []NodeScore) *Status
}

// EnqueueExtensions is implemented by plugins that can reject a pod; it
// says which cluster events could make the pod fit again, so the queue
// retries only pods that might now succeed.
type EnqueueExtensions interface {
	EventsToRegister() []ClusterEvent
}

// SharedLister is the read-only snapshot plugins see during one attempt.
type SharedLister interface {
	// List returns every node with a Node object.
	List() []*NodeInfo
	// HavePodsWithAffinityList returns the nodes with pods that have any
	// pod (anti-)affinity term.
	HavePodsWithAffinityList() []*NodeInfo
	// HavePodsWithRequiredAntiAffinityList returns the nodes with pods that
	// have required anti-affinity.
	HavePodsWithRequiredAntiAffinityList() []*NodeInfo
	// Get returns one node, or nil.
	Get(name string) *NodeInfo
	// PodsInNamespace returns the pods in namespace ns on listed nodes,
	// each with its node, so plugins that count pods matching a selector
	// need not walk every node. The slice must not be modified.
	PodsInNamespace(ns string) []PodOnNode
	// Namespaces lists the namespaces that have pods on listed nodes.
	Namespaces() []string
	// LabelValues counts the listed nodes by their value of a label key.
	// It is for PreFilter and PreScore (one goroutine), not Filter.
	LabelValues(key string) LabelCount
}

// PodOnNode is a pod and the node it is bound or assumed to.
type PodOnNode struct {
	Pod  *PodInfo
	Node *NodeInfo
}

// LabelCount is how many nodes carry each value of a label key, and how
// many carry the key at all.
type LabelCount struct {
	Values map[string]int
	Nodes  int
}

// PodNominator knows which pods preemption nominated to which node.
type PodNominator interface {
	NominatedPodsForNode(nodeName string) []*PodInfo
}

// Handle is what plugins get from the framework.
type Handle interface {
	// SnapshotSharedLister is the node snapshot of the current attempt.
	SnapshotSharedLister() SharedLister
	// NamespaceLabels returns a namespace's labels (namespaceSelector).
	NamespaceLabels(namespace string) labels.Set
	// ClientSet reaches the API server (preemption deletes victims).
	ClientSet() kubernetes.Interface
	// EventRecorder records Events about pods.
	EventRecorder() record.EventRecorder
	// PodNominator lists nominated pods.
	PodNominator() PodNominator
	// SchedulerName is the profile's name, for events and conditions.
	SchedulerName() string
	// Parallelizer runs work on several goroutines.
	Parallelizer() Parallelizer
	PluginsRunner
}

// PluginsRunner lets a plugin (preemption) run the other plugins on a
// what-if copy of a node.
type PluginsRunner interface {
	RunFilterPluginsWithNominatedPods(ctx context.Context, state *CycleState, pod *corev1.Pod, nodeInfo *NodeInfo) *Status
	RunPreFilterExtensionAddPod(ctx context.Context, state *CycleState, podToSchedule *corev1.Pod, podToAdd *PodInfo, nodeInfo *NodeInfo) *Status
	RunPreFilterExtensionRemovePod(ctx context.Context, state *CycleState, podToSchedule *corev1.Pod, podToRemove *PodInfo, nodeInfo *NodeInfo) *Status
}

// ActionType is a bit set of what happened to an object.
type ActionType int64

// Actions a plugin can register interest in.
const (
	Add ActionType = 1 << iota
	Delete
	UpdateNodeAllocatable
	UpdateNodeLabel
	UpdateNodeTaint
	UpdateNodeCondition
	UpdateNodeImages
	UpdatePodLabel
	UpdatePodRequest
	UpdateNamespaceLabel

	// Update is any update.
	Update = UpdateNodeAllocatable | UpdateNodeLabel | UpdateNodeTaint | UpdateNodeCondition | UpdateNodeImages | UpdatePodLabel | UpdatePodRequest | UpdateNamespaceLabel
	// All is any action.
	All = Add | Delete | Update
)

// EventResource is the kind of object an event is about.
type EventResource string

// Event resources. AssignedPod is a pod bound to a node (the ones that
// occupy resources); unscheduled pods' own updates are handled by the
// queue directly.
const (
	Node        EventResource = "Node"
	AssignedPod EventResource = "AssignedPod"
	Namespace   EventResource = "Namespace"
	// WildCard matches any resource: the periodic flush.
	WildCard EventResource = "*"
)

// ClusterEvent is a change in the cluster that may make pods fit.
type ClusterEvent struct {
	Resource   EventResource
	ActionType ActionType
	Label      string
}

// Match reports whether a registered interest r covers the event e.
func (r ClusterEvent) Match(e ClusterEvent) bool {
	if e.Resource == WildCard || r.Resource == WildCard {
		return true
	}
	return r.Resource == e.Resource && r.ActionType&e.ActionType != 0
}
