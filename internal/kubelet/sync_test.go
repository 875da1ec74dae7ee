package kubelet

import (
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stesting "k8s.io/client-go/testing"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"
)

func (h *harness) sync(p *corev1.Pod) syncResult {
	return h.k.syncPod(h.ctx, p, false)
}

// running returns the pod's running instance of a container, failing the
// test if there is none.
func (h *harness) running(p *corev1.Pod, name string) *runtimeapi.ContainerStatus {
	h.t.Helper()
	for _, c := range h.state(p).instances(name, "") {
		if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			return c
		}
	}
	h.t.Fatalf("container %s is not running", name)
	return nil
}

func withInit(p *corev1.Pod, sidecar bool, names ...string) *corev1.Pod {
	for _, n := range names {
		c := corev1.Container{Name: n, Image: "example.com/init:1"}
		if sidecar {
			c.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		}
		p.Spec.InitContainers = append(p.Spec.InitContainers, c)
	}
	return p
}

func TestSyncPod(t *testing.T) {
	tests := []struct {
		name string
		pod  *corev1.Pod
		run  func(t *testing.T, h *harness, p *corev1.Pod)
	}{
		{"container without probes is ready in the sync that started it",
			testPod("ready", corev1.RestartPolicyAlways, "app"),
			func(t *testing.T, h *harness, p *corev1.Pod) {
				h.sync(p)
				got := h.apiPod(p).Status
				if len(got.ContainerStatuses) != 1 || !got.ContainerStatuses[0].Ready {
					t.Fatalf("container statuses = %+v, want app ready", got.ContainerStatuses)
				}
				if c := findCondition(got.Conditions, corev1.PodReady); c == nil || c.Status != corev1.ConditionTrue {
					t.Errorf("Ready condition = %+v", c)
				}
			}},
		{"never pod whose sandbox died during init gets no new sandbox",
			withInit(testPod("never-init", corev1.RestartPolicyNever, "app"), false, "setup"),
			func(t *testing.T, h *harness, p *corev1.Pod) {
				h.sync(p)
				sb := h.state(p).readySandbox()
				if sb == nil {
					t.Fatal("no sandbox after the first sync")
				}
				h.running(p, "setup")
				if _, err := h.rt.StopPodSandbox(h.ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
					t.Fatal(err)
				}
				h.sync(p)
				h.sync(p) // the informer still shows the old status
				if n := h.rec.count("RunPodSandbox"); n != 1 {
					t.Errorf("RunPodSandbox called %d times, want 1", n)
				}
				if got := h.apiPod(p).Status.Phase; got != corev1.PodFailed {
					t.Errorf("phase = %s, want Failed", got)
				}
			}},
		{"pod posted terminal is not run again while the informer lags",
			testPod("lagging", corev1.RestartPolicyOnFailure, "app"),
			func(t *testing.T, h *harness, p *corev1.Pod) {
				h.k.lastStatus[p.UID] = &corev1.PodStatus{Phase: corev1.PodSucceeded}
				h.sync(p)
				if st := h.state(p); len(st.sandboxes) != 0 || len(st.containers) != 0 {
					t.Errorf("a finished pod was started again: %d sandboxes, %d containers", len(st.sandboxes), len(st.containers))
				}
			}},
		{"container left created is replaced",
			testPod("stale", corev1.RestartPolicyAlways, "app"),
			func(t *testing.T, h *harness, p *corev1.Pod) {
				h.sync(p)
				first := h.running(p, "app")
				h.exit(first.Id, 137)
				// A container created but never started, as a crash between
				// create and start leaves it.
				sb := h.state(p).readySandbox()
				_, err := h.rt.CreateContainer(h.ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: sb.Id, Config: &runtimeapi.ContainerConfig{
					Metadata: &runtimeapi.ContainerMetadata{Name: "app", Attempt: 1},
					Image:    &runtimeapi.ImageSpec{Image: "example.com/app:1"},
					Labels:   map[string]string{labelPodUID: string(p.UID), labelContainerName: "app"},
				}})
				if err != nil {
					t.Fatal(err)
				}
				h.sync(p)
				h.running(p, "app")
				for _, c := range h.state(p).containers {
					if c.State == runtimeapi.ContainerState_CONTAINER_CREATED {
						t.Errorf("created container %s (attempt %d) left behind", c.Id, c.Metadata.Attempt)
					}
				}
			}},
		{"image that must not be pulled is retried with back-off",
			func() *corev1.Pod {
				p := testPod("never-pull", corev1.RestartPolicyAlways, "app")
				p.Spec.Containers[0].Image = "example.com/absent:1"
				p.Spec.Containers[0].ImagePullPolicy = corev1.PullNever
				return p
			}(),
			func(t *testing.T, h *harness, p *corev1.Pod) {
				res := h.sync(p)
				if res.requeueAfter < time.Second {
					t.Errorf("requeue after %s: the sync would spin", res.requeueAfter)
				}
				cs := h.apiPod(p).Status.ContainerStatuses
				if len(cs) != 1 || cs[0].State.Waiting == nil || cs[0].State.Waiting.Reason != "ErrImageNeverPull" {
					t.Errorf("status = %+v, want waiting ErrImageNeverPull", cs)
				}
			}},
		{"sidecar does not hold back the app containers",
			withInit(testPod("sidecar", corev1.RestartPolicyAlways, "app"), true, "proxy"),
			func(t *testing.T, h *harness, p *corev1.Pod) {
				h.sync(p)
				h.running(p, "proxy")
				h.running(p, "app")
				got := h.apiPod(p).Status
				if got.Phase != corev1.PodRunning {
					t.Errorf("phase = %s, want Running", got.Phase)
				}
				if c := findCondition(got.Conditions, corev1.PodInitialized); c == nil || c.Status != corev1.ConditionTrue {
					t.Errorf("Initialized = %+v", c)
				}
				// A sidecar that dies is restarted beside the app.
				h.exit(h.running(p, "proxy").Id, 137)
				h.sync(p)
				h.running(p, "proxy")
			}},
		{"sidecars are stopped once the app containers finished",
			withInit(testPod("job", corev1.RestartPolicyNever, "app"), true, "proxy"),
			func(t *testing.T, h *harness, p *corev1.Pod) {
				h.sync(p)
				h.exit(h.running(p, "app").Id, 0)
				h.sync(p)
				for _, c := range h.state(p).containers {
					if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
						t.Errorf("%s still runs", c.Metadata.Name)
					}
				}
				h.sync(p)
				if got := h.apiPod(p).Status.Phase; got != corev1.PodSucceeded {
					t.Errorf("phase = %s, want Succeeded", got)
				}
			}},
		{"dead sandbox is stopped before it is replaced",
			testPod("resandbox", corev1.RestartPolicyAlways, "app"),
			func(t *testing.T, h *harness, p *corev1.Pod) {
				h.sync(p)
				old := h.state(p).readySandbox()
				// The pause process died: the runtime marks the sandbox
				// not ready (the simulator does so by stopping it).
				if _, err := h.rt.StopPodSandbox(h.ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: old.Id}); err != nil {
					t.Fatal(err)
				}
				h.sync(p)
				sb := h.state(p).readySandbox()
				if sb == nil || sb.Id == old.Id || sb.Metadata.Attempt != 1 {
					t.Fatalf("new sandbox = %v, want attempt 1", sb)
				}
				if !h.rec.called("StopPodSandbox " + old.Id) {
					t.Error("the dead sandbox was not stopped, keeping its network")
				}
				h.running(p, "app")
			}},
		{"sandbox config failure is retried",
			testPod("dns", corev1.RestartPolicyAlways, "app"),
			func(t *testing.T, h *harness, p *corev1.Pod) {
				h.sync(p)
				old := hostResolvConf
				hostResolvConf = t.TempDir() // a directory: unreadable as a file
				t.Cleanup(func() { hostResolvConf = old })
				if res := h.sync(p); res.requeueAfter == 0 {
					t.Error("a sandbox config error left the pod waiting for an unrelated event")
				}
			}},
		{"active deadline fails the pod for good",
			func() *corev1.Pod {
				p := testPod("deadline", corev1.RestartPolicyAlways, "app")
				p.Spec.ActiveDeadlineSeconds = ptr.To[int64](10)
				return p
			}(),
			func(t *testing.T, h *harness, p *corev1.Pod) {
				if res := h.sync(p); res.requeueAfter <= 0 || res.requeueAfter > 10*time.Second {
					t.Errorf("requeue after %s, want the deadline", res.requeueAfter)
				}
				h.running(p, "app")
				h.clock.Step(11 * time.Second)
				h.sync(p)
				got := h.apiPod(p).Status
				if got.Phase != corev1.PodFailed || got.Reason != "DeadlineExceeded" {
					t.Errorf("phase %s reason %q, want Failed/DeadlineExceeded", got.Phase, got.Reason)
				}
				h.sync(p)
				for _, c := range h.state(p).containers {
					if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
						t.Errorf("%s runs past the deadline", c.Metadata.Name)
					}
				}
			}},
		{"crash loop reports back-off, last state and restart count",
			testPod("restarts", corev1.RestartPolicyAlways, "app"),
			func(t *testing.T, h *harness, p *corev1.Pod) {
				h.sync(p)
				h.exit(h.running(p, "app").Id, 1)
				h.sync(p) // first restart is immediate
				h.exit(h.running(p, "app").Id, 1)
				h.sync(p) // now in back-off
				cs := h.apiPod(p).Status.ContainerStatuses[0]
				if w := cs.State.Waiting; w == nil || w.Reason != "CrashLoopBackOff" {
					t.Fatalf("state = %+v, want CrashLoopBackOff", cs.State)
				}
				if cs.LastTerminationState.Terminated == nil || cs.RestartCount != 1 {
					t.Errorf("lastState %+v restartCount %d", cs.LastTerminationState, cs.RestartCount)
				}
				h.clock.Step(11 * time.Second)
				h.sync(p)
				if got := h.apiPod(p).Status.ContainerStatuses[0]; got.State.Running == nil || got.RestartCount != 2 {
					t.Errorf("after the back-off: %+v", got)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.create(tt.pod)
			tt.run(t, h, tt.pod)
		})
	}
}

func TestVerifyNonRoot(t *testing.T) {
	tests := []struct {
		name    string
		pod     *corev1.PodSecurityContext
		ctr     *corev1.SecurityContext
		wantErr bool
	}{
		{"not asked", nil, nil, false},
		{"runAsUser 0", &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)}, &corev1.SecurityContext{RunAsUser: ptr.To[int64](0)}, true},
		{"non-root user", &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](1000)}, nil, false},
		{"image without user runs as root", nil, &corev1.SecurityContext{RunAsNonRoot: ptr.To(true)}, true},
		{"container turns it off", &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)}, &corev1.SecurityContext{RunAsNonRoot: ptr.To(false)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			p := testPod("p", corev1.RestartPolicyAlways, "app")
			p.Spec.SecurityContext = tt.pod
			p.Spec.Containers[0].SecurityContext = tt.ctr
			resp, err := h.k.cfg.Images.PullImage(h.ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "example.com/app:1"}})
			if err != nil {
				t.Fatal(err)
			}
			err = h.k.verifyNonRoot(h.ctx, p, &p.Spec.Containers[0], resp.ImageRef)
			if (err != nil) != tt.wantErr {
				t.Errorf("verifyNonRoot = %v, want error %v", err, tt.wantErr)
			}
		})
	}
	t.Run("refused container waits with a config error", func(t *testing.T) {
		h := newHarness(t)
		p := testPod("nonroot", corev1.RestartPolicyAlways, "app")
		p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)}
		h.create(p)
		h.sync(p)
		cs := h.apiPod(p).Status.ContainerStatuses[0]
		if cs.State.Waiting == nil || cs.State.Waiting.Reason != "CreateContainerConfigError" {
			t.Errorf("state = %+v, want CreateContainerConfigError", cs.State)
		}
		if n := len(h.state(p).containers); n != 0 {
			t.Errorf("%d containers created", n)
		}
	})
}

func TestTerminatePod(t *testing.T) {
	tests := []struct {
		name      string
		grace     int64
		deleted   bool // the object is gone already
		wantPhase corev1.PodPhase
		wantStop  string
	}{
		{"graceful deletion reports the end, then confirms", 30, false, corev1.PodSucceeded, "StopContainer 30"},
		{"grace 0 still gets a second", 0, false, corev1.PodSucceeded, "StopContainer 1"},
		{"force-deleted pod", 30, true, "", "StopContainer 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			p := testPod("gone", corev1.RestartPolicyAlways, "a", "b")
			h.create(p)
			h.sync(p)
			deleting := p.DeepCopy()
			deleting.DeletionTimestamp = ptr.To(metav1.NewTime(h.clock.Now()))
			deleting.DeletionGracePeriodSeconds = ptr.To(tt.grace)
			h.client.ClearActions()

			res := h.k.syncPod(h.ctx, deleting, tt.deleted)
			if !res.done {
				t.Fatalf("terminatePod = %+v, want done", res)
			}
			if !h.rec.called(tt.wantStop) {
				t.Errorf("containers not stopped with %q: %v", tt.wantStop, h.rec.calls)
			}
			if st := h.state(p); len(st.sandboxes)+len(st.containers) != 0 {
				t.Errorf("%d sandboxes and %d containers left", len(st.sandboxes), len(st.containers))
			}
			if len(h.vols.tornDown) != 1 {
				t.Errorf("volumes torn down %d times", len(h.vols.tornDown))
			}
			var final *corev1.Pod
			deletedAt := -1
			for i, a := range h.client.Actions() {
				switch {
				case a.GetVerb() == "update" && a.GetSubresource() == "status":
					final = a.(k8stesting.UpdateAction).GetObject().(*corev1.Pod)
				case a.GetVerb() == "delete":
					deletedAt = i
					if final == nil && tt.wantPhase != "" {
						t.Error("deletion confirmed before the final status")
					}
				}
			}
			if tt.deleted {
				if final != nil || deletedAt >= 0 {
					t.Errorf("API calls for a pod that is gone: status %v, delete at %d", final != nil, deletedAt)
				}
				return
			}
			if deletedAt < 0 {
				t.Fatal("deletion not confirmed")
			}
			if final == nil || final.Status.Phase != tt.wantPhase {
				t.Fatalf("final status = %+v, want phase %s", final, tt.wantPhase)
			}
			for _, cs := range final.Status.ContainerStatuses {
				if cs.State.Terminated == nil {
					t.Errorf("container %s reported %+v, want terminated", cs.Name, cs.State)
				}
			}

			// A second pass (an update that arrived meanwhile) finds
			// nothing and must not report the containers as lost.
			h.client.ClearActions()
			if res := h.k.syncPod(h.ctx, deleting, false); !res.done {
				t.Fatalf("second pass = %+v", res)
			}
			for _, a := range h.client.Actions() {
				if a.GetSubresource() == "status" {
					t.Error("second pass posted a status")
				}
			}
		})
	}
}

func TestGracePeriod(t *testing.T) {
	tests := []struct {
		name           string
		deletion, spec *int64
		want           int64
	}{
		{"default", nil, nil, 30},
		{"spec", nil, ptr.To[int64](10), 10},
		{"deletion overrides spec", ptr.To[int64](5), ptr.To[int64](10), 5},
		{"zero deletion grace still gets one second", ptr.To[int64](0), ptr.To[int64](10), 1},
		{"zero spec grace still gets one second", nil, ptr.To[int64](0), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &corev1.Pod{}
			p.DeletionGracePeriodSeconds = tt.deletion
			p.Spec.TerminationGracePeriodSeconds = tt.spec
			if got := gracePeriod(p); got != tt.want {
				t.Errorf("gracePeriod = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestRemovePodCgroups(t *testing.T) {
	tests := []struct {
		name  string
		class string // where the pod's cgroup really is
	}{
		{"guaranteed", ""},
		{"burstable", "/burstable"},
		{"besteffort", "/besteffort"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := t.TempDir()
			old := cgroupFS
			cgroupFS = fs
			t.Cleanup(func() { cgroupFS = old })
			k := &Kubelet{cfg: Config{CgroupRoot: "/kubepods"}}
			mine := "/kubepods" + tt.class + "/podorphan"
			other := "/kubepods" + tt.class + "/podother"
			for _, h := range []string{"cpu", "memory"} {
				for _, d := range []string{mine + "/ctr", other} {
					if err := os.MkdirAll(fs+"/"+h+d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
			}
			// An orphan's spec is unknown, so its QoS class is too.
			if err := k.removePodCgroups("orphan"); err != nil {
				t.Fatal(err)
			}
			for _, h := range []string{"cpu", "memory"} {
				if _, err := os.Stat(fs + "/" + h + mine); !os.IsNotExist(err) {
					t.Errorf("%s%s left behind", h, mine)
				}
				if _, err := os.Stat(fs + "/" + h + other); err != nil {
					t.Errorf("another pod's cgroup removed: %v", err)
				}
			}
		})
	}
}
