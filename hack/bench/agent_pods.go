package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/ptr"

	"github.com/skiffhq/skiff/internal/image"
)

// sleepPod is a plain pod of skiff's busybox image that sleeps: nothing
// pins it, so the scheduler's time is part of its start-up.
func sleepPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "bench-agent"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "sleep", Image: image.BusyboxRef, ImagePullPolicy: corev1.PullIfNotPresent,
			Command: []string{"sleep", "3600"},
		}}},
	}
}

// podWatcher follows one namespace's pods from a watch started before any
// of them existed: when each was first seen Running, which are deleted,
// and each one's last state for error messages.
type podWatcher struct {
	mu      sync.Mutex
	running map[string]time.Time
	gone    map[string]bool
	state   map[string]string
	changed chan struct{} // closed and replaced on every event
	err     error         // why the watch ended early
}

// podWatchClient adapts a namespace's pods to the RetryWatcher.
type podWatchClient struct{ pods typedcorev1.PodInterface }

func (c podWatchClient) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return c.pods.Watch(ctx, opts)
}

// watchPods watches namespace ns from resource version rv until ctx ends.
// The watch resumes where it was if the server closes it.
func watchPods(ctx context.Context, cs kubernetes.Interface, ns, rv string) (*podWatcher, error) {
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, rv, podWatchClient{cs.CoreV1().Pods(ns)})
	if err != nil {
		return nil, fmt.Errorf("watch pods: %w", err)
	}
	w := &podWatcher{running: map[string]time.Time{}, gone: map[string]bool{}, state: map[string]string{}, changed: make(chan struct{})}
	go func() {
		defer rw.Stop()
		for {
			select {
			case ev, ok := <-rw.ResultChan():
				if !ok {
					w.fail(errors.New("pod watch closed"))
					return
				}
				if !w.record(ev, time.Now()) {
					return
				}
			case <-ctx.Done():
				w.fail(ctx.Err())
				return
			}
		}
	}()
	return w, nil
}

// record notes one event seen at now; false when the watch failed.
func (w *podWatcher) record(ev watch.Event, now time.Time) bool {
	p, ok := ev.Object.(*corev1.Pod)
	if !ok {
		w.fail(fmt.Errorf("pod watch: %s event %v", ev.Type, ev.Object))
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case ev.Type == watch.Deleted:
		w.gone[p.Name] = true
	case p.Status.Phase == corev1.PodRunning:
		if _, seen := w.running[p.Name]; !seen {
			w.running[p.Name] = now
		}
	}
	w.state[p.Name] = podState(p)
	close(w.changed)
	w.changed = make(chan struct{})
	return true
}

// podState summarises a pod for a timeout message: phase, and why its
// containers wait.
func podState(p *corev1.Pod) string {
	s := string(p.Status.Phase)
	for _, c := range p.Status.ContainerStatuses {
		if c.State.Waiting != nil {
			s += fmt.Sprintf(" (%s: %s %s)", c.Name, c.State.Waiting.Reason, c.State.Waiting.Message)
		}
	}
	return s
}

func (w *podWatcher) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
	close(w.changed)
	w.changed = make(chan struct{})
}

// waitFor waits until done holds for every name, checking it under the
// lock after each event.
func (w *podWatcher) waitFor(ctx context.Context, names []string, timeout time.Duration, what string, done func(name string) bool) error {
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		var missing []string
		for _, n := range names {
			if !done(n) {
				missing = append(missing, n)
			}
		}
		changed, err := w.changed, w.err
		var detail []string
		for i, n := range missing {
			if i == 5 {
				detail = append(detail, "…")
				break
			}
			detail = append(detail, fmt.Sprintf("%s: %s", n, w.state[n]))
		}
		w.mu.Unlock()
		switch {
		case len(missing) == 0:
			return nil
		case err != nil:
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("%d of %d pods not %s after %s: %s", len(missing), len(names), what, timeout, strings.Join(detail, "; "))
		}
	}
}

// startPods creates the named pods at once, one goroutine each, and
// returns each one's start-up latency: from just before its create to the
// watcher's first sight of it Running.
func startPods(ctx context.Context, cs kubernetes.Interface, w *podWatcher, ns string, names []string, timeout time.Duration) ([]time.Duration, error) {
	before := make([]time.Time, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			before[i] = time.Now()
			if _, err := cs.CoreV1().Pods(ns).Create(ctx, sleepPod(name), metav1.CreateOptions{}); err != nil {
				errs[i] = fmt.Errorf("create pod %s: %w", name, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := w.waitFor(ctx, names, timeout, "Running", func(n string) bool { _, ok := w.running[n]; return ok }); err != nil {
		return nil, err
	}
	lat := make([]time.Duration, len(names))
	w.mu.Lock()
	for i, n := range names {
		lat[i] = w.running[n].Sub(before[i])
	}
	w.mu.Unlock()
	return lat, nil
}

// deletePods deletes the named pods and waits until they are gone: the
// kubelet confirms a deletion only once it has removed the pod's
// containers and sandbox. The grace period is short because sleep, as
// PID 1, ignores SIGTERM and would otherwise hold every round for 30 s.
func deletePods(ctx context.Context, cs kubernetes.Interface, w *podWatcher, ns string, names []string, timeout time.Duration) error {
	var errs []error
	for _, name := range names {
		if err := cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)}); err != nil {
			errs = append(errs, fmt.Errorf("delete pod %s: %w", name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return w.waitFor(ctx, names, timeout, "gone", func(n string) bool { return w.gone[n] })
}

// podNames returns n names: prefix-00, prefix-01, …
func podNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%02d", prefix, i)
	}
	return out
}
