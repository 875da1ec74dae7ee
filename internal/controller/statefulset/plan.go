package statefulset

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/skiffhq/skiff/internal/controller/history"
)

// revision is one recorded template.
type revision struct {
	name     string
	template *corev1.PodTemplateSpec
}

// state is one snapshot a sync works from.
type state struct {
	sts *appsv1.StatefulSet
	// pods by ordinal; only pods this set controls and names.
	pods             map[int]*corev1.Pod
	current, updated revision
	now              time.Time
}

// step is what one sync does.
type step struct {
	create []int // ordinals
	delete []*corev1.Pod
	// failed are the deletes that replace failed pods, for the event.
	failed map[string]bool
	// recheck, if non-zero, is when a pod becomes available; nothing else
	// would wake the controller then.
	recheck time.Duration
}

func (s *step) wake(d time.Duration) {
	if d > 0 && (s.recheck == 0 || d < s.recheck) {
		s.recheck = d
	}
}

// podName is the stable name of ordinal's pod.
func podName(set string, ordinal int) string { return set + "-" + strconv.Itoa(ordinal) }

// ordinalOf parses a member pod's ordinal; ok is false for any other name.
func ordinalOf(set, name string) (int, bool) {
	if len(name) <= len(set)+1 || name[:len(set)+1] != set+"-" {
		return 0, false
	}
	n, err := strconv.Atoi(name[len(set)+1:])
	if err != nil || n < 0 || podName(set, n) != name {
		return 0, false
	}
	return n, true
}

func (s *state) start() int {
	return int(ptr.Deref(s.sts.Spec.Ordinals, appsv1.StatefulSetOrdinals{}).Start)
}

func (s *state) replicas() int { return int(ptr.Deref(s.sts.Spec.Replicas, 1)) }

func (s *state) ordered() bool {
	return s.sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement
}

func terminating(p *corev1.Pod) bool { return p.DeletionTimestamp != nil }

func finished(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
}

func runningAndReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	c := readyCondition(p)
	return c != nil && c.Status == corev1.ConditionTrue
}

func readyCondition(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodReady {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// available says whether p has been running and ready for
// minReadySeconds, and if it is only short of that, for how much longer.
func (s *state) available(p *corev1.Pod) (bool, time.Duration) {
	if !runningAndReady(p) {
		return false, 0
	}
	min := time.Duration(s.sts.Spec.MinReadySeconds) * time.Second
	if min == 0 {
		return true, 0
	}
	if left := readyCondition(p).LastTransitionTime.Add(min).Sub(s.now); left > 0 {
		return false, left
	}
	return true, 0
}

// healthy is a pod an ordered set may build on.
func (s *state) healthy(p *corev1.Pod, st *step) bool {
	if terminating(p) {
		return false
	}
	av, wait := s.available(p)
	st.wake(wait)
	return av
}

func revisionOf(p *corev1.Pod) string { return p.Labels[history.HashLabel] }

// partition is the lowest replica index a rolling update may touch.
func (s *state) partition() int {
	if ru := s.sts.Spec.UpdateStrategy.RollingUpdate; ru != nil {
		return int(ptr.Deref(ru.Partition, 0))
	}
	return 0
}

// revisionFor picks the template a missing pod is created from: below the
// partition of a rolling update pods stay on the current revision, above
// it (and always with OnDelete) they take the update revision.
func (s *state) revisionFor(ordinal int) revision {
	if s.sts.Spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType && ordinal-s.start() < s.partition() {
		return s.current
	}
	return s.updated
}

// next decides what to do now. OrderedReady does one thing per sync and
// only on a healthy base: create ordinal N when 0..N-1 are running and
// ready, delete the highest ordinal beyond the replica count once every
// other pod is healthy and nothing is terminating. Parallel creates and
// deletes all at once. Rolling updates (either policy) then replace one
// pod at a time from the highest ordinal down to the partition, waiting
// for each replacement to become available.
func (s *state) next() *step {
	st := &step{failed: map[string]bool{}}
	lo, hi := s.start(), s.start()+s.replicas()
	for ord := lo; ord < hi; ord++ {
		p := s.pods[ord]
		switch {
		case p == nil:
			st.create = append(st.create, ord)
		case finished(p) && !terminating(p):
			// A pod that ran to completion or failed will not restart by
			// itself: replace it, keeping its name.
			st.delete = append(st.delete, p)
			st.failed[p.Name] = true
		case s.healthy(p, st):
			continue
		}
		if s.ordered() {
			return st
		}
	}

	var condemned []int
	for ord := range s.pods {
		if ord < lo || ord >= hi {
			condemned = append(condemned, ord)
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(condemned)))
	for _, ord := range condemned {
		p := s.pods[ord]
		if terminating(p) {
			if s.ordered() {
				return st
			}
			continue
		}
		if s.ordered() && !s.othersHealthy(ord, st) {
			return st
		}
		st.delete = append(st.delete, p)
		if s.ordered() {
			return st
		}
	}
	if !s.ordered() && (len(st.create) > 0 || len(st.delete) > 0) {
		// Let the set settle before replacing pods for an update.
		return st
	}

	if s.sts.Spec.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType {
		return st
	}
	for ord := hi - 1; ord >= lo+s.partition(); ord-- {
		p := s.pods[ord]
		if p == nil {
			return st
		}
		if revisionOf(p) != s.updated.name && !terminating(p) {
			st.delete = append(st.delete, p)
			return st
		}
		if !s.healthy(p, st) {
			return st
		}
	}
	return st
}

// othersHealthy: every pod but ord is healthy.
func (s *state) othersHealthy(ord int, st *step) bool {
	for o, p := range s.pods {
		if o != ord && !s.healthy(p, st) {
			return false
		}
	}
	return true
}

// status counts what `kubectl get sts` and `rollout status` show. The
// current revision catches up with the update revision once every pod
// runs the update and is ready.
func (s *state) status() appsv1.StatefulSetStatus {
	st := appsv1.StatefulSetStatus{
		ObservedGeneration: s.sts.Generation,
		CurrentRevision:    s.current.name,
		UpdateRevision:     s.updated.name,
		CollisionCount:     s.sts.Status.CollisionCount,
	}
	for _, p := range s.pods {
		st.Replicas++
		if runningAndReady(p) {
			st.ReadyReplicas++
			if av, _ := s.available(p); av {
				st.AvailableReplicas++
			}
		}
		if terminating(p) {
			continue
		}
		if revisionOf(p) == s.current.name {
			st.CurrentReplicas++
		}
		if revisionOf(p) == s.updated.name {
			st.UpdatedReplicas++
		}
	}
	if st.UpdatedReplicas == st.Replicas && st.ReadyReplicas == st.Replicas && st.Replicas == int32(s.replicas()) {
		st.CurrentRevision, st.CurrentReplicas = st.UpdateRevision, st.UpdatedReplicas
	}
	return st
}

// newPod is ordinal's pod from rev.
func newPod(sts *appsv1.StatefulSet, ordinal int, rev revision) *corev1.Pod {
	tpl := rev.template.DeepCopy()
	name := podName(sts.Name, ordinal)
	pod := &corev1.Pod{
		ObjectMeta: metav1ObjectMeta(sts, name, tpl),
		Spec:       tpl.Spec,
	}
	pod.Labels[appsv1.StatefulSetPodNameLabel] = name
	pod.Labels[appsv1.PodIndexLabel] = strconv.Itoa(ordinal)
	pod.Labels[history.HashLabel] = rev.name
	// The stable network identity: <pod>.<service>.<ns>.svc resolves
	// through the headless service named by serviceName.
	pod.Spec.Hostname = name
	pod.Spec.Subdomain = sts.Spec.ServiceName
	return pod
}

func eventMessage(verb string, pod, set string, err error) string {
	if err != nil {
		return fmt.Sprintf("%s Pod %s in StatefulSet %s failed error: %v", verb, pod, set, err)
	}
	return fmt.Sprintf("%s Pod %s in StatefulSet %s successful", verb, pod, set)
}
