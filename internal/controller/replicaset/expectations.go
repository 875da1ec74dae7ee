package replicaset

import (
	"sync"
	"time"
)

// expectationsTTL bounds how long a sync waits for the watch to report its
// own writes. Past it the controller trusts the cache again: an event may
// have been lost, and waiting forever would stall the ReplicaSet.
const expectationsTTL = 5 * time.Minute

// expectations remembers, per ReplicaSet key, the pod creations and
// deletions this controller has asked for but not yet seen through the
// informer. While any are outstanding the pod cache is known to be stale,
// and acting on it would create or delete the same pods twice.
type expectations struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*expectation
}

// expectation is one ReplicaSet's outstanding work. Deletions are tracked
// by pod key rather than counted, because a pod is seen going twice (once
// when it is marked terminating, once when it is removed) and must only
// be counted once.
type expectation struct {
	adds int
	dels map[string]struct{}
	set  time.Time
}

func newExpectations(now func() time.Time) *expectations {
	return &expectations{now: now, m: map[string]*expectation{}}
}

// Satisfied reports whether the cache can be trusted for key: nothing is
// outstanding, nothing was ever recorded, or the record has expired.
func (e *expectations) Satisfied(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[key]
	if !ok {
		return true
	}
	if x.adds <= 0 && len(x.dels) == 0 {
		return true
	}
	return e.now().Sub(x.set) > expectationsTTL
}

// ExpectCreations records that n pods are about to be created for key.
func (e *expectations) ExpectCreations(key string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[key] = &expectation{adds: n, dels: map[string]struct{}{}, set: e.now()}
}

// ExpectDeletions records that the pods podKeys are about to be deleted.
func (e *expectations) ExpectDeletions(key string, podKeys []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := &expectation{dels: make(map[string]struct{}, len(podKeys)), set: e.now()}
	for _, k := range podKeys {
		x.dels[k] = struct{}{}
	}
	e.m[key] = x
}

// CreationObserved lowers key's outstanding creations by one: the watch
// saw a pod, or a create failed and no pod will come.
func (e *expectations) CreationObserved(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok && x.adds > 0 {
		x.adds--
	}
}

// DeletionObserved clears podKey from key's outstanding deletions.
func (e *expectations) DeletionObserved(key, podKey string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok {
		delete(x.dels, podKey)
	}
}

// Delete forgets key, when its ReplicaSet is gone.
func (e *expectations) Delete(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}
