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
//
// Workers are found, created, woken and retired only under
// Kubelet.workersMu, so an update can never reach a worker that has
// already decided to end: either the worker sees the wake-up and syncs
// again, or it is gone from the map and the update starts a new one.
type podWorker struct {
	k   *Kubelet
	uid types.UID

	mu sync.Mutex
	// pod is the newest copy from the informer.
	pod *corev1.Pod
	// deleted: the object is gone from the API server.
	deleted bool
	// cancelSync aborts the sync in progress; set only while a sync that
	// runs the pod (rather than terminating it) is in progress, so that a
	// deletion does not wait for an image pull or a sandbox start.
	cancelSync context.CancelFunc
	// kick has room for one pending wake-up, so wakes coalesce.
	kick chan struct{}
}

// dispatch hands the newest copy of a pod to its worker, starting the
// worker on first sight. deleted means the object is gone.
func (k *Kubelet) dispatch(ctx context.Context, p *corev1.Pod, deleted bool) {
	k.workersMu.Lock()
	defer k.workersMu.Unlock()
	w, ok := k.workers[p.UID]
	if !ok {
		if deleted {
			return // never seen running here: nothing to clean up
		}
		w = k.startWorker(ctx, p)
	}
	w.update(p, deleted)
}

// adoptOrphan starts a worker that removes what runs for a pod the API
// server no longer has, unless the pod already has a worker.
func (k *Kubelet) adoptOrphan(ctx context.Context, orphan *corev1.Pod) bool {
	k.workersMu.Lock()
	defer k.workersMu.Unlock()
	if _, ok := k.workers[orphan.UID]; ok {
		return false
	}
	k.startWorker(ctx, orphan).update(orphan, true)
	return true
}

// startWorker registers and starts a worker; workersMu must be held.
func (k *Kubelet) startWorker(ctx context.Context, p *corev1.Pod) *podWorker {
	w := &podWorker{k: k, uid: p.UID, pod: p, kick: make(chan struct{}, 1)}
	k.workers[p.UID] = w
	k.wg.Add(1)
	go w.run(ctx)
	return w
}

// update records the newest copy of the pod and wakes the worker. A pod
// that starts terminating aborts a sync that is still starting it.
func (w *podWorker) update(p *corev1.Pod, deleted bool) {
	w.mu.Lock()
	w.pod = p
	w.deleted = w.deleted || deleted
	if (w.deleted || p.DeletionTimestamp != nil) && w.cancelSync != nil {
		w.cancelSync()
		w.cancelSync = nil
	}
	w.mu.Unlock()
	w.wake()
}

func (w *podWorker) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// begin takes the pod to sync and returns the context for the sync: the
// worker's own when the pod is terminating (cleanup must finish), else
// one that a deletion cancels.
func (w *podWorker) begin(ctx context.Context) (context.Context, *corev1.Pod, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.deleted || w.pod.DeletionTimestamp != nil {
		return ctx, w.pod, w.deleted
	}
	syncCtx, cancel := context.WithCancel(ctx)
	w.cancelSync = cancel
	return syncCtx, w.pod, w.deleted
}

// end releases the context begin made.
func (w *podWorker) end() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cancelSync != nil {
		w.cancelSync()
		w.cancelSync = nil
	}
}

// retire removes the worker from the kubelet once its pod is finished,
// unless an update arrived meanwhile, which must be looked at first.
func (w *podWorker) retire() bool {
	w.k.workersMu.Lock()
	defer w.k.workersMu.Unlock()
	select {
	case <-w.kick:
		return false
	default:
	}
	if w.k.workers[w.uid] == w {
		delete(w.k.workers, w.uid)
	}
	return true
}

// run syncs the pod whenever woken, or when the sync asked to be run
// again (a back-off or grace period ending), until the pod is finished.
func (w *podWorker) run(ctx context.Context) {
	defer w.k.wg.Done()
	var timer <-chan time.Time
	wait := true
	for {
		if wait {
			select {
			case <-ctx.Done():
				return
			case <-w.kick:
			case <-timer:
			}
		}
		wait = true
		syncCtx, pod, deleted := w.begin(ctx)
		res := w.k.syncPod(syncCtx, pod, deleted)
		w.end()
		if ctx.Err() != nil {
			return
		}
		if res.done {
			w.k.forgetPod(w.uid)
			if w.retire() {
				return
			}
			wait = false // an update came while finishing: look at it now
			continue
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
