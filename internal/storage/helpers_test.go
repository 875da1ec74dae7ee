package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

const podPrefix = "/registry/pods/"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startEtcd runs a real embedded etcd for one test.
func startEtcd(t testing.TB) *clientv3.Client {
	t.Helper()
	s, err := etcd.New(etcd.Config{
		DataDir:                t.TempDir(),
		ListenClientURL:        "http://127.0.0.1:0",
		ListenPeerURL:          "http://127.0.0.1:0",
		ProgressNotifyInterval: 100 * time.Millisecond,
		Logger:                 quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s.Client()
}

func newPodStore(t testing.TB) (*Etcd, *clientv3.Client) {
	t.Helper()
	c := startEtcd(t)
	return NewEtcd(c, func() runtime.Object { return &corev1.Pod{} }, Options{Resource: "pods", Logger: quiet}), c
}

// podBuilder builds test pods: makePod("ns", "a").labels("app", "web").node("n1").obj().
type podBuilder struct{ p *corev1.Pod }

func makePod(ns, name string) podBuilder {
	return podBuilder{&corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name),
	}}}
}

func (b podBuilder) label(k, v string) podBuilder {
	if b.p.Labels == nil {
		b.p.Labels = map[string]string{}
	}
	b.p.Labels[k] = v
	return b
}

func (b podBuilder) node(n string) podBuilder { b.p.Spec.NodeName = n; return b }
func (b podBuilder) obj() *corev1.Pod         { return b.p }

func podKey(p *corev1.Pod) string { return podPrefix + p.Namespace + "/" + p.Name }

// podAttrs are the selectable fields of a pod, as the API server offers them.
func podAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil, errors.New("not a pod")
	}
	return labels.Set(p.Labels), fields.Set{
		"metadata.name":      p.Name,
		"metadata.namespace": p.Namespace,
		"spec.nodeName":      p.Spec.NodeName,
	}, nil
}

func labelPred(t testing.TB, sel string) Predicate {
	t.Helper()
	l, err := labels.Parse(sel)
	if err != nil {
		t.Fatal(err)
	}
	return Predicate{Label: l, Attrs: podAttrs}
}

func fieldPred(t testing.TB, sel string) Predicate {
	t.Helper()
	f, err := fields.ParseSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	return Predicate{Field: f, Attrs: podAttrs}
}

func mustCreate(t testing.TB, s Interface, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	out, err := s.Create(context.Background(), podKey(p), p)
	if err != nil {
		t.Fatalf("create %s: %v", p.Name, err)
	}
	return out.(*corev1.Pod)
}

func mustUpdate(t testing.TB, s Interface, key string, mutate func(p *corev1.Pod)) *corev1.Pod {
	t.Helper()
	out, err := s.GuaranteedUpdate(context.Background(), key, nil, func(cur runtime.Object) (runtime.Object, error) {
		p := cur.(*corev1.Pod).DeepCopy()
		mutate(p)
		return p, nil
	})
	if err != nil {
		t.Fatalf("update %s: %v", key, err)
	}
	return out.(*corev1.Pod)
}

// gotEvent is the part of a watch event tests compare.
type gotEvent struct {
	Type watch.EventType
	Name string
	RV   string
}

func summarize(ev watch.Event) gotEvent {
	if p, ok := ev.Object.(*corev1.Pod); ok {
		return gotEvent{Type: ev.Type, Name: p.Name, RV: p.ResourceVersion}
	}
	if st, ok := ev.Object.(*metav1.Status); ok {
		return gotEvent{Type: ev.Type, Name: st.Message, RV: string(st.Reason)}
	}
	return gotEvent{Type: ev.Type}
}

// collect reads n events (skipping bookmarks unless keepBookmarks), failing
// after a deadline.
func collect(t testing.TB, w watch.Interface, n int, keepBookmarks bool) []watch.Event {
	t.Helper()
	out, err := collectErr(w, n, keepBookmarks)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// collectErr is collect for goroutines other than the test's.
func collectErr(w watch.Interface, n int, keepBookmarks bool) ([]watch.Event, error) {
	var out []watch.Event
	deadline := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return out, fmt.Errorf("watch closed after %d of %d events: %v", len(out), n, out)
			}
			if ev.Type == watch.Bookmark && !keepBookmarks {
				continue
			}
			out = append(out, ev)
		case <-deadline:
			return out, fmt.Errorf("got %d of %d events before the deadline: %v", len(out), n, out)
		}
	}
	return out, nil
}

// expectClosed waits for w's channel to close, draining it.
func expectClosed(t testing.TB, w watch.Interface) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-w.ResultChan():
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("watch not closed before the deadline")
		}
	}
}

// countingStore counts the etcd watches the cacher opens.
type countingStore struct {
	Interface
	watches atomic.Int32
}

func (c *countingStore) Watch(ctx context.Context, prefix string, opts WatchOptions) (watch.Interface, error) {
	c.watches.Add(1)
	return c.Interface.Watch(ctx, prefix, opts)
}

func newPodCacher(t testing.TB, store Interface, mutate func(*CacherConfig)) *Cacher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg := CacherConfig{
		Store:   store,
		Prefix:  podPrefix,
		NewFunc: func() runtime.Object { return &corev1.Pod{} },
		Attrs:   podAttrs,
		Options: Options{Resource: "pods", Logger: quiet},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := NewCacher(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("cacher not ready")
	}
	return c
}

// waitRevision polls until the cacher has seen rev.
func waitRevision(t testing.TB, c *Cacher, rev int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.Revision() < rev {
		if time.Now().After(deadline) {
			t.Fatalf("cacher at revision %d, want %d", c.Revision(), rev)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func rvOf(t testing.TB, obj runtime.Object) int64 {
	t.Helper()
	rv, err := objectRevision(obj)
	if err != nil {
		t.Fatal(err)
	}
	return rv
}
