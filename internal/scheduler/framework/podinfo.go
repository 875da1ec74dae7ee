package framework

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"
)

// PodInfo is a pod with what the plugins derive from it, computed once
// when the pod enters the cache or the queue rather than on every node.
type PodInfo struct {
	Pod *corev1.Pod
	// Requests are the pod's requests (PodRequests); NonZero uses the
	// scoring defaults for CPU and memory.
	Requests, NonZero *Resource
	// Parsed pod (anti-)affinity terms.
	RequiredAffinityTerms      []AffinityTerm
	RequiredAntiAffinityTerms  []AffinityTerm
	PreferredAffinityTerms     []WeightedAffinityTerm
	PreferredAntiAffinityTerms []WeightedAffinityTerm
	// ParseError is set when a selector would not parse; the pod is then
	// unschedulable with that reason instead of failing silently.
	ParseError error
}

// AffinityTerm is a PodAffinityTerm with its selectors parsed.
type AffinityTerm struct {
	// Namespaces the term looks in; with a nil NamespaceSelector and no
	// names it is the owning pod's namespace.
	Namespaces        sets.Set[string]
	Selector          labels.Selector
	TopologyKey       string
	NamespaceSelector labels.Selector
}

// WeightedAffinityTerm is a preferred term with its weight.
type WeightedAffinityTerm struct {
	AffinityTerm
	Weight int32
}

// Matches reports whether pod is selected by the term, given the labels of
// the pod's namespace (for namespaceSelector).
func (t *AffinityTerm) Matches(pod *corev1.Pod, nsLabels labels.Set) bool {
	if t.Namespaces.Has(pod.Namespace) || (t.NamespaceSelector != nil && t.NamespaceSelector.Matches(nsLabels)) {
		return t.Selector.Matches(labels.Set(pod.Labels))
	}
	return false
}

// NewPodInfo parses pod's affinity and computes its requests.
func NewPodInfo(pod *corev1.Pod) *PodInfo {
	pi := &PodInfo{}
	pi.Update(pod)
	return pi
}

// Update recomputes everything for a new version of the pod.
func (pi *PodInfo) Update(pod *corev1.Pod) {
	*pi = PodInfo{Pod: pod, Requests: PodRequests(pod, false), NonZero: PodRequests(pod, true)}
	aff := pod.Spec.Affinity
	if aff == nil {
		return
	}
	var err error
	if pa := aff.PodAffinity; pa != nil {
		pi.RequiredAffinityTerms, err = parseTerms(pod, pa.RequiredDuringSchedulingIgnoredDuringExecution)
		pi.setErr(err)
		pi.PreferredAffinityTerms, err = parseWeighted(pod, pa.PreferredDuringSchedulingIgnoredDuringExecution)
		pi.setErr(err)
	}
	if pa := aff.PodAntiAffinity; pa != nil {
		pi.RequiredAntiAffinityTerms, err = parseTerms(pod, pa.RequiredDuringSchedulingIgnoredDuringExecution)
		pi.setErr(err)
		pi.PreferredAntiAffinityTerms, err = parseWeighted(pod, pa.PreferredDuringSchedulingIgnoredDuringExecution)
		pi.setErr(err)
	}
}

func (pi *PodInfo) setErr(err error) {
	if err != nil && pi.ParseError == nil {
		pi.ParseError = err
	}
}

func parseTerms(pod *corev1.Pod, terms []corev1.PodAffinityTerm) ([]AffinityTerm, error) {
	out := make([]AffinityTerm, 0, len(terms))
	for i := range terms {
		t, err := NewAffinityTerm(pod, &terms[i])
		if err != nil {
			return out, err
		}
		out = append(out, *t)
	}
	return out, nil
}

func parseWeighted(pod *corev1.Pod, terms []corev1.WeightedPodAffinityTerm) ([]WeightedAffinityTerm, error) {
	out := make([]WeightedAffinityTerm, 0, len(terms))
	for i := range terms {
		t, err := NewAffinityTerm(pod, &terms[i].PodAffinityTerm)
		if err != nil {
			return out, err
		}
		out = append(out, WeightedAffinityTerm{AffinityTerm: *t, Weight: terms[i].Weight})
	}
	return out, nil
}

// NewAffinityTerm parses one term of pod. As upstream, matchLabelKeys and
// mismatchLabelKeys add requirements on the owning pod's own label values.
func NewAffinityTerm(pod *corev1.Pod, term *corev1.PodAffinityTerm) (*AffinityTerm, error) {
	sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s affinity labelSelector: %w", pod.Namespace, pod.Name, err)
	}
	if term.LabelSelector == nil {
		sel = labels.Nothing()
	}
	if term.LabelSelector != nil {
		for _, k := range term.MatchLabelKeys {
			if v, ok := pod.Labels[k]; ok {
				if r, err := labels.NewRequirement(k, "in", []string{v}); err == nil {
					sel = sel.Add(*r)
				}
			}
		}
		for _, k := range term.MismatchLabelKeys {
			if v, ok := pod.Labels[k]; ok {
				if r, err := labels.NewRequirement(k, "notin", []string{v}); err == nil {
					sel = sel.Add(*r)
				}
			}
		}
	}
	t := &AffinityTerm{Selector: sel, TopologyKey: term.TopologyKey, Namespaces: sets.New(term.Namespaces...)}
	if term.NamespaceSelector != nil {
		ns, err := metav1.LabelSelectorAsSelector(term.NamespaceSelector)
		if err != nil {
			return nil, fmt.Errorf("pod %s/%s affinity namespaceSelector: %w", pod.Namespace, pod.Name, err)
		}
		t.NamespaceSelector = ns
	}
	if len(term.Namespaces) == 0 && term.NamespaceSelector == nil {
		t.Namespaces.Insert(pod.Namespace)
	}
	return t, nil
}

// HasAffinity reports whether the pod has any pod (anti-)affinity term.
func (pi *PodInfo) HasAffinity() bool {
	return len(pi.RequiredAffinityTerms)+len(pi.RequiredAntiAffinityTerms)+len(pi.PreferredAffinityTerms)+len(pi.PreferredAntiAffinityTerms) > 0
}

// Priority returns spec.priority, 0 when unset.
func Priority(pod *corev1.Pod) int32 {
	if pod.Spec.Priority != nil {
		return *pod.Spec.Priority
	}
	return 0
}
