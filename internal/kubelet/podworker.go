package kubelet

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// podWorker owns one pod: its goroutine is the only one that changes the
// pod's containers, so syncs of one pod never overlap while different pods
// proceed in parallel.
type podWorker struct {
	k   *Kubelet
	uid types.UID

	mu sync.Mutex
	// pod is the newest copy from the informer.
	pod *corev1.Pod
	// deleted: the object is gone from the API server.
	deleted bool
	// kick has room for one pending wake-up, so wakes coalesce.
	kick chan struct{}
}

// worker returns the pod's worker, starting it on first sight.
func (k *Kubelet) worker(ctx context.Context, p *corev1.Pod) *podWorker {
	k.workersMu.Lock()
	defer k.workersMu.Unlock()
	if w, ok := k.workers[p.UID]; ok {
		return w
	}
	w := &podWorker{k: k, uid: p.UID, pod: p, kick: make(chan struct{}, 1)}
	k.workers[p.UID] = w
	k.wg.Add(1)
	go w.run(ctx)
	return w
}

func (w *podWorker) update(p *corev1.Pod) {
	w.mu.Lock()
	w.pod = p
	w.mu.Unlock()
	w.wake()
}

func (w *podWorker) gone() {
	w.mu.Lock()
	w.deleted = true
	w.mu.Unlock()
	w.wake()
}

func (w *podWorker) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *podWorker) snapshot() (*corev1.Pod, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod, w.deleted
}

// run syncs the pod whenever woken, or when the sync asked to be run
// again (a back-off or grace period ending), until the pod is finished.
func (w *podWorker) run(ctx context.Context) {
	defer w.k.wg.Done()
	defer func() {
		w.k.workersMu.Lock()
		if w.k.workers[w.uid] == w {
			delete(w.k.workers, w.uid)
		}
		w.k.workersMu.Unlock()
	}()
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-timer:
		}
		pod, deleted := w.snapshot()
		res := w.k.syncPod(ctx, pod, deleted)
		if res.done {
			w.k.forgetPod(w.uid)
			return
		}
		timer = nil
		if res.requeueAfter > 0 {
			timer = w.k.clock.After(res.requeueAfter)
		}
	}
}

// syncResult tells a worker what comes next.
type syncResult struct {
	// requeueAfter > 0 runs the sync again after that long.
	requeueAfter time.Duration
	// done: the pod is gone and cleaned up; the worker ends.
	done bool
}

// soonest keeps the earlier of two requeue delays.
func (r *syncResult) soonest(d time.Duration) {
	if d > 0 && (r.requeueAfter == 0 || d < r.requeueAfter) {
		r.requeueAfter = d
	}
}
