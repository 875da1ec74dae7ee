package kubelet

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"
)

// st is a container status for phase and condition tables.
type st struct {
	name    string
	state   corev1.ContainerState
	last    *corev1.ContainerStateTerminated
	started bool
	ready   bool
	sidecar bool // an init container with restartPolicy Always
}

func crashLoop(code int32) st {
	return st{state: waiting("CrashLoopBackOff"), last: &corev1.ContainerStateTerminated{ExitCode: code}}
}

// podFor builds a pod and status whose containers are named after the
// table's statuses: i0, i1… for init containers, c0, c1… for the others.
func podFor(policy corev1.RestartPolicy, init, main []st) (*corev1.Pod, *corev1.PodStatus) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{RestartPolicy: policy}}
	status := &corev1.PodStatus{}
	conv := func(prefix string, i int, s st) (corev1.Container, corev1.ContainerStatus) {
		name := s.name
		if name == "" {
			name = prefix + string(rune('0'+i))
		}
		c := corev1.Container{Name: name}
		if s.sidecar {
			c.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		}
		cs := corev1.ContainerStatus{Name: name, State: s.state, Started: ptr.To(s.started), Ready: s.ready}
		cs.LastTerminationState.Terminated = s.last
		return c, cs
	}
	for i, s := range init {
		c, cs := conv("i", i, s)
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, c)
		status.InitContainerStatuses = append(status.InitContainerStatuses, cs)
	}
	for i, s := range main {
		c, cs := conv("c", i, s)
		pod.Spec.Containers = append(pod.Spec.Containers, c)
		status.ContainerStatuses = append(status.ContainerStatuses, cs)
	}
	return pod, status
}

func TestPodPhase(t *testing.T) {
	always, never, onFailure := corev1.RestartPolicyAlways, corev1.RestartPolicyNever, corev1.RestartPolicyOnFailure
	run, done, fail := st{state: running(), started: true}, st{state: exited(0)}, st{state: exited(2)}
	wait := st{state: waiting("ContainerCreating")}
	initWait := st{state: waiting("PodInitializing")}
	tests := []struct {
		name        string
		policy      corev1.RestartPolicy
		init, main  []st
		terminating bool
		want        corev1.PodPhase
	}{
		{"creating", always, nil, []st{wait}, false, corev1.PodPending},
		{"running", always, nil, []st{run, run}, false, corev1.PodRunning},
		{"one still creating", always, nil, []st{run, wait}, false, corev1.PodPending},
		{"crash looping beside a running one", always, nil, []st{run, crashLoop(1)}, false, corev1.PodRunning},
		{"crash looping alone", always, nil, []st{crashLoop(1)}, false, corev1.PodRunning},
		{"all succeeded, never", never, nil, []st{done, done}, false, corev1.PodSucceeded},
		{"one failed, never", never, nil, []st{done, fail}, false, corev1.PodFailed},
		{"one failed, on failure", onFailure, nil, []st{done, fail}, false, corev1.PodRunning},
		{"all succeeded, on failure", onFailure, nil, []st{done}, false, corev1.PodSucceeded},
		{"exited, always", always, nil, []st{done}, false, corev1.PodRunning},
		{"init running", always, []st{run}, []st{initWait}, false, corev1.PodPending},
		{"init failed, never", never, []st{fail}, []st{initWait}, false, corev1.PodFailed},
		{"init failed, always", always, []st{fail}, []st{initWait}, false, corev1.PodPending},
		{"init crash looping, always", always, []st{crashLoop(1)}, []st{initWait}, false, corev1.PodPending},
		{"init done", always, []st{done}, []st{run}, false, corev1.PodRunning},
		{"init running again after the apps ran (new sandbox)", always, []st{run}, []st{crashLoop(137)}, false, corev1.PodRunning},
		{"sidecar starting", always, []st{{state: running(), sidecar: true}}, []st{initWait}, false, corev1.PodPending},
		{"sidecar started, app creating", always, []st{{state: running(), started: true, sidecar: true}}, []st{wait}, false, corev1.PodPending},
		{"sidecar and app running", always, []st{{state: running(), started: true, sidecar: true}}, []st{run}, false, corev1.PodRunning},
		{"sidecar stopped after the app succeeded", never, []st{{state: exited(137), sidecar: true}}, []st{done}, false, corev1.PodSucceeded},
		{"sidecar restarting beside the app", always, []st{{state: waiting("CrashLoopBackOff"), last: &corev1.ContainerStateTerminated{ExitCode: 1}, sidecar: true}}, []st{run}, false, corev1.PodRunning},
		{"deleted, all succeeded", always, nil, []st{done, done}, true, corev1.PodSucceeded},
		{"deleted, one killed", always, nil, []st{done, {state: exited(137)}}, true, corev1.PodFailed},
		{"deleted, crash looping", onFailure, nil, []st{crashLoop(1)}, true, corev1.PodFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod, status := podFor(tt.policy, tt.init, tt.main)
			if got := podPhase(pod, status, tt.terminating); got != tt.want {
				t.Errorf("podPhase = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestPodConditions(t *testing.T) {
	run, ready := st{state: running(), started: true}, st{state: running(), started: true, ready: true}
	initDone := st{state: exited(0), ready: true}
	t0 := metav1.NewTime(time.Unix(1_600_000_000, 0))
	type want struct {
		status          corev1.ConditionStatus
		reason, message string
	}
	tests := []struct {
		name       string
		phase      corev1.PodPhase
		init, main []st
		gates      []corev1.PodConditionType
		api        []corev1.PodCondition
		check      map[corev1.PodConditionType]want
	}{
		{name: "all ready", phase: corev1.PodRunning, init: []st{initDone}, main: []st{ready},
			check: map[corev1.PodConditionType]want{
				corev1.PodInitialized: {status: corev1.ConditionTrue}, corev1.ContainersReady: {status: corev1.ConditionTrue},
				corev1.PodReady: {status: corev1.ConditionTrue}, corev1.PodReadyToStartContainers: {status: corev1.ConditionTrue},
			}},
		{name: "init incomplete", phase: corev1.PodPending, init: []st{initDone, {state: running(), started: true}}, main: []st{{state: waiting("PodInitializing")}},
			check: map[corev1.PodConditionType]want{
				corev1.PodInitialized:  {corev1.ConditionFalse, "ContainersNotInitialized", "containers with incomplete status: [i1]"},
				corev1.ContainersReady: {corev1.ConditionFalse, "ContainersNotReady", "containers with unready status: [c0]"},
				corev1.PodReady:        {corev1.ConditionFalse, "ContainersNotReady", "containers with unready status: [c0]"},
			}},
		{name: "succeeded", phase: corev1.PodSucceeded, init: []st{initDone}, main: []st{{state: exited(0)}},
			check: map[corev1.PodConditionType]want{
				corev1.PodInitialized:            {corev1.ConditionTrue, "PodCompleted", ""},
				corev1.ContainersReady:           {corev1.ConditionFalse, "PodCompleted", ""},
				corev1.PodReady:                  {corev1.ConditionFalse, "PodCompleted", ""},
				corev1.PodReadyToStartContainers: {status: corev1.ConditionFalse},
			}},
		{name: "failed", phase: corev1.PodFailed, main: []st{{state: exited(1)}},
			check: map[corev1.PodConditionType]want{
				corev1.ContainersReady: {corev1.ConditionFalse, "PodFailed", ""},
				corev1.PodReady:        {corev1.ConditionFalse, "PodFailed", ""},
			}},
		{name: "unready sidecar", phase: corev1.PodRunning, init: []st{{state: running(), started: true, sidecar: true}}, main: []st{ready},
			check: map[corev1.PodConditionType]want{
				corev1.PodInitialized:  {status: corev1.ConditionTrue},
				corev1.ContainersReady: {corev1.ConditionFalse, "ContainersNotReady", "containers with unready status: [i0]"},
			}},
		{name: "sidecar not started", phase: corev1.PodPending, init: []st{{state: running(), sidecar: true}}, main: []st{{state: waiting("PodInitializing")}},
			check: map[corev1.PodConditionType]want{
				corev1.PodInitialized: {corev1.ConditionFalse, "ContainersNotInitialized", "containers with incomplete status: [i0]"},
			}},
		{name: "readiness gate missing", phase: corev1.PodRunning, main: []st{ready}, gates: []corev1.PodConditionType{"example.com/lb"},
			check: map[corev1.PodConditionType]want{
				corev1.ContainersReady: {status: corev1.ConditionTrue},
				corev1.PodReady:        {corev1.ConditionFalse, "ReadinessGatesNotReady", `readiness gate "example.com/lb" has no condition yet`},
			}},
		{name: "readiness gate true", phase: corev1.PodRunning, main: []st{ready}, gates: []corev1.PodConditionType{"example.com/lb"},
			api: []corev1.PodCondition{{Type: "example.com/lb", Status: corev1.ConditionTrue}},
			check: map[corev1.PodConditionType]want{
				corev1.PodReady: {status: corev1.ConditionTrue}, "example.com/lb": {status: corev1.ConditionTrue},
			}},
		{name: "containers unready beat gates", phase: corev1.PodRunning, main: []st{run}, gates: []corev1.PodConditionType{"example.com/lb"},
			check: map[corev1.PodConditionType]want{
				corev1.PodReady: {corev1.ConditionFalse, "ContainersNotReady", "containers with unready status: [c0]"},
			}},
		{name: "others' conditions kept, ours replaced", phase: corev1.PodRunning, main: []st{ready},
			api: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionFalse}},
			check: map[corev1.PodConditionType]want{
				corev1.PodScheduled: {status: corev1.ConditionTrue}, corev1.PodReady: {status: corev1.ConditionTrue},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			pod, status := podFor(corev1.RestartPolicyAlways, tt.init, tt.main)
			for _, g := range tt.gates {
				pod.Spec.ReadinessGates = append(pod.Spec.ReadinessGates, corev1.PodReadinessGate{ConditionType: g})
			}
			status.Phase = tt.phase
			got := h.k.podConditions(pod, tt.api, status, true, nil)
			seen := map[corev1.PodConditionType]int{}
			for _, c := range got {
				seen[c.Type]++
			}
			for typ, n := range seen {
				if n > 1 {
					t.Errorf("condition %s appears %d times", typ, n)
				}
			}
			for typ, w := range tt.check {
				c := findCondition(got, typ)
				if c == nil {
					t.Errorf("no %s condition in %v", typ, got)
					continue
				}
				if c.Status != w.status || c.Reason != w.reason || c.Message != w.message {
					t.Errorf("%s = %s/%q/%q, want %s/%q/%q", typ, c.Status, c.Reason, c.Message, w.status, w.reason, w.message)
				}
			}
		})
	}
	t.Run("transition time kept while the status holds", func(t *testing.T) {
		h := newHarness(t)
		pod, status := podFor(corev1.RestartPolicyAlways, nil, []st{ready})
		status.Phase = corev1.PodRunning
		prev := []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: t0}, {Type: corev1.ContainersReady, Status: corev1.ConditionFalse, LastTransitionTime: t0}}
		got := h.k.podConditions(pod, nil, status, true, prev)
		if c := findCondition(got, corev1.PodReady); !c.LastTransitionTime.Equal(&t0) {
			t.Errorf("Ready moved to %v though it stayed True", c.LastTransitionTime)
		}
		if c := findCondition(got, corev1.ContainersReady); c.LastTransitionTime.Equal(&t0) {
			t.Errorf("ContainersReady kept %v though it changed", c.LastTransitionTime)
		}
	})
}

// runtimeState builds a pod state by hand: one ready sandbox and the
// given containers in it, newest first.
func runtimeState(ip string, cs ...*runtimeapi.ContainerStatus) *podState {
	sb := &runtimeapi.PodSandbox{Id: "sb1", State: runtimeapi.PodSandboxState_SANDBOX_READY, Metadata: &runtimeapi.PodSandboxMetadata{}}
	for _, c := range cs {
		c.Labels = map[string]string{labelSandboxID: "sb1"}
	}
	return &podState{sandboxes: []*runtimeapi.PodSandbox{sb}, containers: cs, ip: ip}
}

func criContainer(name string, state runtimeapi.ContainerState, code int32) *runtimeapi.ContainerStatus {
	return &runtimeapi.ContainerStatus{Id: "id-" + name, Metadata: &runtimeapi.ContainerMetadata{Name: name}, State: state, ExitCode: code,
		StartedAt: 1, FinishedAt: 2}
}

func TestBuildStatus(t *testing.T) {
	runningC := runtimeapi.ContainerState_CONTAINER_RUNNING
	exitedC := runtimeapi.ContainerState_CONTAINER_EXITED
	tests := []struct {
		name        string
		pod         func() *corev1.Pod
		state       *podState
		last        *corev1.PodStatus // posted before, not yet in the informer
		terminating bool
		check       func(t *testing.T, s *corev1.PodStatus)
	}{
		{"succeeded init container is ready and the pod initialized",
			func() *corev1.Pod {
				p := testPod("p", corev1.RestartPolicyAlways, "app")
				p.Spec.InitContainers = []corev1.Container{{Name: "setup"}}
				return p
			},
			runtimeState("10.0.0.5", criContainer("app", runningC, 0), criContainer("setup", exitedC, 0)), nil, false,
			func(t *testing.T, s *corev1.PodStatus) {
				if !s.InitContainerStatuses[0].Ready {
					t.Error("succeeded init container not ready")
				}
				if c := findCondition(s.Conditions, corev1.PodInitialized); c.Status != corev1.ConditionTrue {
					t.Errorf("Initialized = %s %s", c.Status, c.Message)
				}
				if s.Phase != corev1.PodRunning || s.PodIP != "10.0.0.5" {
					t.Errorf("phase %s, IP %q", s.Phase, s.PodIP)
				}
			}},
		{"init container not yet created waits for initialization",
			func() *corev1.Pod {
				p := testPod("p", corev1.RestartPolicyAlways, "app")
				p.Spec.InitContainers = []corev1.Container{{Name: "a"}, {Name: "b"}}
				return p
			},
			runtimeState("10.0.0.5", criContainer("a", runningC, 0)), nil, false,
			func(t *testing.T, s *corev1.PodStatus) {
				if w := s.InitContainerStatuses[1].State.Waiting; w == nil || w.Reason != "PodInitializing" {
					t.Errorf("second init container state = %+v, want waiting PodInitializing", s.InitContainerStatuses[1].State)
				}
			}},
		{"host-network pod has the node IP without a sandbox",
			func() *corev1.Pod {
				p := testPod("p", corev1.RestartPolicyAlways, "app")
				p.Spec.HostNetwork = true
				return p
			},
			&podState{}, nil, false,
			func(t *testing.T, s *corev1.PodStatus) {
				if s.PodIP != testNodeIP.String() || len(s.PodIPs) != 1 {
					t.Errorf("PodIP %q PodIPs %v, want the node IP", s.PodIP, s.PodIPs)
				}
			}},
		{"terminal phase in the API is never undone",
			func() *corev1.Pod {
				p := testPod("p", corev1.RestartPolicyNever, "app")
				p.Status.Phase = corev1.PodSucceeded
				return p
			},
			&podState{}, nil, false,
			func(t *testing.T, s *corev1.PodStatus) {
				if s.Phase != corev1.PodSucceeded {
					t.Errorf("phase = %s, want Succeeded kept", s.Phase)
				}
			}},
		{"terminal phase another writer recorded is never undone",
			func() *corev1.Pod {
				p := testPod("p", corev1.RestartPolicyAlways, "app")
				p.Status.Phase = corev1.PodFailed
				return p
			},
			runtimeState("10.0.0.5", criContainer("app", runningC, 0)), &corev1.PodStatus{Phase: corev1.PodRunning}, false,
			func(t *testing.T, s *corev1.PodStatus) {
				if s.Phase != corev1.PodFailed {
					t.Errorf("phase = %s, want Failed kept", s.Phase)
				}
			}},
		{"terminal phase posted but not yet seen is never undone",
			func() *corev1.Pod { return testPod("p", corev1.RestartPolicyNever, "app") },
			&podState{}, &corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted"}, false,
			func(t *testing.T, s *corev1.PodStatus) {
				if s.Phase != corev1.PodFailed || s.Reason != "Evicted" {
					t.Errorf("phase = %s reason %q, want Failed/Evicted kept", s.Phase, s.Reason)
				}
			}},
		{"deleted pod whose containers all succeeded",
			func() *corev1.Pod { return testPod("p", corev1.RestartPolicyAlways, "a", "b") },
			runtimeState("", criContainer("a", exitedC, 0), criContainer("b", exitedC, 0)), nil, true,
			func(t *testing.T, s *corev1.PodStatus) {
				if s.Phase != corev1.PodSucceeded {
					t.Errorf("phase = %s, want Succeeded", s.Phase)
				}
			}},
		{"deleted pod with a killed container",
			func() *corev1.Pod { return testPod("p", corev1.RestartPolicyAlways, "a", "b") },
			runtimeState("", criContainer("a", exitedC, 0), criContainer("b", exitedC, 137)), nil, true,
			func(t *testing.T, s *corev1.PodStatus) {
				if s.Phase != corev1.PodFailed {
					t.Errorf("phase = %s, want Failed", s.Phase)
				}
				if c := findCondition(s.Conditions, corev1.PodReady); c.Reason != "PodFailed" {
					t.Errorf("Ready reason = %q, want PodFailed", c.Reason)
				}
			}},
		{"deleted pod that never started a container",
			func() *corev1.Pod { return testPod("p", corev1.RestartPolicyAlways, "a") },
			&podState{}, nil, true,
			func(t *testing.T, s *corev1.PodStatus) {
				if s.Phase != corev1.PodFailed {
					t.Errorf("phase = %s, want Failed", s.Phase)
				}
			}},
		{"start time kept from the status posted",
			func() *corev1.Pod { return testPod("p", corev1.RestartPolicyAlways, "a") },
			&podState{}, &corev1.PodStatus{Phase: corev1.PodPending, StartTime: ptr.To(metav1.NewTime(time.Unix(1_600_000_000, 0)))}, false,
			func(t *testing.T, s *corev1.PodStatus) {
				if s.StartTime == nil || s.StartTime.Unix() != 1_600_000_000 {
					t.Errorf("start time = %v", s.StartTime)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			pod := tt.pod()
			if tt.last != nil {
				h.k.lastStatus[pod.UID] = tt.last
			}
			h.k.probes.UpdatePod(pod, probeStates(tt.state))
			got := h.k.buildStatus(pod, tt.state, nil, tt.terminating)
			tt.check(t, got)
		})
	}
}

func TestPostStatusConflict(t *testing.T) {
	gate := corev1.PodConditionType("example.com/lb")
	tests := []struct {
		name      string
		change    func(*corev1.Pod) // what another writer did meanwhile
		wantPhase corev1.PodPhase
		wantReady corev1.ConditionStatus
		wantGate  corev1.ConditionStatus
	}{
		{"newer condition of another writer wins and opens the gate",
			func(p *corev1.Pod) {
				p.Status.Conditions = []corev1.PodCondition{{Type: gate, Status: corev1.ConditionTrue}}
			},
			corev1.PodRunning, corev1.ConditionTrue, corev1.ConditionTrue},
		{"terminal phase someone recorded is kept",
			func(p *corev1.Pod) {
				p.Status.Phase = corev1.PodFailed
				p.Status.Conditions = []corev1.PodCondition{{Type: gate, Status: corev1.ConditionFalse}}
			},
			corev1.PodFailed, "", corev1.ConditionFalse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			pod := testPod("web", corev1.RestartPolicyAlways, "app")
			pod.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: gate}}
			pod.Status.Conditions = []corev1.PodCondition{{Type: gate, Status: corev1.ConditionFalse}}
			h.create(pod)
			failFirstStatusUpdate(h.client, tt.change)

			state := runtimeState("10.0.0.7", criContainer("app", runtimeapi.ContainerState_CONTAINER_RUNNING, 0))
			h.k.probes.UpdatePod(pod, probeStates(state))
			status := h.k.podStatus(pod, state, nil)
			if err := h.k.postStatus(h.ctx, pod, status); err != nil {
				t.Fatal(err)
			}
			got := h.apiPod(pod).Status
			if got.Phase != tt.wantPhase {
				t.Errorf("phase = %s, want %s", got.Phase, tt.wantPhase)
			}
			if c := findCondition(got.Conditions, gate); c == nil || c.Status != tt.wantGate {
				t.Errorf("gate condition = %+v, want %s", c, tt.wantGate)
			}
			if tt.wantReady != "" {
				if c := findCondition(got.Conditions, corev1.PodReady); c == nil || c.Status != tt.wantReady {
					t.Errorf("Ready = %+v, want %s", c, tt.wantReady)
				}
			}
		})
	}
}

// TestPostStatusAfterOthersChangedIt: a status the kubelet already sent is
// sent again once someone else changed the pod's status (the node
// lifecycle controller marking it not ready while the node was away), and
// only held back while the informer still has the copy it wrote over.
func TestPostStatusAfterOthersChangedIt(t *testing.T) {
	h := newHarness(t)
	pod := testPod("web", corev1.RestartPolicyAlways, "app")
	h.create(pod)
	state := runtimeState("10.0.0.7", criContainer("app", runtimeapi.ContainerState_CONTAINER_RUNNING, 0))
	h.k.probes.UpdatePod(pod, probeStates(state))
	status := h.k.podStatus(pod, state, nil)
	if err := h.k.postStatus(h.ctx, pod, status); err != nil {
		t.Fatal(err)
	}
	ready := func() corev1.ConditionStatus {
		c := findCondition(h.apiPod(pod).Status.Conditions, corev1.PodReady)
		if c == nil {
			return ""
		}
		return c.Status
	}
	if got := ready(); got != corev1.ConditionTrue {
		t.Fatalf("Ready = %q after the first post", got)
	}

	// The informer lags: its copy is still the one written over. Sending
	// the same status again would be a wasted write.
	writes := func() int {
		n := 0
		for _, a := range h.client.Actions() {
			if a.GetVerb() == "update" && a.GetSubresource() == "status" {
				n++
			}
		}
		return n
	}
	before := writes()
	if err := h.k.postStatus(h.ctx, pod, h.k.podStatus(pod, state, nil)); err != nil {
		t.Fatal(err)
	}
	if writes() != before {
		t.Errorf("status written again while the informer lagged")
	}

	// Someone else marks the pod not ready.
	cur := h.apiPod(pod)
	for i := range cur.Status.Conditions {
		if cur.Status.Conditions[i].Type == corev1.PodReady {
			cur.Status.Conditions[i].Status = corev1.ConditionFalse
		}
	}
	cur.ResourceVersion = "99"
	if _, err := h.client.CoreV1().Pods(cur.Namespace).UpdateStatus(h.ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := ready(); got != corev1.ConditionFalse {
		t.Fatalf("Ready = %q after the other writer", got)
	}
	if err := h.k.postStatus(h.ctx, cur, h.k.podStatus(cur, state, nil)); err != nil {
		t.Fatal(err)
	}
	if got := ready(); got != corev1.ConditionTrue {
		t.Errorf("Ready = %q, want the kubelet's True written again", got)
	}
}
