package job

import (
	"sync"
	"time"

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
