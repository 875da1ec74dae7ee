package daemonset

import (
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiffhq/skiff/internal/controller/history"
)

// state is one snapshot a sync works from.
type state struct {
	ds    *appsv1.DaemonSet
	nodes []*corev1.Node
	// byNode holds the DaemonSet's pods by the node they are for,
	// terminating ones included.
	byNode map[string][]*corev1.Pod
	// hash is the current template's revision hash.
	hash string
	now  time.Time
}

// plan is what one sync does.
type plan struct {
	create []string // nodes that get a pod of the current template
	delete []*corev1.Pod
	// recheck, if non-zero, is when a pod becomes available and the
	// rollout may continue; nothing else would wake the controller then.
	recheck time.Duration
}

func (p *plan) empty() bool { return len(p.create) == 0 && len(p.delete) == 0 }

func (p *plan) wake(d time.Duration) {
	if d > 0 && (p.recheck == 0 || d < p.recheck) {
		p.recheck = d
	}
}

// newState groups pods by target node.
func newState(ds *appsv1.DaemonSet, nodes []*corev1.Node, pods []*corev1.Pod, hash string, now time.Time) *state {
	s := &state{ds: ds, nodes: nodes, byNode: map[string][]*corev1.Pod{}, hash: hash, now: now}
	for _, p := range pods {
		n := targetNode(p)
		s.byNode[n] = append(s.byNode[n], p)
	}
	for _, ps := range s.byNode {
		sort.SliceStable(ps, func(i, j int) bool { return olderThan(ps[i], ps[j]) })
	}
	return s
}

func olderThan(a, b *corev1.Pod) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

func (s *state) updated(p *corev1.Pod) bool { return p.Labels[history.HashLabel] == s.hash }

// available says whether p has been ready for minReadySeconds, and if it
// is ready but not yet long enough, how long until it will be.
func (s *state) available(p *corev1.Pod) (bool, time.Duration) {
	c := readyCondition(p)
	if c == nil || c.Status != corev1.ConditionTrue || p.DeletionTimestamp != nil {
		return false, 0
	}
	min := time.Duration(s.ds.Spec.MinReadySeconds) * time.Second
	if min == 0 {
		return true, 0
	}
	if left := c.LastTransitionTime.Add(min).Sub(s.now); left > 0 {
		return false, left
	}
	return true, 0
}

func readyCondition(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodReady {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func isReady(p *corev1.Pod) bool {
	c := readyCondition(p)
	return c != nil && c.Status == corev1.ConditionTrue
}

func live(pods []*corev1.Pod) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range pods {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// surging says whether a rolling update may run an old and a new pod side
// by side on a node.
func (s *state) surging() bool {
	us := s.ds.Spec.UpdateStrategy
	if us.Type != appsv1.RollingUpdateDaemonSetStrategyType || us.RollingUpdate == nil {
		return false
	}
	// Scaling against 100 turns "10%" into 10 and leaves integers alone:
	// all that matters here is whether it is zero.
	return scaled(us.RollingUpdate.MaxSurge, 100) > 0
}

// manage brings each node to exactly the pods it should have: one where
// the daemon belongs, none where it does not, none for nodes that are gone.
func (s *state) manage() *plan {
	p := &plan{}
	known := map[string]bool{}
	for _, node := range s.nodes {
		known[node.Name] = true
		pl := place(s.ds, node)
		pods := s.byNode[node.Name]
		if !pl.keep {
			p.delete = append(p.delete, live(pods)...)
			continue
		}
		var running []*corev1.Pod
		for _, pod := range live(pods) {
			// A failed daemon pod never restarts: replace it.
			if pod.Status.Phase == corev1.PodFailed {
				p.delete = append(p.delete, pod)
				continue
			}
			running = append(running, pod)
		}
		if len(pods) == 0 && pl.run {
			p.create = append(p.create, node.Name)
			continue
		}
		p.delete = append(p.delete, s.excess(running)...)
	}
	for name, pods := range s.byNode {
		if !known[name] {
			p.delete = append(p.delete, live(pods)...)
		}
	}
	sort.Strings(p.create)
	return p
}

// excess picks the duplicates on one node (pods sorted oldest first): the
// oldest pod stays, and while surging also the oldest pod of the other
// template.
func (s *state) excess(pods []*corev1.Pod) []*corev1.Pod {
	var out []*corev1.Pod
	keptNew, keptOld := false, false
	for _, pod := range pods {
		isNew := s.updated(pod)
		switch {
		case !s.surging() && !keptNew && !keptOld:
			keptNew, keptOld = true, true
		case s.surging() && isNew && !keptNew:
			keptNew = true
		case s.surging() && !isNew && !keptOld:
			keptOld = true
		default:
			out = append(out, pod)
		}
	}
	return out
}

// scaled resolves an int-or-percent against total, rounding up.
func scaled(v *intstr.IntOrString, total int) int {
	if v == nil {
		return 0
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(v, total, true)
	if err != nil {
		return 0
	}
	return n
}

// nodePods finds the one live old and one live new pod on a node; ok is
// false when there are duplicates, which manage cleans up first.
func (s *state) nodePods(pods []*corev1.Pod) (oldPod, newPod *corev1.Pod, ok bool) {
	for _, pod := range live(pods) {
		if s.updated(pod) {
			if newPod != nil {
				return nil, nil, false
			}
			newPod = pod
		} else {
			if oldPod != nil {
				return nil, nil, false
			}
			oldPod = pod
		}
	}
	return oldPod, newPod, true
}

// rollingUpdate replaces pods of older templates. Without surge it
// deletes old pods, never letting more than maxUnavailable nodes lack an
// available daemon (old pods that are unavailable anyway go first, for
// free); manage then creates the replacements. With surge it starts the
// new pod beside the old one on up to maxSurge nodes and deletes the old
// pod once the new one is available.
func (s *state) rollingUpdate() *plan {
	p := &plan{}
	desired := 0
	for _, node := range s.nodes {
		if place(s.ds, node).run {
			desired++
		}
	}
	ru := s.ds.Spec.UpdateStrategy.RollingUpdate
	maxUnavailable, maxSurge := 0, 0
	if ru != nil {
		maxUnavailable, maxSurge = scaled(ru.MaxUnavailable, desired), scaled(ru.MaxSurge, desired)
	}
	if maxUnavailable == 0 && maxSurge == 0 {
		// Upstream treats "both zero" (possible with small percentages)
		// as one at a time rather than a rollout that never moves.
		maxUnavailable = 1
	}
	if maxSurge > 0 {
		return s.surgeUpdate(maxSurge)
	}
	unavailable := 0
	var freeDeletes, candidates []*corev1.Pod
	for _, node := range s.nodes {
		if !place(s.ds, node).run {
			continue
		}
		oldPod, newPod, ok := s.nodePods(s.byNode[node.Name])
		if !ok {
			unavailable++
			continue
		}
		switch {
		case oldPod == nil && newPod == nil:
			unavailable++
		case oldPod == nil:
			if av, wait := s.available(newPod); !av {
				unavailable++
				p.wake(wait)
			}
		default:
			if av, _ := s.available(oldPod); !av {
				freeDeletes = append(freeDeletes, oldPod)
			} else {
				candidates = append(candidates, oldPod)
			}
		}
	}
	p.delete = freeDeletes
	budget := maxUnavailable - unavailable - len(freeDeletes)
	for i := 0; i < budget && i < len(candidates); i++ {
		p.delete = append(p.delete, candidates[i])
	}
	return p
}

func (s *state) surgeUpdate(maxSurge int) *plan {
	p := &plan{}
	surging := 0
	var urgent, candidates []string
	for _, node := range s.nodes {
		if !place(s.ds, node).run {
			continue
		}
		oldPod, newPod, ok := s.nodePods(s.byNode[node.Name])
		if !ok || oldPod == nil {
			continue
		}
		if newPod == nil {
			if av, _ := s.available(oldPod); !av {
				urgent = append(urgent, node.Name)
				surging++
			} else {
				candidates = append(candidates, node.Name)
			}
			continue
		}
		if av, wait := s.available(newPod); av {
			p.delete = append(p.delete, oldPod)
		} else {
			surging++
			p.wake(wait)
		}
	}
	p.create = urgent
	for i := 0; i < maxSurge-surging && i < len(candidates); i++ {
		p.create = append(p.create, candidates[i])
	}
	return p
}

// status counts what `kubectl get ds` and `rollout status` show. A node
// counts as ready, available or updated if any of its live daemon pods
// is, so a surge pod starting beside a serving one hides nothing.
func (s *state) status() appsv1.DaemonSetStatus {
	st := appsv1.DaemonSetStatus{ObservedGeneration: s.ds.Generation, CollisionCount: s.ds.Status.CollisionCount}
	for _, node := range s.nodes {
		pods := live(s.byNode[node.Name])
		if !place(s.ds, node).run {
			if len(pods) > 0 {
				st.NumberMisscheduled++
			}
			continue
		}
		st.DesiredNumberScheduled++
		if len(pods) == 0 {
			continue
		}
		st.CurrentNumberScheduled++
		var ready, avail, updated bool
		for _, pod := range pods {
			av, _ := s.available(pod)
			ready, avail, updated = ready || isReady(pod), avail || av, updated || s.updated(pod)
		}
		if ready {
			st.NumberReady++
		}
		if avail {
			st.NumberAvailable++
		}
		if updated {
			st.UpdatedNumberScheduled++
		}
	}
	st.NumberUnavailable = st.DesiredNumberScheduled - st.NumberAvailable
	return st
}
