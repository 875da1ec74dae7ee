package prober

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

// scriptRuntime answers exec probes from a per-(container ID, command)
// script and counts the calls. Commands are "ok" unless set to "fail".
type scriptRuntime struct {
	runtimeapi.RuntimeServiceClient
	mu      sync.Mutex
	failing map[string]bool
	calls   map[string]int
}

func (s *scriptRuntime) ExecSync(_ context.Context, req *runtimeapi.ExecSyncRequest, _ ...grpc.CallOption) (*runtimeapi.ExecSyncResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := req.ContainerId + "/" + req.Cmd[0]
	s.calls[key]++
	if s.failing[key] {
		return &runtimeapi.ExecSyncResponse{Stdout: []byte("unhealthy"), ExitCode: 1}, nil
	}
	return &runtimeapi.ExecSyncResponse{}, nil
}

func (s *scriptRuntime) set(id, cmd, outcome string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing[id+"/"+cmd] = outcome == "fail"
}

func (s *scriptRuntime) count(id, cmd string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[id+"/"+cmd]
}

type change struct {
	uid       types.UID
	container string
	kind      Kind
	result    Result
}

// harness is a Manager on a fake clock whose worker rounds the test can
// wait for, so the clock moves in lockstep with the workers.
type harness struct {
	t       *testing.T
	m       *Manager
	clock   *clocktesting.FakeClock
	rt      *scriptRuntime
	changes chan change

	mu     sync.Mutex
	rounds map[string]chan struct{}
}

func newHarness(t *testing.T) *harness {
	h := &harness{
		t:       t,
		clock:   clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		rt:      &scriptRuntime{failing: map[string]bool{}, calls: map[string]int{}},
		changes: make(chan change, 100),
		rounds:  map[string]chan struct{}{},
	}
	h.m = NewManager(Config{
		Runtime: h.rt,
		Clock:   h.clock,
		OnChange: func(uid types.UID, container string, kind Kind, result Result) {
			h.changes <- change{uid, container, kind, result}
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	h.m.probed = func(w *worker) { h.roundsOf(w.id, w.kind) <- struct{}{} }
	t.Cleanup(h.m.Stop)
	return h
}

func (h *harness) roundsOf(id string, kind Kind) chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	key := id + "/" + kind.String()
	if h.rounds[key] == nil {
		h.rounds[key] = make(chan struct{}, 100)
	}
	return h.rounds[key]
}

// waitRound waits for the next round of the kind probe of container id.
func (h *harness) waitRound(id string, kind Kind) {
	h.t.Helper()
	select {
	case <-h.roundsOf(id, kind):
	case <-time.After(10 * time.Second):
		h.t.Fatalf("no %s round for container %s", kind, id)
	}
}

// drainChanges returns the OnChange calls made so far.
func (h *harness) drainChanges() []change {
	var out []change
	for {
		select {
		case c := <-h.changes:
			out = append(out, c)
		default:
			return out
		}
	}
}

func execProbe(cmd string, period, delay, success, failure int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:        corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{cmd}}},
		PeriodSeconds:       period,
		InitialDelaySeconds: delay,
		SuccessThreshold:    success,
		FailureThreshold:    failure,
	}
}

func testPod(containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "uid-p"},
		Spec:       corev1.PodSpec{Containers: containers},
		Status:     corev1.PodStatus{PodIP: "127.0.0.1"},
	}
}

func running(id string, at time.Time) ContainerState {
	return ContainerState{ID: id, Running: true, StartedAt: at}
}

func TestWorkerThresholds(t *testing.T) {
	type round struct {
		outcome string // what the probe answers this round
		want    Result // the result after the round
		calls   int    // probe calls so far
	}
	tests := []struct {
		name   string
		kind   Kind
		probe  *corev1.Probe
		period time.Duration
		rounds []round
	}{
		{
			name: "readiness needs successThreshold and failureThreshold in a row",
			kind: Readiness, probe: execProbe("x", 5, 0, 2, 2), period: 5 * time.Second,
			rounds: []round{
				{"ok", Failure, 1}, {"ok", Success, 2}, {"fail", Success, 3}, {"ok", Success, 4},
				{"fail", Success, 5}, {"fail", Failure, 6}, {"ok", Failure, 7}, {"ok", Success, 8},
			},
		},
		{
			name: "liveness failure holds until the container restarts",
			kind: Liveness, probe: execProbe("x", 5, 0, 1, 3), period: 5 * time.Second,
			rounds: []round{
				{"fail", Success, 1}, {"fail", Success, 2}, {"ok", Success, 3}, {"fail", Success, 4},
				{"fail", Success, 5}, {"fail", Failure, 6}, {"ok", Failure, 6}, {"ok", Failure, 6},
			},
		},
		{
			name: "defaults: period 10s, failureThreshold 3, successThreshold 1",
			kind: Liveness, probe: execProbe("x", 0, 0, 0, 0), period: 10 * time.Second,
			rounds: []round{{"fail", Success, 1}, {"fail", Success, 2}, {"fail", Failure, 3}},
		},
		{
			name: "readiness default successThreshold 1",
			kind: Readiness, probe: execProbe("x", 0, 0, 0, 0), period: 10 * time.Second,
			rounds: []round{{"ok", Success, 1}, {"fail", Success, 2}, {"fail", Success, 3}, {"fail", Failure, 4}},
		},
		{
			name: "startup stops probing once it succeeded",
			kind: Startup, probe: execProbe("x", 5, 0, 1, 2), period: 5 * time.Second,
			rounds: []round{{"fail", Unknown, 1}, {"ok", Success, 2}, {"fail", Success, 2}, {"fail", Success, 2}},
		},
		{
			name: "startup failure holds",
			kind: Startup, probe: execProbe("x", 5, 0, 1, 2), period: 5 * time.Second,
			rounds: []round{{"fail", Unknown, 1}, {"fail", Failure, 2}, {"ok", Failure, 2}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			c := corev1.Container{Name: "c"}
			switch tt.kind {
			case Liveness:
				c.LivenessProbe = tt.probe
			case Readiness:
				c.ReadinessProbe = tt.probe
			case Startup:
				c.StartupProbe = tt.probe
			}
			pod := testPod(c)
			prev := initialResult(tt.kind)
			for i, r := range tt.rounds {
				h.rt.set("c1", "x", r.outcome)
				if i == 0 {
					h.m.UpdatePod(pod, map[string]ContainerState{"c": running("c1", h.clock.Now())})
				} else {
					h.clock.Step(tt.period)
				}
				h.waitRound("c1", tt.kind)
				if got := h.m.Result(pod.UID, "c", tt.kind); got != r.want {
					t.Fatalf("round %d: result %v, want %v", i, got, r.want)
				}
				if got := h.rt.count("c1", "x"); got != r.calls {
					t.Fatalf("round %d: %d probe calls, want %d", i, got, r.calls)
				}
				changes := h.drainChanges()
				if r.want != prev {
					want := change{pod.UID, "c", tt.kind, r.want}
					if len(changes) != 1 || changes[0] != want {
						t.Fatalf("round %d: OnChange calls %v, want [%v]", i, changes, want)
					}
				} else if len(changes) != 0 {
					t.Fatalf("round %d: OnChange calls %v, want none", i, changes)
				}
				prev = r.want
			}
		})
	}
}

func TestWorkerInitialDelay(t *testing.T) {
	tests := []struct {
		name      string
		startedAt time.Duration // relative to now
		calls     []int         // probe calls after the rounds at 0, 5, 10, 15 s
	}{
		{name: "counted from a fresh start", startedAt: 0, calls: []int{0, 0, 0, 1}},
		{name: "whole seconds are compared", startedAt: -1900 * time.Millisecond, calls: []int{0, 0, 0, 1}},
		{name: "already elapsed before the worker started", startedAt: -20 * time.Second, calls: []int{1, 2, 3, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			pod := testPod(corev1.Container{Name: "c", ReadinessProbe: execProbe("x", 5, 12, 1, 3)})
			h.m.UpdatePod(pod, map[string]ContainerState{"c": running("c1", h.clock.Now().Add(tt.startedAt))})
			for i, want := range tt.calls {
				if i > 0 {
					h.clock.Step(5 * time.Second)
				}
				h.waitRound("c1", Readiness)
				if got := h.rt.count("c1", "x"); got != want {
					t.Fatalf("after round %d: %d calls, want %d", i, got, want)
				}
			}
		})
	}
}

func TestStartupGatesOtherProbes(t *testing.T) {
	h := newHarness(t)
	// Liveness and readiness tick at 7 s, startup at 5 s, so every round
	// below has a single cause.
	pod := testPod(corev1.Container{
		Name:           "c",
		StartupProbe:   execProbe("startup", 5, 0, 1, 3),
		ReadinessProbe: execProbe("ready", 7, 0, 1, 3),
		LivenessProbe:  execProbe("live", 7, 0, 1, 3),
	})
	h.rt.set("c1", "startup", "fail")
	h.m.UpdatePod(pod, map[string]ContainerState{"c": running("c1", h.clock.Now())})
	for _, k := range []Kind{Startup, Readiness, Liveness} {
		h.waitRound("c1", k)
	}
	check := func(step string, started, ready bool, startup, readiness, liveness int) {
		t.Helper()
		if got := h.m.Started(pod.UID, "c"); got != started {
			t.Errorf("%s: Started = %v, want %v", step, got, started)
		}
		if got := h.m.Ready(pod.UID, "c"); got != ready {
			t.Errorf("%s: Ready = %v, want %v", step, got, ready)
		}
		for cmd, want := range map[string]int{"startup": startup, "ready": readiness, "live": liveness} {
			if got := h.rt.count("c1", cmd); got != want {
				t.Errorf("%s: %s probed %d times, want %d", step, cmd, got, want)
			}
		}
	}
	check("before startup succeeds", false, false, 1, 0, 0)
	if got := h.m.Result(pod.UID, "c", Liveness); got != Success {
		t.Errorf("liveness before start = %v, want Success", got)
	}

	// Startup success wakes the other probes at once.
	h.rt.set("c1", "startup", "ok")
	h.clock.Step(5 * time.Second)
	for _, k := range []Kind{Startup, Readiness, Liveness} {
		h.waitRound("c1", k)
	}
	check("startup succeeded", true, true, 2, 1, 1)

	h.clock.Step(2 * time.Second) // 7 s: readiness and liveness tick
	h.waitRound("c1", Readiness)
	h.waitRound("c1", Liveness)
	check("next period", true, true, 2, 2, 2)

	h.clock.Step(3 * time.Second) // 10 s: startup ticks but is done
	h.waitRound("c1", Startup)
	check("startup done", true, true, 2, 2, 2)
}

func TestRestartResetsResults(t *testing.T) {
	h := newHarness(t)
	pod := testPod(corev1.Container{
		Name:           "c",
		LivenessProbe:  execProbe("live", 5, 0, 1, 1),
		ReadinessProbe: execProbe("ready", 5, 0, 1, 1),
	})
	h.rt.set("c1", "live", "fail")
	h.m.UpdatePod(pod, map[string]ContainerState{"c": running("c1", h.clock.Now())})
	h.waitRound("c1", Liveness)
	h.waitRound("c1", Readiness)
	if got := h.m.Result(pod.UID, "c", Liveness); got != Failure {
		t.Fatalf("liveness = %v, want Failure", got)
	}
	if !h.m.Ready(pod.UID, "c") {
		t.Fatal("not ready although readiness passed")
	}

	// The same container again changes nothing.
	h.m.UpdatePod(pod, map[string]ContainerState{"c": running("c1", h.clock.Now())})
	if got := h.m.Result(pod.UID, "c", Liveness); got != Failure {
		t.Fatalf("liveness after same-ID update = %v, want Failure", got)
	}

	// The restarted container starts from the initial results at once.
	h.rt.set("c2", "ready", "fail")
	h.m.UpdatePod(pod, map[string]ContainerState{"c": running("c2", h.clock.Now())})
	if got := h.m.Result(pod.UID, "c", Liveness); got != Success {
		t.Errorf("liveness after restart = %v, want the initial Success", got)
	}
	if h.m.Ready(pod.UID, "c") {
		t.Error("ready right after restart")
	}
	h.waitRound("c2", Liveness)
	h.waitRound("c2", Readiness)
	h.clock.Step(5 * time.Second)
	h.waitRound("c2", Liveness)
	h.waitRound("c2", Readiness)
	if got := h.rt.count("c2", "live"); got != 2 {
		t.Errorf("new container probed %d times, want 2", got)
	}
	if got := h.rt.count("c1", "live") + h.rt.count("c1", "ready"); got != 2 {
		t.Errorf("old container probed %d times in all, want 2 (before the restart)", got)
	}
	if h.m.Ready(pod.UID, "c") {
		t.Error("ready although the new container's readiness fails")
	}
}

func TestStatusGetters(t *testing.T) {
	never := execProbe("x", 5, 3600, 1, 3) // never due within the test
	tests := []struct {
		name      string
		container corev1.Container
		state     *ContainerState
		after     func(m *Manager)
		ready     bool
		started   bool
		results   [numKinds]Result
	}{
		{name: "running without probes", container: corev1.Container{Name: "c"}, state: &ContainerState{ID: "c1", Running: true},
			ready: true, started: true},
		{name: "not running", container: corev1.Container{Name: "c"}, state: &ContainerState{ID: "c1"}},
		{name: "no status", container: corev1.Container{Name: "c"}},
		{name: "readiness not yet run", container: corev1.Container{Name: "c", ReadinessProbe: never, LivenessProbe: never},
			state: &ContainerState{ID: "c1", Running: true}, started: true,
			results: [numKinds]Result{Liveness: Success, Readiness: Failure}},
		{name: "startup not yet run", container: corev1.Container{Name: "c", StartupProbe: never},
			state: &ContainerState{ID: "c1", Running: true}},
		{name: "removed pod", container: corev1.Container{Name: "c"}, state: &ContainerState{ID: "c1", Running: true},
			after: func(m *Manager) { m.RemovePod("uid-p") }},
		{name: "stopped manager", container: corev1.Container{Name: "c", ReadinessProbe: never}, state: &ContainerState{ID: "c1", Running: true},
			after: func(m *Manager) {
				m.Stop()
				m.UpdatePod(testPod(corev1.Container{Name: "c"}), map[string]ContainerState{"c": {ID: "c1", Running: true}})
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			pod := testPod(tt.container)
			statuses := map[string]ContainerState{}
			if tt.state != nil {
				statuses["c"] = *tt.state
			}
			h.m.UpdatePod(pod, statuses)
			if tt.after != nil {
				tt.after(h.m)
			}
			if got := h.m.Ready(pod.UID, "c"); got != tt.ready {
				t.Errorf("Ready = %v, want %v", got, tt.ready)
			}
			if got := h.m.Started(pod.UID, "c"); got != tt.started {
				t.Errorf("Started = %v, want %v", got, tt.started)
			}
			for k := Liveness; k < numKinds; k++ {
				if got := h.m.Result(pod.UID, "c", k); got != tt.results[k] {
					t.Errorf("Result(%v) = %v, want %v", k, got, tt.results[k])
				}
			}
			if h.m.Ready("other-uid", "c") || h.m.Started(pod.UID, "other") {
				t.Error("unknown pod or container reported ready or started")
			}
		})
	}
}

func TestContainerStopsAndPodDeletion(t *testing.T) {
	h := newHarness(t)
	pod := testPod(corev1.Container{
		Name:           "c",
		LivenessProbe:  execProbe("live", 5, 0, 1, 1),
		ReadinessProbe: execProbe("ready", 5, 0, 1, 1),
	})
	now := metav1.NewTime(h.clock.Now())
	pod.DeletionTimestamp = &now
	h.rt.set("c1", "live", "fail")
	h.m.UpdatePod(pod, map[string]ContainerState{"c": running("c1", h.clock.Now())})
	h.waitRound("c1", Liveness)
	h.waitRound("c1", Readiness)
	if got := h.m.Result(pod.UID, "c", Liveness); got != Success {
		t.Errorf("liveness of a terminating pod = %v, want Success", got)
	}
	if got := h.rt.count("c1", "live"); got != 0 {
		t.Errorf("liveness probed %d times during termination, want 0", got)
	}
	if got := h.rt.count("c1", "ready"); got != 1 || !h.m.Ready(pod.UID, "c") {
		t.Errorf("readiness probed %d times (ready %v), want it to keep running", got, h.m.Ready(pod.UID, "c"))
	}

	h.m.UpdatePod(pod, map[string]ContainerState{"c": {ID: "c1", Running: false}})
	if h.m.Ready(pod.UID, "c") || h.m.Result(pod.UID, "c", Readiness) != Unknown {
		t.Error("stopped container still reported")
	}
}

func TestManagerHTTPAndSidecar(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	port := portOf(t, srv.URL)
	httpProbe := func(path string) *corev1.Probe {
		return &corev1.Probe{PeriodSeconds: 5, FailureThreshold: 1, ProbeHandler: corev1.ProbeHandler{
			HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("web")}}}
	}
	ports := []corev1.ContainerPort{{Name: "web", ContainerPort: int32(port)}}
	pod := testPod(
		corev1.Container{Name: "app", Ports: ports, ReadinessProbe: httpProbe("/ready")},
		corev1.Container{Name: "broken", Ports: ports, ReadinessProbe: httpProbe("/nope")},
	)
	pod.Spec.InitContainers = []corev1.Container{
		{Name: "sidecar", Ports: ports, RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways), ReadinessProbe: httpProbe("/ready")},
		{Name: "init", Ports: ports, ReadinessProbe: httpProbe("/ready")},
	}
	h := newHarness(t)
	h.m.UpdatePod(pod, map[string]ContainerState{
		"app":     running("a1", h.clock.Now()),
		"broken":  running("b1", h.clock.Now()),
		"sidecar": running("s1", h.clock.Now()),
		"init":    running("i1", h.clock.Now()),
	})
	h.waitRound("a1", Readiness)
	h.waitRound("b1", Readiness)
	h.waitRound("s1", Readiness)
	for name, want := range map[string]bool{"app": true, "broken": false, "sidecar": true, "init": false} {
		if got := h.m.Ready(pod.UID, name); got != want {
			t.Errorf("Ready(%s) = %v, want %v", name, got, want)
		}
	}
}
