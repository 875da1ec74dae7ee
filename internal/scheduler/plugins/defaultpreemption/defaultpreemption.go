// Package defaultpreemption makes room for a pod no node fits by evicting
// lower-priority pods: on every node where that helps it finds the
// smallest set of victims, picks the node whose victims matter least (as
// upstream: lowest highest priority, lowest priority sum, fewest pods,
// most recently started), deletes them and nominates the node.
package defaultpreemption

import (
	"context"
	"fmt"
	"sort"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
)

// Name is the plugin's name.
const Name = "DefaultPreemption"

// Upstream's reason texts.
const (
	ReasonNotHelpful = "Preemption is not helpful for scheduling"
	ReasonNoVictims  = "No preemption victims found for incoming pod"
)

// Preemption is the plugin.
type Preemption struct {
	h framework.Handle
}

var _ framework.PostFilterPlugin = (*Preemption)(nil)

// New builds the plugin.
func New(_ any, h framework.Handle) (framework.Plugin, error) { return &Preemption{h: h}, nil }

// Name implements framework.Plugin.
func (*Preemption) Name() string { return Name }

// candidate is a node and the pods to evict there.
type candidate struct {
	node    string
	victims []*framework.PodInfo
}

// PostFilter implements framework.PostFilterPlugin.
func (p *Preemption) PostFilter(ctx context.Context, state *framework.CycleState, pod *corev1.Pod, filtered framework.NodeToStatus) (*framework.PostFilterResult, *framework.Status) {
	if msg, ok := p.eligible(pod); !ok {
		return nil, framework.NewStatus(framework.Unschedulable, "preemption: "+msg)
	}
	nodes := p.h.SnapshotSharedLister().List()
	reasons := map[string]int{}
	var potential []*framework.NodeInfo
	for _, ni := range nodes {
		s, ok := filtered[ni.Node().Name]
		if !ok || s.Code() == framework.UnschedulableAndUnresolvable {
			reasons[ReasonNotHelpful]++
			continue
		}
		potential = append(potential, ni)
	}
	found := make([]*candidate, len(potential))
	p.h.Parallelizer().Until(ctx, len(potential), func(i int) {
		victims, ok := p.selectVictims(ctx, state.Clone(), pod, potential[i].Clone())
		if ok {
			found[i] = &candidate{node: potential[i].Node().Name, victims: victims}
		}
	})
	var cands []*candidate
	for _, c := range found {
		if c != nil {
			cands = append(cands, c)
		} else {
			reasons[ReasonNoVictims]++
		}
	}
	if len(cands) == 0 {
		return nil, framework.NewStatus(framework.Unschedulable,
			fmt.Sprintf("preemption: "+framework.NoNodeAvailableMsg+": %s.", len(nodes), framework.RenderHistogram(reasons)))
	}
	best := pickOne(cands)
	if err := p.evict(ctx, pod, best); err != nil {
		return nil, framework.AsStatus(err)
	}
	return &framework.PostFilterResult{NominatedNodeName: best.node}, nil
}

// eligible refuses preemption for pods whose policy is Never, and for a
// pod whose earlier victims on its nominated node are still terminating:
// evicting more would only hurt.
func (p *Preemption) eligible(pod *corev1.Pod) (string, bool) {
	if pod.Spec.PreemptionPolicy != nil && *pod.Spec.PreemptionPolicy == corev1.PreemptNever {
		return "not eligible due to preemptionPolicy=Never.", false
	}
	if nom := pod.Status.NominatedNodeName; nom != "" {
		if ni := p.h.SnapshotSharedLister().Get(nom); ni != nil {
			for _, pi := range ni.Pods {
				if pi.Pod.DeletionTimestamp != nil && framework.Priority(pi.Pod) < framework.Priority(pod) {
					return "not eligible due to a terminating pod on the nominated node.", false
				}
			}
		}
	}
	return "", true
}

// selectVictims removes every lower-priority pod from a copy of the node;
// if the pod then fits, it puts them back most important first while the
// pod still fits, and the ones that could not go back are the victims.
func (p *Preemption) selectVictims(ctx context.Context, state *framework.CycleState, pod *corev1.Pod, ni *framework.NodeInfo) ([]*framework.PodInfo, bool) {
	var lower []*framework.PodInfo
	for _, pi := range ni.Pods {
		if framework.Priority(pi.Pod) < framework.Priority(pod) {
			lower = append(lower, pi)
		}
	}
	if len(lower) == 0 {
		return nil, false
	}
	for _, pi := range lower {
		ni.RemovePod(pi.Pod)
		if !p.h.RunPreFilterExtensionRemovePod(ctx, state, pod, pi, ni).IsSuccess() {
			return nil, false
		}
	}
	if !p.h.RunFilterPluginsWithNominatedPods(ctx, state, pod, ni).IsSuccess() {
		return nil, false
	}
	sort.SliceStable(lower, func(i, j int) bool { return moreImportant(lower[i].Pod, lower[j].Pod) })
	var victims []*framework.PodInfo
	for _, pi := range lower {
		ni.AddPodInfo(pi)
		if !p.h.RunPreFilterExtensionAddPod(ctx, state, pod, pi, ni).IsSuccess() {
			return nil, false
		}
		if p.h.RunFilterPluginsWithNominatedPods(ctx, state, pod, ni).IsSuccess() {
			continue
		}
		ni.RemovePod(pi.Pod)
		if !p.h.RunPreFilterExtensionRemovePod(ctx, state, pod, pi, ni).IsSuccess() {
			return nil, false
		}
		victims = append(victims, pi)
	}
	return victims, len(victims) > 0
}

// moreImportant orders by priority, then the one that started earlier.
func moreImportant(a, b *corev1.Pod) bool {
	pa, pb := framework.Priority(a), framework.Priority(b)
	if pa != pb {
		return pa > pb
	}
	return startTime(a).Before(startTime(b))
}

func startTime(p *corev1.Pod) *metav1.Time {
	if p.Status.StartTime != nil {
		return p.Status.StartTime
	}
	return &p.CreationTimestamp
}

// pickOne applies upstream's criteria in turn until one candidate is left.
// Victims are sorted most important first, so victims[0] holds the
// highest priority.
func pickOne(cands []*candidate) *candidate {
	type key func(c *candidate) int64
	highest := func(c *candidate) int64 { return int64(framework.Priority(c.victims[0].Pod)) }
	sum := func(c *candidate) int64 {
		var s int64
		for _, v := range c.victims {
			s += int64(framework.Priority(v.Pod)) + 1<<31 // keep negative priorities from rewarding more victims
		}
		return s
	}
	count := func(c *candidate) int64 { return int64(len(c.victims)) }
	for _, k := range []key{highest, sum, count} {
		best := k(cands[0])
		for _, c := range cands[1:] {
			best = min(best, k(c))
		}
		var keep []*candidate
		for _, c := range cands {
			if k(c) == best {
				keep = append(keep, c)
			}
		}
		cands = keep
		if len(cands) == 1 {
			return cands[0]
		}
	}
	// The node whose highest-priority victims started most recently loses
	// the least work.
	earliest := func(c *candidate) *metav1.Time {
		top := framework.Priority(c.victims[0].Pod)
		t := startTime(c.victims[0].Pod)
		for _, v := range c.victims {
			if framework.Priority(v.Pod) == top && startTime(v.Pod).Before(t) {
				t = startTime(v.Pod)
			}
		}
		return t
	}
	best := cands[0]
	for _, c := range cands[1:] {
		if earliest(best).Before(earliest(c)) {
			best = c
		}
	}
	return best
}

// evict deletes the victims, recording a Preempted event on each.
func (p *Preemption) evict(ctx context.Context, preemptor *corev1.Pod, c *candidate) error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.victims))
	for i, v := range c.victims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := p.h.ClientSet().CoreV1().Pods(v.Pod.Namespace).Delete(ctx, v.Pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &v.Pod.UID}})
			if err != nil && !apierrors.IsNotFound(err) {
				errs[i] = fmt.Errorf("preempting %s/%s: %w", v.Pod.Namespace, v.Pod.Name, err)
				return
			}
			p.h.EventRecorder().Eventf(v.Pod, corev1.EventTypeNormal, "Preempted", "Preempted by pod %s on node %s", preemptor.UID, c.node)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
