package prober

import (
	"context"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/clock"
)

// Config is what a Manager needs.
type Config struct {
	// Runtime runs exec probes (ExecSync); nil fails every exec probe.
	Runtime runtimeapi.RuntimeServiceClient
	// Clock paces the probes; default the real clock.
	Clock clock.WithTicker
	// OnChange is called, from a probe goroutine, when a result flips,
	// so the kubelet re-syncs the pod: readiness changes its status, a
	// liveness or startup Failure means the container must be restarted.
	// The initial results a new container starts with are not reported.
	// It must not block.
	OnChange func(podUID types.UID, container string, kind Kind, result Result)
	Logger   *slog.Logger
}

// ContainerState is what UpdatePod needs to know of a container.
type ContainerState struct {
	// ID identifies this run of the container; a new ID is a restart.
	ID string
	// Running is whether the container is running now.
	Running bool
	// StartedAt is when it started; initialDelaySeconds count from here.
	StartedAt time.Time
}

// Manager probes the containers of the pods it is told about, one
// goroutine per probe of each running container, and answers what those
// probes concluded.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	pods    map[types.UID]*podState
	stopped bool

	// probed, set only by tests before any UpdatePod, is called after
	// each probe round of a worker so tests can step a fake clock in
	// lockstep with the workers instead of sleeping.
	probed func(w *worker)
}

type podState struct {
	pod        *corev1.Pod
	containers map[string]*containerState
}

// containerState is one run of a container: its results live and die
// with its ID.
type containerState struct {
	id      string
	hasKind [numKinds]bool
	results [numKinds]Result
	workers [numKinds]*worker
}

// NewManager returns a Manager with no pods. Call Stop (or Run) to end
// its goroutines.
func NewManager(cfg Config) *Manager {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "prober"),
		ctx:    ctx,
		cancel: cancel,
		pods:   map[types.UID]*podState{},
	}
}

// Run blocks until ctx ends, then stops every probe.
func (m *Manager) Run(ctx context.Context) error {
	<-ctx.Done()
	m.Stop()
	return nil
}

// Stop ends every probe goroutine and waits for them. Later calls to
// UpdatePod are ignored.
func (m *Manager) Stop() {
	m.mu.Lock()
	m.stopped = true
	m.pods = map[types.UID]*podState{}
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
}

// UpdatePod brings the probes of pod in line with statuses, the state of
// its containers by name: running containers with probes get a worker
// per probe; a container that stopped, vanished or has a new ID loses
// its workers and results, and a new ID starts afresh from the initial
// results (liveness Success, readiness Failure, startup Unknown). The
// pod itself is kept, unmodified and not copied, for its IP and deletion
// mark, so the caller must not change it afterwards.
func (m *Manager) UpdatePod(pod *corev1.Pod, statuses map[string]ContainerState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return
	}
	ps := m.pods[pod.UID]
	if ps == nil {
		ps = &podState{containers: map[string]*containerState{}}
		m.pods[pod.UID] = ps
	}
	ps.pod = pod

	seen := map[string]bool{}
	for _, c := range probedContainers(pod) {
		seen[c.Name] = true
		st, ok := statuses[c.Name]
		running := ok && st.Running
		cs := ps.containers[c.Name]
		if cs != nil && (!running || st.ID != cs.id) {
			cs.stop()
			delete(ps.containers, c.Name)
			cs = nil
		}
		if running && cs == nil {
			ps.containers[c.Name] = m.startContainer(pod, c, st)
		}
	}
	for name, cs := range ps.containers {
		if !seen[name] {
			cs.stop()
			delete(ps.containers, name)
		}
	}
}

// RemovePod stops the probes of a pod and forgets it.
func (m *Manager) RemovePod(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ps := m.pods[uid]; ps != nil {
		for _, cs := range ps.containers {
			cs.stop()
		}
		delete(m.pods, uid)
	}
}

// Ready reports whether a container is ready: running, started, and
// either without readiness probe or with one that last succeeded.
func (m *Manager) Ready(uid types.UID, container string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	cs := m.lookup(uid, container)
	if cs == nil || !cs.started() {
		return false
	}
	return !cs.hasKind[Readiness] || cs.results[Readiness] == Success
}

// Started reports whether a container is running and either has no
// startup probe or its startup probe succeeded.
func (m *Manager) Started(uid types.UID, container string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	cs := m.lookup(uid, container)
	return cs != nil && cs.started()
}

// Result is the current result of a container's probe of kind: Unknown
// when there is no such probe or the container is not running.
func (m *Manager) Result(uid types.UID, container string, kind Kind) Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	cs := m.lookup(uid, container)
	if cs == nil || kind < 0 || kind >= numKinds || !cs.hasKind[kind] {
		return Unknown
	}
	return cs.results[kind]
}

// lookup finds a running container's state; m.mu must be held.
func (m *Manager) lookup(uid types.UID, container string) *containerState {
	if ps := m.pods[uid]; ps != nil {
		return ps.containers[container]
	}
	return nil
}

func (cs *containerState) started() bool {
	return !cs.hasKind[Startup] || cs.results[Startup] == Success
}

func (cs *containerState) stop() {
	for _, w := range cs.workers {
		if w != nil {
			w.cancel()
		}
	}
}

// startContainer sets up the state and workers of a newly seen running
// container; m.mu must be held.
func (m *Manager) startContainer(pod *corev1.Pod, c *corev1.Container, st ContainerState) *containerState {
	cs := &containerState{id: st.ID}
	for kind, p := range [numKinds]*corev1.Probe{Liveness: c.LivenessProbe, Readiness: c.ReadinessProbe, Startup: c.StartupProbe} {
		kind := Kind(kind)
		if p == nil {
			continue
		}
		cs.hasKind[kind] = true
		cs.results[kind] = initialResult(kind)
		w := newWorker(m, pod, c, kind, p, st)
		cs.workers[kind] = w
		m.wg.Add(1)
		go w.run()
	}
	return cs
}

// initialResult is what a probe says before it has run: a container is
// presumed alive (so it is not restarted before being probed), not ready
// (so it gets no traffic before being probed), and not yet started.
func initialResult(kind Kind) Result {
	switch kind {
	case Liveness:
		return Success
	case Readiness:
		return Failure
	}
	return Unknown
}

// probedContainers are the containers that can have probes: the regular
// ones and sidecars (init containers that keep running).
func probedContainers(pod *corev1.Pod) []*corev1.Container {
	var out []*corev1.Container
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			out = append(out, c)
		}
	}
	for i := range pod.Spec.Containers {
		out = append(out, &pod.Spec.Containers[i])
	}
	return out
}

// view is what a worker needs of the shared state for one round: the
// latest pod and whether its container has started. ok is false when
// the worker has been replaced or stopped.
func (m *Manager) view(w *worker) (pod *corev1.Pod, started, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := m.pods[w.uid]
	if ps == nil {
		return nil, false, false
	}
	cs := ps.containers[w.container.Name]
	if cs == nil || cs.workers[w.kind] != w {
		return nil, false, false
	}
	return ps.pod, cs.started(), true
}

// setResult records a worker's verdict and reports a flip. A startup
// success wakes the container's other probes, which waited for it, so
// readiness need not wait a whole period.
func (m *Manager) setResult(w *worker, r Result, output string) {
	m.mu.Lock()
	cs := m.lookup(w.uid, w.container.Name)
	if cs == nil || cs.workers[w.kind] != w {
		m.mu.Unlock()
		return
	}
	old := cs.results[w.kind]
	cs.results[w.kind] = r
	var wake []*worker
	if w.kind == Startup && r == Success && old != Success {
		wake = []*worker{cs.workers[Liveness], cs.workers[Readiness]}
	}
	m.mu.Unlock()

	for _, o := range wake {
		if o != nil {
			o.wake()
		}
	}
	if old == r {
		return
	}
	log := m.log.With("pod", w.podName, "podUID", w.uid, "container", w.container.Name, "probe", w.kind.String())
	if r == Failure {
		log.Info("probe failed", "output", output)
	} else {
		log.Info("probe result changed", "result", r.String())
	}
	if m.cfg.OnChange != nil {
		m.cfg.OnChange(w.uid, w.container.Name, w.kind, r)
	}
}
