// Package queue holds the pods waiting for a node, in three parts: active
// (ready to try, highest priority first, then oldest), back-off (failed
// recently; waits 1 s doubling to 10 s) and unschedulable (failed because
// nothing fits; waits for a cluster event that could change that, with a
// periodic flush as a safety net rather than as the mechanism).
package queue

import (
	"context"
	"errors"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
)

// QueuedPodInfo is a pod in the queue with its scheduling history.
type QueuedPodInfo struct {
	*framework.PodInfo
	// Timestamp is when the pod was last added to the queue; it orders
	// pods of equal priority and starts the back-off.
	Timestamp time.Time
	// InitialAttemptTimestamp is when the pod was first popped.
	InitialAttemptTimestamp time.Time
	// Attempts counts scheduling attempts.
	Attempts int
	// UnschedulablePlugins rejected the pod in its last attempt; empty
	// means "any event may help".
	UnschedulablePlugins sets.Set[string]
	// Failed is set when the last attempt ended in an error rather than a
	// fit failure: such pods only back off.
	Failed bool
}

// Config configures the queue.
type Config struct {
	// Now is the clock (tests inject one).
	Now func() time.Time
	// InitialBackoff and MaxBackoff default to 1 s and 10 s.
	InitialBackoff, MaxBackoff time.Duration
	// MaxUnschedulable is how long a pod waits for an event before the
	// periodic flush retries it anyway (default 60 s).
	MaxUnschedulable time.Duration
	// EventInterest reports whether plugin cares about an event; nil
	// means every plugin cares about every event.
	EventInterest func(plugin string, ev framework.ClusterEvent) bool
	// IgnoreUpdate reports whether a pod update changes nothing the
	// scheduler looks at (e.g. the scheduler's own annotation).
	IgnoreUpdate func(old, new *corev1.Pod) bool
}

// PriorityQueue is the scheduling queue. It is safe for concurrent use.
type PriorityQueue struct {
	cfg  Config
	mu   sync.Mutex
	cond *sync.Cond

	active        *podHeap
	backoff       *podHeap
	unschedulable map[types.UID]*QueuedPodInfo
	// inFlight are popped pods not yet done, so a delete during the
	// attempt is not undone by requeueing.
	inFlight map[types.UID]bool
	// schedulingCycle counts pops; moveRequestCycle is the cycle of the
	// last event that moved pods. A pod that fails in a cycle at or before
	// a move request goes to back-off, not unschedulable: the event may
	// have come while it was being tried.
	schedulingCycle  int64
	moveRequestCycle int64
	closed           bool

	nominator *Nominator
}

// ErrClosed is returned by Pop once the queue is closed.
var ErrClosed = errors.New("scheduling queue is closed")

// New makes a queue.
func New(cfg Config) *PriorityQueue {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.InitialBackoff == 0 {
		cfg.InitialBackoff = time.Second
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.MaxUnschedulable == 0 {
		cfg.MaxUnschedulable = 60 * time.Second
	}
	q := &PriorityQueue{cfg: cfg, unschedulable: map[types.UID]*QueuedPodInfo{}, inFlight: map[types.UID]bool{}, nominator: NewNominator(), moveRequestCycle: -1}
	q.cond = sync.NewCond(&q.mu)
	q.active = newHeap(func(a, b *QueuedPodInfo) bool {
		pa, pb := framework.Priority(a.Pod), framework.Priority(b.Pod)
		if pa != pb {
			return pa > pb
		}
		return a.Timestamp.Before(b.Timestamp)
	})
	q.backoff = newHeap(func(a, b *QueuedPodInfo) bool { return q.backoffExpiry(a).Before(q.backoffExpiry(b)) })
	return q
}

// Nominator returns the queue's nominator.
func (q *PriorityQueue) Nominator() *Nominator { return q.nominator }

func (q *PriorityQueue) backoffDuration(p *QueuedPodInfo) time.Duration {
	d := q.cfg.InitialBackoff
	for i := 1; i < p.Attempts; i++ {
		d *= 2
		if d >= q.cfg.MaxBackoff {
			return q.cfg.MaxBackoff
		}
	}
	return d
}

func (q *PriorityQueue) backoffExpiry(p *QueuedPodInfo) time.Time {
	return p.Timestamp.Add(q.backoffDuration(p))
}

func (q *PriorityQueue) backingOff(p *QueuedPodInfo) bool {
	return p.Attempts > 0 && q.backoffExpiry(p).After(q.cfg.Now())
}

// Add queues a new pending pod.
func (q *PriorityQueue) Add(pod *corev1.Pod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	uid := pod.UID
	if q.active.get(uid) != nil || q.backoff.get(uid) != nil || q.unschedulable[uid] != nil {
		q.updateLocked(pod)
		return
	}
	q.active.add(&QueuedPodInfo{PodInfo: framework.NewPodInfo(pod), Timestamp: q.cfg.Now()})
	q.nominator.Add(framework.NewPodInfo(pod), pod.Status.NominatedNodeName)
	q.cond.Broadcast()
}

// Update applies a new version of a pending pod. A pod waiting as
// unschedulable is retried when its spec or labels changed, since that
// may make it fit.
func (q *PriorityQueue) Update(old, pod *corev1.Pod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if old != nil && q.cfg.IgnoreUpdate != nil && q.cfg.IgnoreUpdate(old, pod) {
		q.refreshLocked(pod)
		return
	}
	if !q.updateLocked(pod) && !q.inFlight[pod.UID] {
		q.active.add(&QueuedPodInfo{PodInfo: framework.NewPodInfo(pod), Timestamp: q.cfg.Now()})
		q.cond.Broadcast()
	}
	q.nominator.Add(framework.NewPodInfo(pod), pod.Status.NominatedNodeName)
}

// refreshLocked swaps in the new object without moving the pod.
func (q *PriorityQueue) refreshLocked(pod *corev1.Pod) {
	for _, h := range []*podHeap{q.active, q.backoff} {
		if p := h.get(pod.UID); p != nil {
			p.PodInfo = framework.NewPodInfo(pod)
			return
		}
	}
	if p := q.unschedulable[pod.UID]; p != nil {
		p.PodInfo = framework.NewPodInfo(pod)
	}
}

// updateLocked reports whether the pod was queued.
func (q *PriorityQueue) updateLocked(pod *corev1.Pod) bool {
	if p := q.active.get(pod.UID); p != nil {
		p.PodInfo = framework.NewPodInfo(pod)
		q.active.add(p)
		return true
	}
	if p := q.backoff.get(pod.UID); p != nil {
		p.PodInfo = framework.NewPodInfo(pod)
		q.backoff.add(p)
		return true
	}
	if p := q.unschedulable[pod.UID]; p != nil {
		p.PodInfo = framework.NewPodInfo(pod)
		delete(q.unschedulable, pod.UID)
		q.requeueLocked(p)
		return true
	}
	return false
}

// Delete removes a pod that was deleted or bound by someone else.
func (q *PriorityQueue) Delete(pod *corev1.Pod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.active.remove(pod.UID)
	q.backoff.remove(pod.UID)
	delete(q.unschedulable, pod.UID)
	delete(q.inFlight, pod.UID)
	q.nominator.Delete(pod.UID)
}

// Pop blocks until a pod is active or ctx ends (then ErrClosed).
func (q *PriorityQueue) Pop(ctx context.Context) (*QueuedPodInfo, error) {
	stop := context.AfterFunc(ctx, q.Close)
	defer stop()
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.active.Len() == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return nil, ErrClosed
	}
	p := q.active.pop()
	p.Attempts++
	if p.InitialAttemptTimestamp.IsZero() {
		p.InitialAttemptTimestamp = q.cfg.Now()
	}
	q.schedulingCycle++
	q.inFlight[p.Pod.UID] = true
	return p, nil
}

// SchedulingCycle returns the number of the last Pop.
func (q *PriorityQueue) SchedulingCycle() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.schedulingCycle
}

// Done ends a popped pod's attempt without requeueing it (it was bound).
func (q *PriorityQueue) Done(uid types.UID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.inFlight, uid)
}

// AddUnschedulable requeues a pod after a failed attempt from cycle. A pod
// deleted meanwhile is dropped.
func (q *PriorityQueue) AddUnschedulable(p *QueuedPodInfo, cycle int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.inFlight[p.Pod.UID] {
		return // deleted while being scheduled
	}
	delete(q.inFlight, p.Pod.UID)
	p.Timestamp = q.cfg.Now()
	if p.Failed || q.moveRequestCycle >= cycle {
		q.backoff.add(p)
		return
	}
	q.unschedulable[p.Pod.UID] = p
}

// requeueLocked puts a pod into back-off if it is still backing off, else
// into active.
func (q *PriorityQueue) requeueLocked(p *QueuedPodInfo) {
	if q.backingOff(p) {
		q.backoff.add(p)
		return
	}
	q.active.add(p)
	q.cond.Broadcast()
}

// MoveAllToActiveOrBackoff retries every unschedulable pod that one of
// its rejecting plugins says ev could help.
func (q *PriorityQueue) MoveAllToActiveOrBackoff(ev framework.ClusterEvent) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for uid, p := range q.unschedulable {
		if q.interested(p, ev) {
			delete(q.unschedulable, uid)
			q.requeueLocked(p)
		}
	}
	q.moveRequestCycle = q.schedulingCycle
}

func (q *PriorityQueue) interested(p *QueuedPodInfo, ev framework.ClusterEvent) bool {
	if ev.Resource == framework.WildCard || len(p.UnschedulablePlugins) == 0 || q.cfg.EventInterest == nil {
		return true
	}
	for name := range p.UnschedulablePlugins {
		if q.cfg.EventInterest(name, ev) {
			return true
		}
	}
	return false
}

// FlushBackoffCompleted moves pods whose back-off has ended to active.
func (q *PriorityQueue) FlushBackoffCompleted() {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.cfg.Now()
	moved := false
	for p := q.backoff.peek(); p != nil && !q.backoffExpiry(p).After(now); p = q.backoff.peek() {
		q.active.add(q.backoff.pop())
		moved = true
	}
	if moved {
		q.cond.Broadcast()
	}
}

// FlushUnschedulableLeftover retries pods that have waited longer than
// MaxUnschedulable for an event: the safety net for an event missed.
func (q *PriorityQueue) FlushUnschedulableLeftover() {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.cfg.Now()
	for uid, p := range q.unschedulable {
		if now.Sub(p.Timestamp) >= q.cfg.MaxUnschedulable {
			delete(q.unschedulable, uid)
			q.requeueLocked(p)
		}
	}
}

// Run flushes the back-off queue often and the unschedulable pods now and
// then, until ctx ends; then it closes the queue.
func (q *PriorityQueue) Run(ctx context.Context) {
	defer q.Close()
	backoff := time.NewTicker(200 * time.Millisecond)
	defer backoff.Stop()
	leftover := time.NewTicker(q.cfg.MaxUnschedulable / 2)
	defer leftover.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-backoff.C:
			q.FlushBackoffCompleted()
		case <-leftover.C:
			q.FlushUnschedulableLeftover()
		}
	}
}

// Close wakes Pop, which then returns ErrClosed.
func (q *PriorityQueue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.cond.Broadcast()
}

// Len returns the sizes of the active, back-off and unschedulable parts.
func (q *PriorityQueue) Len() (active, backoff, unschedulable int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.active.Len(), q.backoff.Len(), len(q.unschedulable)
}

// PendingPods lists every queued pod (debugging, tests).
func (q *PriorityQueue) PendingPods() []*corev1.Pod {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*corev1.Pod
	for _, p := range q.active.items {
		out = append(out, p.Pod)
	}
	for _, p := range q.backoff.items {
		out = append(out, p.Pod)
	}
	for _, p := range q.unschedulable {
		out = append(out, p.Pod)
	}
	return out
}

// SpecOrLabelsChanged is the default IgnoreUpdate complement: it reports
// whether anything other than status and bookkeeping changed.
func SpecOrLabelsChanged(old, pod *corev1.Pod, ignoreAnnotations ...string) bool {
	strip := func(p *corev1.Pod) *corev1.Pod {
		c := p.DeepCopy()
		c.ResourceVersion, c.Generation, c.ManagedFields = "", 0, nil
		c.Status = corev1.PodStatus{}
		for _, a := range ignoreAnnotations {
			delete(c.Annotations, a)
		}
		if len(c.Annotations) == 0 {
			c.Annotations = nil
		}
		return c
	}
	return !equality.Semantic.DeepEqual(strip(old), strip(pod))
}
