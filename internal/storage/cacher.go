package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

// Defaults for CacherConfig fields left zero.
const (
	DefaultEventBufferSize   = 1024
	DefaultWatcherBufferSize = 128
	DefaultBookmarkInterval  = 5 * time.Second
)

// CacherConfig describes the watch cache of one resource.
type CacherConfig struct {
	// Store takes every write and every read the cache cannot answer.
	// Its Watch is called once, with ProgressNotify, to feed the cache.
	Store Interface
	// Prefix is the resource's key prefix, ending in "/".
	Prefix string
	// NewFunc returns an empty object of the resource's type.
	NewFunc func() runtime.Object
	// Attrs returns an object's labels and selectable fields. They are
	// computed once per change, not once per watcher.
	Attrs func(runtime.Object) (labels.Set, fields.Set, error)
	// KeyFunc returns an object's key; by default Prefix + namespace + "/"
	// + name, or Prefix + name for cluster-scoped objects.
	KeyFunc func(runtime.Object) (string, error)

	// EventBufferSize is how many recent events are kept for watches that
	// resume from a resourceVersion; older resumptions get 410 Gone.
	EventBufferSize int
	// WatcherBufferSize is how many events one watcher may lag behind
	// before it is closed so that it re-watches, rather than holding up
	// every other watcher.
	WatcherBufferSize int
	// BookmarkInterval is how often watchers that asked for progress get
	// a BOOKMARK with the cache's revision.
	BookmarkInterval time.Duration

	Options
}

// cacheEntry is a cached object with its precomputed attributes.
type cacheEntry struct {
	obj    runtime.Object
	labels labels.Set
	fields fields.Set
}

// cacheEvent is one change, as kept in the event buffer.
type cacheEvent struct {
	typ watch.EventType
	key string
	rev int64
	// cur is nil for a deletion; prev is nil for a creation. For a
	// deletion prev's object already carries the deletion revision.
	cur, prev *cacheEntry
	// prevAtRev is prev's object re-stamped with rev, made on first use
	// (under Cacher.mu) for watchers whose selection the object leaves.
	prevAtRev runtime.Object
}

// Cacher is the watch cache of one resource: one etcd watch keeps an
// in-memory copy of every object and a window of recent events, and every
// client watch is served from it. Writes and consistent reads go to the
// underlying store.
//
// Objects returned by List and sent on watches are shared between callers
// and with the cache: callers must not modify them (DeepCopy first).
type Cacher struct {
	cfg   CacherConfig
	log   *slog.Logger
	ready chan struct{}

	mu       sync.Mutex
	items    map[string]*cacheEntry
	events   []*cacheEvent // ring buffer of the latest events
	head     int           // index of the oldest event in events
	count    int           // number of events held
	oldest   int64         // every event after this revision is in the buffer
	rev      int64         // the cache reflects the store up to this revision
	watchers map[*cacheWatcher]struct{}
	stopped  bool
}

var _ Interface = (*Cacher)(nil)

// NewCacher starts the watch cache; it runs until ctx ends. Reads that
// need it wait for the initial list; Ready says when that is done.
func NewCacher(ctx context.Context, cfg CacherConfig) (*Cacher, error) {
	if cfg.Store == nil || cfg.NewFunc == nil || cfg.Attrs == nil {
		return nil, errors.New("cacher: Store, NewFunc and Attrs are required")
	}
	if len(cfg.Prefix) == 0 || cfg.Prefix[len(cfg.Prefix)-1] != '/' {
		return nil, fmt.Errorf("cacher: prefix %q must end in /", cfg.Prefix)
	}
	if cfg.KeyFunc == nil {
		prefix := cfg.Prefix
		cfg.KeyFunc = func(obj runtime.Object) (string, error) {
			acc, err := meta.Accessor(obj)
			if err != nil {
				return "", err
			}
			if ns := acc.GetNamespace(); ns != "" {
				return prefix + ns + "/" + acc.GetName(), nil
			}
			return prefix + acc.GetName(), nil
		}
	}
	if cfg.EventBufferSize <= 0 {
		cfg.EventBufferSize = DefaultEventBufferSize
	}
	if cfg.WatcherBufferSize <= 0 {
		cfg.WatcherBufferSize = DefaultWatcherBufferSize
	}
	if cfg.BookmarkInterval <= 0 {
		cfg.BookmarkInterval = DefaultBookmarkInterval
	}
	cfg.Options = cfg.Options.withDefaults()
	c := &Cacher{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "cacher"),
		ready:    make(chan struct{}),
		items:    map[string]*cacheEntry{},
		events:   make([]*cacheEvent, cfg.EventBufferSize),
		watchers: map[*cacheWatcher]struct{}{},
	}
	go c.run(ctx)
	go c.bookmarks(ctx)
	return c, nil
}

// Ready is closed once the cache holds its first complete list.
func (c *Cacher) Ready() <-chan struct{} { return c.ready }

// Revision returns the store revision the cache reflects.
func (c *Cacher) Revision() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rev
}

// run keeps the cache in step with the store until ctx ends.
func (c *Cacher) run(ctx context.Context) {
	defer c.stop()
	needList := true
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := c.listAndWatch(ctx, needList)
		if ctx.Err() != nil {
			return
		}
		// Only a watch that fell behind compaction forces a relist; any
		// other break resumes from the cache's revision, losing nothing.
		needList = errors.Is(err, ErrExpired)
		c.log.Warn("watch cache: etcd watch ended; restarting", "err", err, "relist", needList)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (c *Cacher) listAndWatch(ctx context.Context, relist bool) error {
	if relist {
		res, err := c.cfg.Store.List(ctx, c.cfg.Prefix, ListOptions{})
		if err != nil {
			return fmt.Errorf("list %q: %w", c.cfg.Prefix, err)
		}
		if err := c.replace(res.Items, res.ResourceVersion); err != nil {
			return err
		}
	}
	c.mu.Lock()
	from := c.rev
	c.mu.Unlock()
	w, err := c.cfg.Store.Watch(ctx, c.cfg.Prefix, WatchOptions{
		ResourceVersion: strconv.FormatInt(from, 10),
		ProgressNotify:  true,
	})
	if err != nil {
		return fmt.Errorf("watch %q: %w", c.cfg.Prefix, err)
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		switch ev.Type {
		case watch.Added, watch.Modified, watch.Deleted:
			c.process(ev)
		case watch.Bookmark:
			if err := c.advance(ev.Object); err != nil {
				return err
			}
		case watch.Error:
			return watchError(ev.Object)
		}
	}
	return errors.New("watch channel closed")
}

// watchError turns an ERROR event from the store into an error, keeping
// 410 recognisable as ErrExpired.
func watchError(obj runtime.Object) error {
	st, ok := obj.(*metav1.Status)
	if !ok {
		return fmt.Errorf("store watch: unexpected error object %T", obj)
	}
	if st.Code == http.StatusGone || st.Reason == metav1.StatusReasonExpired {
		return fmt.Errorf("store watch: %s: %w", st.Message, ErrExpired)
	}
	return fmt.Errorf("store watch: %s", st.Message)
}

func (c *Cacher) entry(obj runtime.Object) (*cacheEntry, error) {
	ls, fs, err := c.cfg.Attrs(obj)
	if err != nil {
		return nil, fmt.Errorf("attributes of %T: %w", obj, err)
	}
	return &cacheEntry{obj: obj, labels: ls, fields: fs}, nil
}

// replace installs a fresh list. Watchers are closed: they may have missed
// events between the old state and this one, and must re-watch.
func (c *Cacher) replace(items []runtime.Object, rev int64) error {
	m := make(map[string]*cacheEntry, len(items))
	for _, obj := range items {
		key, err := c.cfg.KeyFunc(obj)
		if err != nil {
			return fmt.Errorf("key of %T: %w", obj, err)
		}
		e, err := c.entry(obj)
		if err != nil {
			return err
		}
		m[key] = e
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for w := range c.watchers {
		c.terminateLocked(w)
	}
	c.items = m
	clear(c.events)
	c.head, c.count = 0, 0
	c.oldest, c.rev = rev, rev
	select {
	case <-c.ready:
	default:
		close(c.ready)
	}
	return nil
}

// process applies one store event and fans it out. An object the cache
// cannot index (no key, or attributes that fail) is logged and skipped:
// returning an error would restart the watch at the same event forever.
func (c *Cacher) process(ev watch.Event) {
	rev, err := objectRevision(ev.Object)
	if err != nil {
		c.log.Error("watch cache: skipping event", "type", ev.Type, "err", err)
		return
	}
	key, err := c.cfg.KeyFunc(ev.Object)
	if err != nil {
		c.log.Error("watch cache: skipping event", "type", ev.Type, "rev", rev, "err", err)
		c.advanceTo(rev)
		return
	}
	e, err := c.entry(ev.Object)
	if err != nil {
		// Kept without attributes: selective watchers will not see it, but
		// the state and unfiltered watchers stay right.
		c.log.Error("watch cache: object attributes", "key", key, "err", err)
		e = &cacheEntry{obj: ev.Object}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ce := &cacheEvent{typ: ev.Type, key: key, rev: rev, prev: c.items[key]}
	if ev.Type == watch.Deleted {
		ce.prev = e
		delete(c.items, key)
	} else {
		ce.cur = e
		c.items[key] = e
	}
	if c.count == len(c.events) {
		c.oldest = c.events[c.head].rev
		c.head = (c.head + 1) % len(c.events)
		c.count--
	}
	c.events[(c.head+c.count)%len(c.events)] = ce
	c.count++
	c.rev = rev
	for w := range c.watchers {
		if out, ok := w.convert(ce); ok && ce.rev > w.startRev {
			c.deliverLocked(w, out, true)
		}
	}
}

// advance moves the cache's revision on a store bookmark.
func (c *Cacher) advance(obj runtime.Object) error {
	rev, err := objectRevision(obj)
	if err != nil {
		return err
	}
	c.advanceTo(rev)
	return nil
}

func (c *Cacher) advanceTo(rev int64) {
	c.mu.Lock()
	c.rev = max(c.rev, rev)
	c.mu.Unlock()
}

// deliverLocked queues ev for w without blocking. A watcher whose queue is
// full is closed (it re-watches from its last revision) unless the event
// is only a bookmark, which can be skipped.
func (c *Cacher) deliverLocked(w *cacheWatcher, ev watch.Event, must bool) {
	select {
	case w.input <- ev:
	default:
		if must {
			c.log.Info("watch cache: closing a watcher that fell behind", "prefix", w.prefix, "buffer", cap(w.input))
			c.cfg.Metrics.watcherTerminated(c.cfg.Resource)
			c.terminateLocked(w)
		}
	}
}

// bookmarks periodically tells progress-asking watchers the cache's
// revision, so that a watcher of a quiet selection can resume from a
// recent revision rather than an expired one.
func (c *Cacher) bookmarks(ctx context.Context) {
	t := time.NewTicker(c.cfg.BookmarkInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		var bm watch.Event
		for w := range c.watchers {
			if !w.progress || c.rev <= w.startRev || c.rev <= w.bookmarkRev {
				continue
			}
			if bm.Object == nil {
				bm = newBookmark(c.cfg.NewFunc, c.rev, false)
			}
			w.bookmarkRev = c.rev
			c.deliverLocked(w, bm, false)
		}
		c.mu.Unlock()
	}
}

// stop closes every watcher once the cache stops.
func (c *Cacher) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	for w := range c.watchers {
		c.terminateLocked(w)
	}
}

// waitReady waits for the initial list.
func (c *Cacher) waitReady(ctx context.Context) error {
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("watch cache %q not ready: %w", c.cfg.Prefix, ctx.Err())
	}
}

// Create implements Interface by writing to the store.
func (c *Cacher) Create(ctx context.Context, key string, obj runtime.Object) (runtime.Object, error) {
	return c.cfg.Store.Create(ctx, key, obj)
}

// Get implements Interface by reading the store, which is always current.
func (c *Cacher) Get(ctx context.Context, key string) (runtime.Object, error) {
	return c.cfg.Store.Get(ctx, key)
}

// cachedUpdater is a store that can start an update from a cached object
// rather than a read (*Etcd).
type cachedUpdater interface {
	GuaranteedUpdateFrom(ctx context.Context, key string, pre *Preconditions, fn UpdateFunc, cached runtime.Object) (runtime.Object, error)
}

// GuaranteedUpdate implements Interface by writing to the store. It starts
// from the cached object when there is one, as upstream does: the write is
// conditional on the cached revision, so a stale cache costs a retry, and
// the common case saves a read and a decode.
func (c *Cacher) GuaranteedUpdate(ctx context.Context, key string, pre *Preconditions, fn UpdateFunc) (runtime.Object, error) {
	if u, ok := c.cfg.Store.(cachedUpdater); ok {
		if obj := c.cached(key); obj != nil {
			return u.GuaranteedUpdateFrom(ctx, key, pre, fn, obj)
		}
	}
	return c.cfg.Store.GuaranteedUpdate(ctx, key, pre, fn)
}

// cached returns the cached object at key, or nil.
func (c *Cacher) cached(key string) runtime.Object {
	select {
	case <-c.ready:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.items[key]; e != nil {
		return e.obj
	}
	return nil
}

// Delete implements Interface by writing to the store.
func (c *Cacher) Delete(ctx context.Context, key string, pre *Preconditions, validate func(cur runtime.Object) error) (runtime.Object, error) {
	return c.cfg.Store.Delete(ctx, key, pre, validate)
}

// List implements Interface. resourceVersion "0" is answered from the
// cache (ignoring Limit, as upstream does, since the cache cannot page
// consistently); so is NotOlderThan when the cache is already that fresh.
// Consistent ("") and exact reads, and continued lists, go to the store.
func (c *Cacher) List(ctx context.Context, prefix string, opts ListOptions) (*ListResult, error) {
	if opts.Continue != "" || opts.ResourceVersion == "" {
		return c.cfg.Store.List(ctx, prefix, opts)
	}
	readAt, atLeast, err := listRevisions(opts)
	if err != nil {
		return nil, err
	}
	if readAt > 0 || (atLeast > 0 && opts.Limit > 0) {
		return c.cfg.Store.List(ctx, prefix, opts)
	}
	defer c.cfg.Metrics.observe("list_cached", c.cfg.Resource, time.Now())
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.rev < atLeast {
		c.mu.Unlock()
		return c.cfg.Store.List(ctx, prefix, opts)
	}
	keys := make([]string, 0, len(c.items))
	for key, e := range c.items {
		if inScope(prefix, key) && matchesEntry(opts.Predicate, e) {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	out := &ListResult{Items: make([]runtime.Object, len(keys)), ResourceVersion: c.rev}
	for i, key := range keys {
		out.Items[i] = c.items[key].obj
	}
	c.mu.Unlock()
	return out, nil
}

// matchesEntry applies p to precomputed attributes.
func matchesEntry(p Predicate, e *cacheEntry) bool {
	if p.Empty() {
		return true
	}
	if p.Label != nil && !p.Label.Matches(e.labels) {
		return false
	}
	if p.Field != nil && !p.Field.Matches(e.fields) {
		return false
	}
	return true
}

// objectRevision parses obj's resourceVersion.
func objectRevision(obj runtime.Object) (int64, error) {
	acc, err := meta.Accessor(obj)
	if err != nil {
		return 0, fmt.Errorf("revision of %T: %w", obj, err)
	}
	return ParseResourceVersion(acc.GetResourceVersion())
}
