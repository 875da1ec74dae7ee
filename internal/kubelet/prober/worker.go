package prober

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// maxRetries is how often a probe that could not run at all is retried
// within one round before the round is given up.
const maxRetries = 3

// worker runs one probe of one container run on its period until
// cancelled.
type worker struct {
	m         *Manager
	uid       types.UID
	podName   string
	container corev1.Container
	kind      Kind
	probe     *corev1.Probe
	id        string
	startedAt time.Time
	period    time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	// trigger asks for a round now; one pending request is enough.
	trigger chan struct{}

	// Owned by the worker goroutine.
	last   Result
	streak int
	// onHold is set after a liveness or startup failure: the container
	// is going to be restarted, and probing it meanwhile only adds noise
	// (and exec into a dying container), so the Failure stands until a
	// new container ID brings a new worker.
	onHold bool
}

func newWorker(m *Manager, pod *corev1.Pod, c *corev1.Container, kind Kind, p *corev1.Probe, st ContainerState) *worker {
	period := time.Duration(p.PeriodSeconds) * time.Second
	if period <= 0 {
		period = 10 * time.Second
	}
	ctx, cancel := context.WithCancel(m.ctx)
	return &worker{
		m:         m,
		uid:       pod.UID,
		podName:   pod.Namespace + "/" + pod.Name,
		container: *c.DeepCopy(),
		kind:      kind,
		probe:     p.DeepCopy(),
		id:        st.ID,
		startedAt: st.StartedAt,
		period:    period,
		ctx:       ctx,
		cancel:    cancel,
		trigger:   make(chan struct{}, 1),
	}
}

func (w *worker) wake() {
	select {
	case w.trigger <- struct{}{}:
	default:
	}
}

// run probes at once and then every period, or sooner when woken.
func (w *worker) run() {
	defer w.m.wg.Done()
	defer w.cancel()
	ticker := w.m.cfg.Clock.NewTicker(w.period)
	defer ticker.Stop()
	for w.ctx.Err() == nil {
		w.round()
		if w.m.probed != nil && w.ctx.Err() == nil {
			w.m.probed(w)
		}
		select {
		case <-w.ctx.Done():
		case <-ticker.C():
		case <-w.trigger:
		}
	}
}

// round runs the probe if it is due and turns its outcome into a result
// once the success or failure threshold is reached.
func (w *worker) round() {
	pod, started, ok := w.m.view(w)
	if !ok || w.onHold {
		return
	}
	// A pod being deleted is shutting its containers down: a failing
	// liveness or startup probe must not make the kubelet restart them.
	if pod.DeletionTimestamp != nil && w.kind != Readiness {
		w.m.setResult(w, Success, "")
		return
	}
	// Whole seconds, as upstream: a probe with initialDelaySeconds 5
	// runs at the first tick at least 5 s after the start.
	if int64(w.m.cfg.Clock.Since(w.startedAt)/time.Second) < int64(w.probe.InitialDelaySeconds) {
		return
	}
	// The startup probe stops once it has succeeded, the others only
	// begin then.
	if (w.kind == Startup) == started {
		return
	}

	target := Target{PodIP: pod.Status.PodIP, ContainerID: w.id, Container: &w.container}
	var (
		res Result
		out string
		err error
	)
	for range maxRetries {
		res, out, err = Run(w.ctx, w.probe, target, w.m.cfg.Runtime)
		if err == nil || w.ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		// Not a verdict on the container: keep the previous result.
		if w.ctx.Err() == nil {
			w.m.log.Warn("probe could not run", "pod", w.podName, "container", w.container.Name, "probe", w.kind.String(), "err", err)
		}
		return
	}

	if res == w.last {
		w.streak++
	} else {
		w.last, w.streak = res, 1
	}
	if res == Failure && w.streak < threshold(w.probe.FailureThreshold, 3) ||
		res == Success && w.streak < threshold(w.probe.SuccessThreshold, 1) {
		return
	}
	w.m.setResult(w, res, out)
	if res == Failure && w.kind != Readiness {
		w.onHold = true
		w.streak = 0
	}
}

func threshold(v int32, def int) int {
	if v <= 0 {
		return def
	}
	return int(v)
}
