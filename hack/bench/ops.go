package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// result is one row of the table: the latency of every operation of one
// kind at one concurrency, and the wall time they took together.
type result struct {
	op      string
	clients int
	lat     []time.Duration
	// wall is the time from the first operation's start to the last one's
	// end; zero when throughput means nothing for the row (watch delay).
	wall time.Duration
}

// newClientset returns a clientset with its own connection: client-go
// shares one transport between configs that compare equal, which would put
// every "client" on one HTTP/2 connection. A non-nil Proxy func opts out
// of that cache. Rate limits are raised so the client never throttles.
func newClientset(base *rest.Config) (kubernetes.Interface, error) {
	cfg := rest.CopyConfig(base)
	cfg.QPS, cfg.Burst = 5000, 10000
	cfg.ContentType = "application/json"
	cfg.AcceptContentTypes = "application/json"
	cfg.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
	return kubernetes.NewForConfig(cfg)
}

// runSplit runs n operations spread over the clients, client k doing
// operations k, k+c, k+2c, … one after another, and returns each
// operation's latency and the wall time of the whole run.
func runSplit(ctx context.Context, clients []kubernetes.Interface, n int,
	op func(ctx context.Context, cs kubernetes.Interface, i int) error) ([]time.Duration, time.Duration, error) {
	lat := make([]time.Duration, n)
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	start := time.Now()
	for k, cs := range clients {
		wg.Go(func() {
			for i := k; i < n; i += len(clients) {
				t := time.Now()
				if err := op(ctx, cs, i); err != nil {
					errs[k] = fmt.Errorf("operation %d: %w", i, err)
					return
				}
				lat[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	return lat, time.Since(start), errors.Join(errs...)
}

// level benchmarks one concurrency level in its own namespace: creates
// (with a separate watcher timing each event's delivery), gets, updates,
// then lists of the n objects.
func level(ctx context.Context, base *rest.Config, clients, n, lists int) ([]result, error) {
	ns := fmt.Sprintf("bench-c%d", clients)
	css := make([]kubernetes.Interface, clients)
	for k := range css {
		cs, err := newClientset(base)
		if err != nil {
			return nil, err
		}
		css[k] = cs
	}
	admin := css[0]
	nsObj, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", ns, err)
	}

	// The watcher has a connection of its own and starts at the
	// namespace's revision, so it sees exactly the creates below.
	watcherCS, err := newClientset(base)
	if err != nil {
		return nil, err
	}
	w, err := watcherCS.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: nsObj.ResourceVersion})
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	defer w.Stop()
	arrived := make(map[string]time.Time, n)
	var seen atomic.Int64 // len(arrived), readable while the watcher runs
	watchDone := make(chan error, 1)
	go func() {
		for ev := range w.ResultChan() {
			now := time.Now()
			switch ev.Type {
			case watch.Added:
				arrived[ev.Object.(*corev1.ConfigMap).Name] = now
				seen.Add(1)
				if len(arrived) == n {
					watchDone <- nil
					return
				}
			case watch.Error:
				watchDone <- fmt.Errorf("watch error event: %v", ev.Object)
				return
			}
		}
		watchDone <- errors.New("watch closed early")
	}()

	objs := make([]*corev1.ConfigMap, n)
	responded := make([]time.Time, n)
	name := func(i int) string { return fmt.Sprintf("cm-%05d", i) }

	var out []result
	lat, wall, err := runSplit(ctx, css, n, func(ctx context.Context, cs kubernetes.Interface, i int) error {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name(i), Labels: map[string]string{"app": "bench"}},
			Data:       map[string]string{"key": fmt.Sprintf("value-%d", i), "config.yaml": "replicas: 3\nimage: busybox\n"},
		}
		created, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
		responded[i] = time.Now()
		objs[i] = created
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	out = append(out, result{op: "create", clients: clients, lat: lat, wall: wall})

	select {
	case err := <-watchDone:
		if err != nil {
			return nil, err
		}
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("watch: %d of %d events after 30s", seen.Load(), n)
	}
	delay := make([]time.Duration, n)
	for i := range n {
		delay[i] = arrived[name(i)].Sub(responded[i])
	}
	out = append(out, result{op: "watch delay", clients: clients, lat: delay})

	lat, wall, err = runSplit(ctx, css, n, func(ctx context.Context, cs kubernetes.Interface, i int) error {
		_, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, name(i), metav1.GetOptions{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	out = append(out, result{op: "get", clients: clients, lat: lat, wall: wall})

	lat, wall, err = runSplit(ctx, css, n, func(ctx context.Context, cs kubernetes.Interface, i int) error {
		cm := objs[i].DeepCopy()
		cm.Data["key"] = fmt.Sprintf("updated-%d", i)
		_, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("update: %w", err)
	}
	out = append(out, result{op: "update", clients: clients, lat: lat, wall: wall})

	for _, l := range []struct{ op, rv string }{
		{fmt.Sprintf("list %d", n), ""},       // consistent read, the client default
		{fmt.Sprintf("list %d rv=0", n), "0"}, // may be served from the watch cache
	} {
		lat, wall, err = runSplit(ctx, css, lists, func(ctx context.Context, cs kubernetes.Interface, _ int) error {
			list, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{ResourceVersion: l.rv})
			if err == nil && len(list.Items) != n {
				err = fmt.Errorf("listed %d objects, want %d", len(list.Items), n)
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l.op, err)
		}
		out = append(out, result{op: l.op, clients: clients, lat: lat, wall: wall})
	}
	return out, nil
}
