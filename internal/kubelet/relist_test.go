package kubelet

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runSandbox starts a sandbox for a pod UID directly in the runtime.
func (h *harness) runSandbox(name, uid string) string {
	h.t.Helper()
	resp, err := h.rt.RunPodSandbox(h.ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: uid},
		Labels:   map[string]string{labelPodUID: uid, labelPodName: name, labelPodNamespace: "default"},
	}})
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.PodSandboxId
}

func TestRelistWakes(t *testing.T) {
	tests := []struct {
		name string
		bare bool // the change is to the sandbox without containers
		// change alters the runtime behind the kubelet's back.
		change func(h *harness, sandboxID, containerID string)
	}{
		{"sandbox died with no container changing", true, func(h *harness, sb, _ string) {
			if _, err := h.rt.StopPodSandbox(h.ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb}); err != nil {
				h.t.Fatal(err)
			}
		}},
		{"container exited", false, func(h *harness, _, c string) { h.exit(c, 1) }},
		{"container removed", false, func(h *harness, _, c string) {
			if _, err := h.rt.RemoveContainer(h.ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c}); err != nil {
				h.t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			p := testPod("web", corev1.RestartPolicyAlways, "app")
			h.create(p)
			// A second sandbox with no container, so that a sandbox can
			// change alone; the pod's own runs its container.
			h.sync(p)
			containerID := h.running(p, "app").Id
			other := testPod("bare", corev1.RestartPolicyAlways)
			h.create(other)
			bare := h.runSandbox(other.Name, string(other.UID))
			sandboxID := h.state(p).readySandbox().Id
			if tt.bare {
				sandboxID = bare
			}
			w, wBare := idleWorker(h.k, p.UID), idleWorker(h.k, other.UID)

			h.k.relist(h.ctx)
			woken(w)
			woken(wBare)
			h.k.relist(h.ctx)
			if woken(w) || woken(wBare) {
				t.Fatal("a relist with no change woke a pod")
			}
			tt.change(h, sandboxID, containerID)
			h.k.relist(h.ctx)
			target := w
			if tt.bare {
				target = wBare
			}
			if !woken(target) {
				t.Error("the change did not wake its pod")
			}
		})
	}
}

func TestRelistOrphans(t *testing.T) {
	tests := []struct {
		name        string
		pod, uid    string
		wantCleaned bool
	}{
		{"sandbox of a pod the API no longer has is removed", "gone", "uid-gone", true},
		{"a UID that is no path element is left alone", "gone", "../../etc", false},
		{"a name that is no path element is left alone", "../../etc", "uid-gone", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.runSandbox(tt.pod, tt.uid)
			h.k.relist(h.ctx)
			if !tt.wantCleaned {
				if n := len(h.k.workers); n != 0 {
					t.Errorf("%d workers started for an unsafe name", n)
				}
				return
			}
			eventually(t, 5*time.Second, func() bool {
				resp, err := h.rt.ListPodSandbox(h.ctx, &runtimeapi.ListPodSandboxRequest{})
				return err == nil && len(resp.Items) == 0
			}, "the orphan's sandbox to be removed")
			eventually(t, 5*time.Second, func() bool {
				h.k.workersMu.Lock()
				defer h.k.workersMu.Unlock()
				return len(h.k.workers) == 0
			}, "the orphan's worker to end")
			h.k.wg.Wait()
			if len(h.client.Actions()) != 0 {
				t.Errorf("API calls for an orphan: %v", h.client.Actions())
			}
		})
	}
}
