package job

import (
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// expectationsTimeout bounds how long a lost watch event can stall a Job:
// after it the cache is trusted again, as upstream does.
const expectationsTimeout = 5 * time.Minute

// expectations remember pod creations and deletions a Job's last sync
// issued but the pod informer has not shown yet. Until they are seen the
// cache under-counts (or over-counts) the Job's pods, and acting on it
// would create more pods than parallelism allows.
type expectations struct {
	clock clock.PassiveClock
	mu    sync.Mutex
	m     map[string]*expected
}

type expected struct {
	adds, deletes int
	at            time.Time
}

func newExpectations(clk clock.PassiveClock) *expectations {
	return &expectations{clock: clk, m: map[string]*expected{}}
}

// expect records that adds pods are being created and deletes deleted.
func (e *expectations) expect(key string, adds, deletes int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[key]
	if !ok || (x.adds <= 0 && x.deletes <= 0) {
		x = &expected{}
		e.m[key] = x
	}
	x.adds += adds
	x.deletes += deletes
	x.at = e.clock.Now()
}

// observed lowers the outstanding counts: the informer saw adds creations
// and deletes deletions (or a request failed and never will be seen).
func (e *expectations) observed(key string, adds, deletes int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok {
		x.adds -= adds
		x.deletes -= deletes
	}
}

// satisfied reports whether the cache can be trusted for key.
func (e *expectations) satisfied(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[key]
	if !ok || (x.adds <= 0 && x.deletes <= 0) {
		return true
	}
	return e.clock.Since(x.at) > expectationsTimeout
}

func (e *expectations) forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}

// removals remember, per Job, the pods whose tracking finalizer a sync
// removed (upstream's finalizer expectations). Until the pod informer
// shows such a pod without the finalizer, the cache still holds a
// finished pod that looks uncounted, while the Job informer may already
// hold the status that counted it: counting it again would count it
// twice (a second failure towards the back-off limit, or a success that
// completes the Job early and deletes a running pod).
type removals struct {
	mu sync.Mutex
	m  map[string]map[types.UID]bool
}

func newRemovals() *removals { return &removals{m: map[string]map[types.UID]bool{}} }

// expect records that uid's finalizer is being removed.
func (r *removals) expect(key string, uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[key] == nil {
		r.m[key] = map[types.UID]bool{}
	}
	r.m[key][uid] = true
}

// drop forgets one removal: the request failed, or the cache caught up.
func (r *removals) drop(key string, uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m[key], uid)
	if len(r.m[key]) == 0 {
		delete(r.m, key)
	}
}

// has reports whether uid's finalizer removal is still unseen.
func (r *removals) has(key string, uid types.UID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[key][uid]
}

// none reports whether every removal for key has been seen.
func (r *removals) none(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m[key]) == 0
}

// observe forgets the removals the cache has caught up with: pods it
// shows without the finalizer, and pods it no longer has (deletion needs
// the finalizer gone first). It is level-triggered, so a missed pod
// event cannot leave a removal expected forever.
func (r *removals) observe(key string, pods []*corev1.Pod) {
	r.mu.Lock()
	defer r.mu.Unlock()
	exp := r.m[key]
	if len(exp) == 0 {
		return
	}
	stale := make(map[types.UID]bool, len(exp))
	for _, p := range pods {
		if exp[p.UID] && hasFinalizer(p) {
			stale[p.UID] = true
		}
	}
	if len(stale) == 0 {
		delete(r.m, key)
		return
	}
	r.m[key] = stale
}

func (r *removals) forget(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, key)
}
