package sim

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

// epoch is the fake clocks' start, the moment in the brief's log example.
var epoch = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

// waitFor polls cond until it holds or the test times out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
}

func TestContainerLog(t *testing.T) {
	tests := []struct {
		name    string
		logDir  bool
		wantLog string
	}{
		{"with log directory", true, "2026-11-26T10:00:00.000000000Z stdout F simulated container app started\n"},
		{"without log directory", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			_, c := start(t, Config{Clock: clocktesting.NewFakeClock(epoch)})
			tmp := t.TempDir()
			sbCfg := sandboxConfig("web", nil)
			wantPath := ""
			if tt.logDir {
				// Not there yet: the runtime creates it.
				sbCfg.LogDirectory = filepath.Join(tmp, "pods", "default_web_uid")
				wantPath = filepath.Join(sbCfg.LogDirectory, "app", "0.log")
			}
			if _, err := c.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
				t.Fatalf("PullImage: %v", err)
			}
			sb, err := c.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sbCfg})
			if err != nil {
				t.Fatalf("RunPodSandbox: %v", err)
			}
			ctr, err := c.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: sb.PodSandboxId, Config: containerConfig("app", "busybox", nil)})
			if err != nil {
				t.Fatalf("CreateContainer: %v", err)
			}
			if _, err := c.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
				t.Fatalf("StartContainer: %v", err)
			}
			if got := containerStatus(t, c, ctr.ContainerId).LogPath; got != wantPath {
				t.Errorf("status log path = %q, want %q", got, wantPath)
			}
			var files []string
			_ = filepath.WalkDir(tmp, func(path string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					files = append(files, path)
				}
				return err
			})
			if !tt.logDir {
				if len(files) != 0 {
					t.Fatalf("files written without a log directory: %v", files)
				}
				return
			}
			if got, err := os.ReadFile(wantPath); err != nil || string(got) != tt.wantLog {
				t.Fatalf("log = %q, %v; want %q", got, err, tt.wantLog)
			}

			// The kubelet rotates by renaming, then asks for a new file.
			if err := os.Rename(wantPath, wantPath+".rotated"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.rt.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: ctr.ContainerId}); err != nil {
				t.Fatalf("ReopenContainerLog: %v", err)
			}
			if fi, err := os.Stat(wantPath); err != nil || fi.Size() != 0 {
				t.Fatalf("reopened log: %v, %v; want a new empty file", fi, err)
			}
			if _, err := c.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
				t.Fatal(err)
			}
			_, err = c.rt.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: ctr.ContainerId})
			wantCode(t, "ReopenContainerLog of a stopped container", err, codes.FailedPrecondition)
		})
	}
}

func TestStartDelay(t *testing.T) {
	ctx := t.Context()
	const delay = 5 * time.Second
	fc := clocktesting.NewFakeClock(epoch)
	r, c := start(t, Config{StartDelay: delay, Clock: fc})
	if _, err := c.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatalf("PullImage: %v", err)
	}

	// An abandoned start leaves nothing behind, not even the name.
	shortCtx, cancel := context.WithCancel(ctx)
	abandoned := make(chan error, 1)
	go func() {
		_, err := c.rt.RunPodSandbox(shortCtx, &runtimeapi.RunPodSandboxRequest{Config: sandboxConfig("web", nil)})
		abandoned <- err
	}()
	waitFor(t, "RunPodSandbox to wait on the clock", fc.HasWaiters)
	cancel()
	// The fake clock keeps the abandoned waiter until time passes.
	wantCode(t, "cancelled RunPodSandbox", <-abandoned, codes.Canceled)
	// The server learns of the cancellation after the client returns.
	waitFor(t, "the abandoned sandbox's name to be released", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.names) == 0
	})

	type result struct {
		id  string
		err error
	}
	ran := make(chan result, 1)
	go func() {
		resp, err := c.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sandboxConfig("web", nil)})
		ran <- result{resp.GetPodSandboxId(), err}
	}()
	waitFor(t, "RunPodSandbox to wait on the clock", func() bool { return fc.Waiters() == 2 })
	if list, err := c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err != nil || len(list.Items) != 0 {
		t.Fatalf("sandboxes while starting = %v, %v; want none", list, err)
	}
	fc.Step(delay)
	res := <-ran
	if res.err != nil {
		t.Fatalf("RunPodSandbox: %v", res.err)
	}
	sb, err := c.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: res.id})
	if err != nil || sb.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("sandbox after delay = %v, %v; want READY", sb, err)
	}

	ctr, err := c.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: res.id, Config: containerConfig("app", "busybox", nil)})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	started := make(chan error, 1)
	go func() {
		_, err := c.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId})
		started <- err
	}()
	waitFor(t, "StartContainer to wait on the clock", fc.HasWaiters)
	if st := containerStatus(t, c, ctr.ContainerId); st.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Fatalf("container while starting is %s, want CREATED", st.State)
	}
	fc.Step(delay)
	if err := <-started; err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	st := containerStatus(t, c, ctr.ContainerId)
	if st.State != runtimeapi.ContainerState_CONTAINER_RUNNING || st.StartedAt != epoch.Add(2*delay).UnixNano() {
		t.Fatalf("container after delay: %s started at %d, want RUNNING at %d", st.State, st.StartedAt, epoch.Add(2*delay).UnixNano())
	}
}

func TestStats(t *testing.T) {
	ctx := t.Context()
	fc := clocktesting.NewFakeClock(epoch)
	_, c := start(t, Config{Clock: fc})
	sbID, ctrID := runPod(t, c, "web", nil, nil)
	fc.Step(100 * time.Second)

	cs, err := c.rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: ctrID})
	if err != nil {
		t.Fatalf("ContainerStats: %v", err)
	}
	s := cs.Stats
	// 100 s at a hundredth of a core.
	if s.Cpu.UsageCoreNanoSeconds.Value != 1e9 || s.Cpu.UsageNanoCores.Value != nanoCoresRunning ||
		s.Memory.WorkingSetBytes.Value != memoryBytesRunning || s.WritableLayer.UsedBytes.Value != writableLayerBytes ||
		s.Attributes.Metadata.GetName() != "app" {
		t.Errorf("running container stats = %v", s)
	}
	ps, err := c.rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: sbID})
	if err != nil {
		t.Fatalf("PodSandboxStats: %v", err)
	}
	if l := ps.Stats.Linux; l.Process.ProcessCount.Value != 1 || len(l.Containers) != 1 || l.Memory.WorkingSetBytes.Value != memoryBytesRunning {
		t.Errorf("pod stats = %v", ps.Stats)
	}

	if _, err := c.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sbID}); err != nil {
		t.Fatal(err)
	}
	fc.Step(100 * time.Second)
	cs, err = c.rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: ctrID})
	if err != nil {
		t.Fatalf("ContainerStats: %v", err)
	}
	if s := cs.Stats; s.Cpu.UsageCoreNanoSeconds.Value != 1e9 || s.Cpu.UsageNanoCores.Value != 0 || s.Memory.WorkingSetBytes.Value != 0 {
		t.Errorf("exited container stats = %v; want CPU frozen at 1e9 and no memory", s)
	}
	list, err := c.rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
	if err != nil || len(list.Stats) != 0 {
		t.Errorf("ListPodSandboxStats with no ready sandbox = %v, %v", list, err)
	}
}

func TestExecSyncAndUpdate(t *testing.T) {
	ctx := t.Context()
	_, c := start(t, Config{})
	_, ctrID := runPod(t, c, "web", nil, nil)

	out, err := c.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctrID, Cmd: []string{"cat", "/etc/hostname"}, Timeout: 1})
	if err != nil || out.ExitCode != 0 || string(out.Stdout) != "simulated exec: cat /etc/hostname\n" {
		t.Fatalf("ExecSync = %v, %v", out, err)
	}
	if _, err := c.rt.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{
		ContainerId: ctrID, Linux: &runtimeapi.LinuxContainerResources{CpuShares: 512},
	}); err != nil {
		t.Fatalf("UpdateContainerResources: %v", err)
	}
	if got := containerStatus(t, c, ctrID).Resources.GetLinux().GetCpuShares(); got != 512 {
		t.Errorf("CPU shares after update = %d, want 512", got)
	}
	if _, err := c.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctrID}); err != nil {
		t.Fatal(err)
	}
	_, err = c.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctrID, Cmd: []string{"true"}})
	wantCode(t, "ExecSync in a stopped container", err, codes.FailedPrecondition)
}
