package storage

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/watch"
)

func TestCacherFanOut(t *testing.T) {
	t.Parallel()
	s, _ := newPodStore(t)
	counting := &countingStore{Interface: s}
	c := newPodCacher(t, counting, nil)
	ctx := context.Background()
	start := mustCreate(t, s, makePod("ns", "seed").obj())

	const watchers = 500
	// Every tenth watcher selects node n1 only, as a kubelet would.
	ws := make([]watch.Interface, watchers)
	for i := range ws {
		opts := WatchOptions{ResourceVersion: start.ResourceVersion}
		if i%10 == 0 {
			opts.Predicate = fieldPred(t, "spec.nodeName=n1")
		}
		w, err := c.Watch(ctx, podPrefix, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
		ws[i] = w
	}
	const writes = 20
	for i := range writes {
		b := makePod("ns", fmt.Sprintf("p%02d", i))
		if i%4 == 0 {
			b = b.node("n1")
		}
		mustCreate(t, s, b.obj())
	}

	var wg sync.WaitGroup
	errs := make(chan string, watchers)
	for i, w := range ws {
		want := writes
		if i%10 == 0 {
			want = writes / 4
		}
		wg.Go(func() {
			evs, err := collectErr(w, want, false)
			if err != nil {
				errs <- fmt.Sprintf("watcher %d: %v", i, err)
				return
			}
			for j, ev := range evs {
				if ev.Type != watch.Added {
					errs <- fmt.Sprintf("watcher %d event %d: %s", i, j, ev.Type)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := counting.watches.Load(); n != 1 {
		t.Errorf("%d watchers opened %d etcd watches, want 1", watchers, n)
	}
}

func TestCacherSlowWatcher(t *testing.T) {
	t.Parallel()
	s, _ := newPodStore(t)
	c := newPodCacher(t, s, func(cfg *CacherConfig) { cfg.WatcherBufferSize = 2 })
	ctx := context.Background()
	start := mustCreate(t, s, makePod("ns", "seed").obj())

	slow, err := c.Watch(ctx, podPrefix, WatchOptions{ResourceVersion: start.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Stop()
	fast, err := c.Watch(ctx, podPrefix, WatchOptions{ResourceVersion: start.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Stop()

	// The fast watcher reads each event before the next write, so it never
	// lags by more than one; the slow one never reads.
	const writes = 30
	for i := range writes {
		p := mustCreate(t, s, makePod("ns", fmt.Sprintf("p%02d", i)).obj())
		ev := collect(t, fast, 1, false)[0]
		if got := summarize(ev); got.Name != p.Name || got.RV != p.ResourceVersion {
			t.Fatalf("fast watcher got %v, want %s at %s", got, p.Name, p.ResourceVersion)
		}
	}
	// The slow watcher never read: it must have been closed, not have
	// held up the fast one, and it delivers at most its buffer plus one.
	n := 0
	for range slow.ResultChan() {
		n++
	}
	if n >= writes {
		t.Errorf("slow watcher delivered %d events, want it cut off well before %d", n, writes)
	}
	c.mu.Lock()
	left := len(c.watchers)
	c.mu.Unlock()
	if left != 1 {
		t.Errorf("cacher holds %d watchers, want 1 (the fast one)", left)
	}
}

func TestCacherList(t *testing.T) {
	t.Parallel()
	s, _ := newPodStore(t)
	counting := &countingStore{Interface: s}
	c := newPodCacher(t, counting, nil)
	ctx := context.Background()
	pods := seedPods(t, s, 4)
	last := mustUpdate(t, s, podKey(pods[0]), func(p *corev1.Pod) { p.Spec.NodeName = "n9" })
	waitRevision(t, c, rvOf(t, last))

	tests := []struct {
		name   string
		prefix string
		opts   ListOptions
		want   []string
	}{
		{name: "rv 0 from cache", prefix: podPrefix, opts: ListOptions{ResourceVersion: "0"},
			want: []string{"ns0/p00", "ns0/p01", "ns0/p02", "ns0/p03", "ns1/p00", "ns1/p01", "ns1/p02", "ns1/p03"}},
		{name: "rv 0 ignores limit", prefix: podPrefix + "ns1/", opts: ListOptions{ResourceVersion: "0", Limit: 1},
			want: []string{"ns1/p00", "ns1/p01", "ns1/p02", "ns1/p03"}},
		{name: "rv 0 label", prefix: podPrefix, opts: ListOptions{ResourceVersion: "0", Predicate: labelPred(t, "app=db")},
			want: []string{"ns0/p01", "ns0/p03", "ns1/p01", "ns1/p03"}},
		{name: "rv 0 field sees latest", prefix: podPrefix, opts: ListOptions{ResourceVersion: "0", Predicate: fieldPred(t, "spec.nodeName=n9")},
			want: []string{"ns0/p00"}},
		{name: "not older than", prefix: podPrefix + "ns0/", opts: ListOptions{ResourceVersion: last.ResourceVersion, ResourceVersionMatch: MatchNotOlderThan, Predicate: fieldPred(t, "spec.nodeName=n1")},
			want: []string{"ns0/p01"}},
		{name: "consistent from etcd", prefix: podPrefix, opts: ListOptions{Limit: 3},
			want: []string{"ns0/p00", "ns0/p01", "ns0/p02"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := c.List(ctx, tt.prefix, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := podNames(t, res); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if res.ResourceVersion < rvOf(t, last) {
				t.Errorf("list rv %d older than the last write %s", res.ResourceVersion, last.ResourceVersion)
			}
		})
	}
}

func BenchmarkEtcd(b *testing.B) {
	s, _ := newPodStore(b)
	ctx := context.Background()
	b.Run("create", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			p := makePod("bench", fmt.Sprintf("c%06d", i)).obj()
			if _, err := s.Create(ctx, podKey(p), p); err != nil {
				b.Fatal(err)
			}
		}
	})
	p := mustCreate(b, s, makePod("bench", "get").label("app", "web").obj())
	b.Run("get", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Get(ctx, podKey(p)); err != nil {
				b.Fatal(err)
			}
		}
	})
	for i := range 1000 {
		mustCreate(b, s, makePod("list", fmt.Sprintf("l%04d", i)).label("app", "web").node("n1").obj())
	}
	b.Run("list 1000 etcd", func(b *testing.B) {
		for b.Loop() {
			res, err := s.List(ctx, podPrefix+"list/", ListOptions{})
			if err != nil || len(res.Items) != 1000 {
				b.Fatal(err, len(res.Items))
			}
		}
	})
	c := newPodCacher(b, s, nil)
	b.Run("list 1000 cache", func(b *testing.B) {
		for b.Loop() {
			res, err := c.List(ctx, podPrefix+"list/", ListOptions{ResourceVersion: "0"})
			if err != nil || len(res.Items) != 1000 {
				b.Fatal(err, len(res.Items))
			}
		}
	})
}
