package storage

import (
	"context"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

// Watch implements Interface with one etcd watch per call; the watch
// cache (Cacher) is what serves many clients from one etcd watch.
//
// With a predicate, an update that makes an object stop matching is sent
// as DELETED and one that makes it start matching as ADDED, so a watcher
// of a selection sees objects enter and leave it.
func (s *Etcd) Watch(ctx context.Context, prefix string, opts WatchOptions) (watch.Interface, error) {
	rv, err := ParseResourceVersion(opts.ResourceVersion)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &etcdWatch{
		s:      s,
		prefix: prefix,
		opts:   opts,
		result: make(chan watch.Event),
		cancel: cancel,
	}
	s.opts.Metrics.watcherAdded(s.opts.Resource, 1)
	go w.run(ctx, rv)
	return w, nil
}

// etcdWatch is one client's etcd watch, translated to watch events.
type etcdWatch struct {
	s      *Etcd
	prefix string
	opts   WatchOptions
	result chan watch.Event
	cancel context.CancelFunc
}

// ResultChan implements watch.Interface.
func (w *etcdWatch) ResultChan() <-chan watch.Event { return w.result }

// Stop implements watch.Interface.
func (w *etcdWatch) Stop() { w.cancel() }

// send delivers ev unless the watch has been stopped.
func (w *etcdWatch) send(ctx context.Context, ev watch.Event) bool {
	select {
	case w.result <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

func (w *etcdWatch) run(ctx context.Context, rv int64) {
	defer close(w.result)
	defer w.s.opts.Metrics.watcherAdded(w.s.opts.Resource, -1)
	defer w.cancel()

	if rv == 0 || w.opts.SendInitialEvents {
		var ok bool
		if rv, ok = w.sendInitial(ctx); !ok {
			return
		}
	}

	ops := []clientv3.OpOption{clientv3.WithRev(rv + 1), clientv3.WithPrevKV(), clientv3.WithRange(rangeEnd(w.prefix))}
	if w.opts.ProgressNotify {
		ops = append(ops, clientv3.WithProgressNotify())
	}
	for resp := range w.s.client.Watch(ctx, w.prefix, ops...) {
		if resp.CompactRevision != 0 {
			w.send(ctx, watch.Event{Type: watch.Error, Object: expiredStatus(rv, resp.CompactRevision)})
			return
		}
		if err := resp.Err(); err != nil {
			if ctx.Err() == nil {
				w.send(ctx, watch.Event{Type: watch.Error, Object: errorStatus(fmt.Errorf("watch %q: %w", w.prefix, err))})
			}
			return
		}
		if resp.IsProgressNotify() {
			if w.opts.ProgressNotify && !w.send(ctx, w.s.bookmark(resp.Header.Revision, false)) {
				return
			}
			continue
		}
		for _, ev := range resp.Events {
			out, ok, err := w.translate(ev)
			if err != nil {
				w.send(ctx, watch.Event{Type: watch.Error, Object: errorStatus(err)})
				return
			}
			if ok && !w.send(ctx, out) {
				return
			}
		}
	}
}

// sendInitial sends the current state as ADDED events (and, if asked, the
// end-of-initial-events bookmark) and returns the revision it reflects.
func (w *etcdWatch) sendInitial(ctx context.Context) (int64, bool) {
	resp, err := w.s.client.Get(ctx, w.prefix, clientv3.WithRange(rangeEnd(w.prefix)))
	if err != nil {
		if ctx.Err() == nil {
			w.send(ctx, watch.Event{Type: watch.Error, Object: errorStatus(fmt.Errorf("watch %q: initial state: %w", w.prefix, err))})
		}
		return 0, false
	}
	for _, kv := range resp.Kvs {
		obj, err := w.s.decode(kv.Value, kv.ModRevision)
		if err != nil {
			w.send(ctx, watch.Event{Type: watch.Error, Object: errorStatus(err)})
			return 0, false
		}
		ok, err := w.opts.Predicate.Matches(obj)
		if err != nil {
			w.send(ctx, watch.Event{Type: watch.Error, Object: errorStatus(err)})
			return 0, false
		}
		if ok && !w.send(ctx, watch.Event{Type: watch.Added, Object: obj}) {
			return 0, false
		}
	}
	rev := resp.Header.Revision
	if w.opts.SendInitialEvents && !w.send(ctx, w.s.bookmark(rev, true)) {
		return 0, false
	}
	return rev, true
}

// translate turns one etcd event into the watch event this watcher sees,
// if any.
func (w *etcdWatch) translate(ev *clientv3.Event) (watch.Event, bool, error) {
	rev := ev.Kv.ModRevision
	var cur, prev runtime.Object
	var err error
	if ev.Type == mvccpb.Event_PUT {
		// A write of this store's is already decoded.
		if cur = w.s.written.take(string(ev.Kv.Key), rev); cur == nil {
			if cur, err = w.s.decode(ev.Kv.Value, rev); err != nil {
				return watch.Event{}, false, fmt.Errorf("watch: key %q: %w", ev.Kv.Key, err)
			}
		}
	}
	// The previous state carries the event's revision: for a DELETED
	// event that is the deletion, which a client resumes from.
	if ev.PrevKv != nil && (ev.Type == mvccpb.Event_DELETE || !w.opts.Predicate.Empty()) {
		if prev, err = w.s.decode(ev.PrevKv.Value, rev); err != nil {
			return watch.Event{}, false, fmt.Errorf("watch: key %q: %w", ev.Kv.Key, err)
		}
	}
	return transition(w.opts.Predicate, isCreate(ev), cur, prev)
}

// transition decides the event a watcher with predicate p sees for a change
// from prev to cur (cur nil: deleted; prev nil: created or unknown).
func transition(p Predicate, created bool, cur, prev runtime.Object) (watch.Event, bool, error) {
	if cur == nil {
		if prev == nil {
			return watch.Event{}, false, nil
		}
		ok, err := p.Matches(prev)
		return watch.Event{Type: watch.Deleted, Object: prev}, ok, err
	}
	curOK, err := p.Matches(cur)
	if err != nil {
		return watch.Event{}, false, err
	}
	if created {
		return watch.Event{Type: watch.Added, Object: cur}, curOK, nil
	}
	if p.Empty() {
		return watch.Event{Type: watch.Modified, Object: cur}, true, nil
	}
	prevOK := false
	if prev != nil {
		if prevOK, err = p.Matches(prev); err != nil {
			return watch.Event{}, false, err
		}
	}
	switch {
	case curOK && prevOK:
		return watch.Event{Type: watch.Modified, Object: cur}, true, nil
	case curOK:
		return watch.Event{Type: watch.Added, Object: cur}, true, nil
	case prevOK:
		return watch.Event{Type: watch.Deleted, Object: prev}, true, nil
	}
	return watch.Event{}, false, nil
}

// bookmark returns a BOOKMARK event: an empty object of the resource's
// type whose only content is the revision (and, at the end of initial
// events, the annotation that says so).
func (s *Etcd) bookmark(rev int64, initialEnd bool) watch.Event {
	return newBookmark(s.newFunc, rev, initialEnd)
}

func newBookmark(newFunc func() runtime.Object, rev int64, initialEnd bool) watch.Event {
	obj := newFunc()
	if acc, err := meta.Accessor(obj); err == nil {
		acc.SetResourceVersion(fmt.Sprint(rev))
		if initialEnd {
			acc.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
		}
	}
	return watch.Event{Type: watch.Bookmark, Object: obj}
}

// inScope reports whether key is under prefix (or is the key, for a
// prefix that names one object).
func inScope(prefix, key string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(key, prefix)
	}
	return key == prefix
}
