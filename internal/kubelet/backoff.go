package kubelet

import (
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Restart back-off, as upstream: the first restart is immediate, then
// 10 s doubling to 5 min; a container that stayed up for twice the
// maximum starts over.
const (
	backoffInitial = 10 * time.Second
	backoffMax     = 5 * time.Minute
)

// backoff tracks, per key (a pod's container, or an image pull), how long
// the next attempt must wait.
type backoff struct {
	clock clock.PassiveClock
	mu    sync.Mutex
	m     map[string]*backoffEntry
}

type backoffEntry struct {
	delay time.Duration
	last  time.Time
}

func newBackoff(c clock.PassiveClock) *backoff {
	return &backoff{clock: c, m: map[string]*backoffEntry{}}
}

// wait returns how long key must still wait, after a failure at since,
// before its next attempt; zero means go ahead. As upstream, the delay
// counts from the failure (a container's finish), not from the restart.
func (b *backoff) wait(key string, since time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.m[key]
	if e == nil || since.Sub(e.last) > 2*backoffMax {
		return 0
	}
	if d := since.Add(e.delay).Sub(b.clock.Now()); d > 0 {
		return d
	}
	return 0
}

// next records an attempt after a failure at since: the following
// failure waits twice as long, up to the maximum.
func (b *backoff) next(key string, since time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.m[key]
	switch {
	case e == nil || since.Sub(e.last) > 2*backoffMax:
		e = &backoffEntry{delay: backoffInitial}
		b.m[key] = e
	default:
		e.delay = min(2*e.delay, backoffMax)
	}
	e.last = since
}

// current returns key's delay, for messages ("back-off 20s …").
func (b *backoff) current(key string) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.m[key]; e != nil {
		return e.delay
	}
	return 0
}

// forget drops every key with the prefix (a pod's keys on removal).
func (b *backoff) forget(prefix string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range b.m {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			delete(b.m, k)
		}
	}
}
