package storage

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

// cacheWatcher is one client watch served by a Cacher. The cacher filters
// and queues events into input while holding its lock (never blocking);
// the watcher's goroutine moves them to the client at the client's pace.
type cacheWatcher struct {
	c        *Cacher
	prefix   string
	pred     Predicate
	progress bool
	// startRev: only events after it are delivered (the initial state or
	// replay covers the rest).
	startRev int64
	// bookmarkRev is the last bookmark queued (guarded by c.mu).
	bookmarkRev int64

	input  chan watch.Event
	result chan watch.Event
	done   chan struct{}
	// closed is guarded by c.mu; once set the watcher is out of c.watchers.
	closed   bool
	doneOnce sync.Once
}

// Watch implements Interface from the cache. resourceVersion "" or "0"
// starts with the cached state as ADDED events; a revision inside the
// event window replays what followed it; an older one is served from etcd's
// history, which answers 410 Gone (reason Expired) once compacted.
func (c *Cacher) Watch(ctx context.Context, prefix string, opts WatchOptions) (watch.Interface, error) {
	rv, err := ParseResourceVersion(opts.ResourceVersion)
	if err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	w := &cacheWatcher{
		c:        c,
		prefix:   prefix,
		pred:     opts.Predicate,
		progress: opts.ProgressNotify,
		input:    make(chan watch.Event, c.cfg.WatcherBufferSize),
		result:   make(chan watch.Event),
		done:     make(chan struct{}),
	}

	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil, errCacherStopped
	}
	var initial []watch.Event
	switch {
	case rv == 0 || opts.SendInitialEvents:
		for key, e := range c.items {
			if inScope(prefix, key) && matchesEntry(opts.Predicate, e) {
				initial = append(initial, watch.Event{Type: watch.Added, Object: e.obj})
			}
		}
		if opts.SendInitialEvents {
			initial = append(initial, newBookmark(c.cfg.NewFunc, c.rev, true))
		}
		w.startRev = c.rev
	case rv < c.oldest:
		// Older than the cache remembers (a client resuming after a server
		// restart, say): etcd still has the history unless it compacted
		// it, so this one watcher reads it there, and gets 410 Gone only
		// when etcd cannot replay it either.
		c.mu.Unlock()
		return c.cfg.Store.Watch(ctx, prefix, opts)
	default:
		for i := range c.count {
			ce := c.events[(c.head+i)%len(c.events)]
			if ce.rev <= rv {
				continue
			}
			if ev, ok := w.convert(ce); ok {
				initial = append(initial, ev)
			}
		}
		// A revision ahead of the cache is fine: events up to it are
		// skipped as they arrive.
		w.startRev = max(rv, c.rev)
	}
	c.watchers[w] = struct{}{}
	c.mu.Unlock()
	c.cfg.Metrics.watcherAdded(c.cfg.Resource, 1)

	stopOnCancel := context.AfterFunc(ctx, w.Stop)
	go w.run(initial, stopOnCancel)
	return w, nil
}

// ResultChan implements watch.Interface.
func (w *cacheWatcher) ResultChan() <-chan watch.Event { return w.result }

// Stop implements watch.Interface; it is safe to call more than once.
func (w *cacheWatcher) Stop() {
	w.c.mu.Lock()
	w.c.terminateLocked(w)
	w.c.mu.Unlock()
}

// terminateLocked removes w from the cacher and ends its goroutine, which
// closes the result channel. Must hold c.mu.
func (c *Cacher) terminateLocked(w *cacheWatcher) {
	if w.closed {
		return
	}
	w.closed = true
	delete(c.watchers, w)
	w.doneOnce.Do(func() { close(w.done) })
	c.cfg.Metrics.watcherAdded(c.cfg.Resource, -1)
}

func (w *cacheWatcher) run(initial []watch.Event, stopOnCancel func() bool) {
	defer close(w.result)
	defer stopOnCancel()
	for _, ev := range initial {
		select {
		case w.result <- ev:
		case <-w.done:
			return
		}
	}
	for {
		// done wins over queued events: a stopped or terminated watcher
		// delivers nothing more.
		select {
		case <-w.done:
			return
		default:
		}
		select {
		case ev := <-w.input:
			select {
			case w.result <- ev:
			case <-w.done:
				return
			}
		case <-w.done:
			return
		}
	}
}

// convert decides what, if anything, this watcher sees of ce. Objects
// moving out of the watcher's selection arrive as DELETED, objects moving
// in as ADDED.
func (w *cacheWatcher) convert(ce *cacheEvent) (watch.Event, bool) {
	if !inScope(w.prefix, ce.key) {
		return watch.Event{}, false
	}
	curOK := ce.cur != nil && matchesEntry(w.pred, ce.cur)
	prevOK := ce.prev != nil && matchesEntry(w.pred, ce.prev)
	switch ce.typ {
	case watch.Added:
		return watch.Event{Type: watch.Added, Object: ce.cur.obj}, curOK
	case watch.Deleted:
		return watch.Event{Type: watch.Deleted, Object: ce.prev.obj}, prevOK
	}
	switch {
	case curOK && (prevOK || w.pred.Empty()):
		return watch.Event{Type: watch.Modified, Object: ce.cur.obj}, true
	case curOK:
		return watch.Event{Type: watch.Added, Object: ce.cur.obj}, true
	case prevOK:
		return watch.Event{Type: watch.Deleted, Object: w.c.prevAtRevLocked(ce)}, true
	}
	return watch.Event{}, false
}

// prevAtRevLocked returns ce's previous object stamped with ce's revision,
// so that a client that records the DELETED event's resourceVersion
// resumes after this change. Must hold c.mu.
func (c *Cacher) prevAtRevLocked(ce *cacheEvent) runtime.Object {
	if ce.prevAtRev == nil {
		obj := ce.prev.obj.DeepCopyObject()
		if err := setResourceVersion(obj, ce.rev); err != nil {
			c.log.Warn("watch cache: stamp revision", "err", err)
		}
		ce.prevAtRev = obj
	}
	return ce.prevAtRev
}
