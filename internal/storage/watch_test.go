package storage

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// backend builds a store to watch (the etcd store itself, or a cacher in
// front of it) and returns the etcd store for writes.
type backend func(t *testing.T) (watched Interface, store *Etcd)

var backends = map[string]backend{
	"etcd": func(t *testing.T) (Interface, *Etcd) {
		s, _ := newPodStore(t)
		return s, s
	},
	"cacher": func(t *testing.T) (Interface, *Etcd) {
		s, _ := newPodStore(t)
		return newPodCacher(t, s, func(cfg *CacherConfig) { cfg.BookmarkInterval = 50 * time.Millisecond }), s
	},
}

func TestWatchTransitions(t *testing.T) {
	t.Parallel()
	for name, mk := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w, s := mk(t)
			ctx := context.Background()
			a := mustCreate(t, s, makePod("ns", "a").label("app", "db").obj())

			tests := []struct {
				name string
				pred Predicate
				// want is filled in from the writes' revisions below.
				want func(rv map[string]string) []gotEvent
			}{
				{name: "all", pred: Predicate{}, want: func(rv map[string]string) []gotEvent {
					return []gotEvent{
						{watch.Modified, "a", rv["a->web"]},
						{watch.Modified, "a", rv["a->n1"]},
						{watch.Modified, "a", rv["a->db"]},
						{watch.Added, "b", rv["b"]},
						{watch.Added, "c", rv["c"]},
						{watch.Deleted, "b", rv["-b"]},
					}
				}},
				{name: "label selector sees entries and exits", pred: labelPred(t, "app=web"), want: func(rv map[string]string) []gotEvent {
					return []gotEvent{
						{watch.Added, "a", rv["a->web"]},
						{watch.Modified, "a", rv["a->n1"]},
						{watch.Deleted, "a", rv["a->db"]},
						{watch.Added, "b", rv["b"]},
						{watch.Deleted, "b", rv["-b"]},
					}
				}},
				{name: "field selector", pred: fieldPred(t, "spec.nodeName=n1"), want: func(rv map[string]string) []gotEvent {
					return []gotEvent{
						{watch.Added, "a", rv["a->n1"]},
						{watch.Modified, "a", rv["a->db"]},
					}
				}},
			}
			watches := make([]watch.Interface, len(tests))
			for i, tt := range tests {
				wi, err := w.Watch(ctx, podPrefix+"ns/", WatchOptions{ResourceVersion: a.ResourceVersion, Predicate: tt.pred})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(wi.Stop)
				watches[i] = wi
			}

			rv := map[string]string{}
			rv["a->web"] = mustUpdate(t, s, podKey(a), func(p *corev1.Pod) { p.Labels["app"] = "web" }).ResourceVersion
			rv["a->n1"] = mustUpdate(t, s, podKey(a), func(p *corev1.Pod) { p.Spec.NodeName = "n1" }).ResourceVersion
			rv["a->db"] = mustUpdate(t, s, podKey(a), func(p *corev1.Pod) { p.Labels["app"] = "db" }).ResourceVersion
			b := mustCreate(t, s, makePod("ns", "b").label("app", "web").obj())
			rv["b"] = b.ResourceVersion
			rv["c"] = mustCreate(t, s, makePod("ns", "c").label("app", "db").obj()).ResourceVersion
			mustCreate(t, s, makePod("other", "d").label("app", "web").obj()) // outside the prefix
			del, err := s.Delete(ctx, podKey(b), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			rv["-b"] = del.(*corev1.Pod).ResourceVersion

			for i, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					want := tt.want(rv)
					var got []gotEvent
					for _, ev := range collect(t, watches[i], len(want), false) {
						got = append(got, summarize(ev))
					}
					if !slices.Equal(got, want) {
						t.Errorf("events:\n got %v\nwant %v", got, want)
					}
				})
			}
		})
	}
}

func TestWatchInitialEvents(t *testing.T) {
	t.Parallel()
	for name, mk := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w, s := mk(t)
			ctx := context.Background()
			mustCreate(t, s, makePod("ns", "a").label("app", "web").obj())
			last := mustCreate(t, s, makePod("ns", "b").label("app", "db").obj())
			if c, ok := w.(*Cacher); ok {
				waitRevision(t, c, rvOf(t, last))
			}

			tests := []struct {
				name      string
				opts      WatchOptions
				wantTypes []watch.EventType
			}{
				{name: "rv 0 sends state", opts: WatchOptions{ResourceVersion: "0"}, wantTypes: []watch.EventType{watch.Added, watch.Added, watch.Added}},
				{name: "rv empty sends state", opts: WatchOptions{Predicate: labelPred(t, "app=web")}, wantTypes: []watch.EventType{watch.Added, watch.Added}},
				{name: "send initial events ends with bookmark", opts: WatchOptions{SendInitialEvents: true, Predicate: labelPred(t, "app=web")},
					wantTypes: []watch.EventType{watch.Added, watch.Bookmark, watch.Added}},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					wi, err := w.Watch(ctx, podPrefix, tt.opts)
					if err != nil {
						t.Fatal(err)
					}
					defer wi.Stop()
					// Initial events first, then a live one.
					var evs []watch.Event
					evs = append(evs, collect(t, wi, len(tt.wantTypes)-1, tt.opts.SendInitialEvents)...)
					live := mustCreate(t, s, makePod("ns", "live").label("app", "web").obj())
					evs = append(evs, collect(t, wi, 1, false)...)
					gone, err := s.Delete(ctx, podKey(live), nil, nil)
					if err != nil {
						t.Fatal(err)
					}
					if c, ok := w.(*Cacher); ok {
						// The next case's initial state must not race the cache.
						waitRevision(t, c, rvOf(t, gone))
					}
					var types []watch.EventType
					for _, ev := range evs {
						types = append(types, ev.Type)
					}
					if !slices.Equal(types, tt.wantTypes) {
						t.Fatalf("types = %v, want %v", types, tt.wantTypes)
					}
					if tt.opts.SendInitialEvents {
						bm := evs[len(evs)-2].Object.(*corev1.Pod)
						if bm.Annotations[metav1.InitialEventsAnnotationKey] != "true" || rvOf(t, bm) < rvOf(t, last) {
							t.Errorf("bookmark = rv %s annotations %v, want rv >= %s and the initial-events-end annotation", bm.ResourceVersion, bm.Annotations, last.ResourceVersion)
						}
					}
				})
			}
		})
	}
}

func TestWatchTooOld(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T) (Interface, *Etcd)
	}{
		{name: "etcd after compaction", setup: func(t *testing.T) (Interface, *Etcd) {
			s, c := newPodStore(t)
			mustCreate(t, s, makePod("ns", "x").obj())
			for i := range 3 {
				mustUpdate(t, s, podPrefix+"ns/x", func(p *corev1.Pod) { p.Spec.Hostname = strconv.Itoa(i) })
			}
			resp, err := c.Get(context.Background(), "/")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Compact(context.Background(), resp.Header.Revision); err != nil {
				t.Fatal(err)
			}
			return s, s
		}},
		{name: "cacher beyond its window and etcd compacted", setup: func(t *testing.T) (Interface, *Etcd) {
			s, client := newPodStore(t)
			c := newPodCacher(t, s, func(cfg *CacherConfig) { cfg.EventBufferSize = 2 })
			mustCreate(t, s, makePod("ns", "x").obj())
			var last *corev1.Pod
			for i := range 3 {
				last = mustUpdate(t, s, podPrefix+"ns/x", func(p *corev1.Pod) { p.Spec.Hostname = strconv.Itoa(i) })
			}
			waitRevision(t, c, rvOf(t, last))
			if _, err := client.Compact(context.Background(), rvOf(t, last)); err != nil {
				t.Fatal(err)
			}
			return c, s
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w, _ := tt.setup(t)
			wi, err := w.Watch(context.Background(), podPrefix, WatchOptions{ResourceVersion: "1"})
			if err != nil {
				t.Fatal(err)
			}
			defer wi.Stop()
			ev := collect(t, wi, 1, false)[0]
			st, ok := ev.Object.(*metav1.Status)
			if ev.Type != watch.Error || !ok || st.Code != http.StatusGone || st.Reason != metav1.StatusReasonExpired {
				t.Fatalf("event = %s %#v, want ERROR 410 Expired", ev.Type, ev.Object)
			}
			if want := "too old resource version: 1 ("; len(st.Message) < len(want) || st.Message[:len(want)] != want {
				t.Errorf("message = %q, want prefix %q", st.Message, want)
			}
			expectClosed(t, wi)
		})
	}
}

// TestCacherReplaysOlderThanWindowFromEtcd: a watch from a revision the
// cache no longer holds (a client resuming after a server restart) gets
// every change since then from etcd's history, not 410.
func TestCacherReplaysOlderThanWindowFromEtcd(t *testing.T) {
	t.Parallel()
	s, _ := newPodStore(t)
	first := mustCreate(t, s, makePod("ns", "x").obj())
	c := newPodCacher(t, s, func(cfg *CacherConfig) { cfg.EventBufferSize = 2 })
	var last *corev1.Pod
	for i := range 3 {
		last = mustUpdate(t, s, podPrefix+"ns/x", func(p *corev1.Pod) { p.Spec.Hostname = strconv.Itoa(i) })
	}
	waitRevision(t, c, rvOf(t, last))
	wi, err := c.Watch(context.Background(), podPrefix, WatchOptions{ResourceVersion: first.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer wi.Stop()
	evs := collect(t, wi, 3, false)
	for i, ev := range evs {
		p, ok := ev.Object.(*corev1.Pod)
		if ev.Type != watch.Modified || !ok || p.Spec.Hostname != strconv.Itoa(i) {
			t.Fatalf("event %d = %s %#v, want MODIFIED with hostname %d", i, ev.Type, ev.Object, i)
		}
	}
}

func TestWatchStopsWithContext(t *testing.T) {
	t.Parallel()
	for name, mk := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w, _ := mk(t)
			ctx, cancel := context.WithCancel(context.Background())
			wi, err := w.Watch(ctx, podPrefix, WatchOptions{ResourceVersion: "0"})
			if err != nil {
				t.Fatal(err)
			}
			cancel()
			expectClosed(t, wi)
		})
	}
}

func TestWatchProgressBookmarks(t *testing.T) {
	t.Parallel()
	for name, mk := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w, s := mk(t)
			p := mustCreate(t, s, makePod("ns", "a").obj())
			wi, err := w.Watch(context.Background(), podPrefix, WatchOptions{ResourceVersion: p.ResourceVersion, ProgressNotify: true})
			if err != nil {
				t.Fatal(err)
			}
			defer wi.Stop()
			// A write elsewhere in etcd advances the revision; the idle
			// watcher must learn of it through a bookmark.
			put, err := s.client.Put(context.Background(), "/elsewhere", "x")
			if err != nil {
				t.Fatal(err)
			}
			other := put.Header.Revision
			deadline := time.After(10 * time.Second)
			for {
				select {
				case ev, ok := <-wi.ResultChan():
					if !ok {
						t.Fatal("watch closed")
					}
					if ev.Type == watch.Bookmark && rvOf(t, ev.Object) >= other {
						return
					}
				case <-deadline:
					t.Fatalf("no bookmark at or after %d", other)
				}
			}
		})
	}
}
