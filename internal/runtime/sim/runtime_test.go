package sim

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// clients are the two CRI clients a kubelet holds.
type clients struct {
	rt  runtimeapi.RuntimeServiceClient
	img runtimeapi.ImageServiceClient
}

// start returns a runtime and clients connected to it in-process; both
// go away when the test ends.
func start(t *testing.T, cfg Config) (*Runtime, clients) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := New(cfg)
	conn, err := r.Connect(t.Context())
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	return r, clients{rt: runtimeapi.NewRuntimeServiceClient(conn), img: runtimeapi.NewImageServiceClient(conn)}
}

// wantCode fails the test unless err carries code.
func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("%s: got code %s (%v), want %s", what, got, err, code)
	}
}

// sandboxConfig is a minimal pod sandbox config.
func sandboxConfig(name string, labels map[string]string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: "uid-" + name},
		Labels:   labels,
	}
}

// containerConfig is a minimal container config using image.
func containerConfig(name, image string, labels map[string]string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: image},
		Labels:   labels,
		LogPath:  name + "/0.log",
	}
}

// runPod pulls busybox and runs a sandbox with one running container.
func runPod(t *testing.T, c clients, name string, sbLabels, ctrLabels map[string]string) (sandboxID, containerID string) {
	t.Helper()
	ctx := t.Context()
	if _, err := c.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatalf("PullImage: %v", err)
	}
	sbCfg := sandboxConfig(name, sbLabels)
	sb, err := c.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sbCfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	ctr, err := c.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: sb.PodSandboxId, Config: containerConfig("app", "busybox", ctrLabels), SandboxConfig: sbCfg,
	})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := c.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	return sb.PodSandboxId, ctr.ContainerId
}

func TestVersionAndStatus(t *testing.T) {
	_, c := start(t, Config{})
	v, err := c.rt.Version(t.Context(), &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	if v.RuntimeName != RuntimeName || v.RuntimeApiVersion != "v1" || v.RuntimeVersion != RuntimeVersion {
		t.Errorf("Version = %v", v)
	}
	st, err := c.rt.Status(t.Context(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	ready := map[string]bool{}
	for _, cond := range st.Status.Conditions {
		ready[cond.Type] = cond.Status
	}
	if !ready[runtimeapi.RuntimeReady] || !ready[runtimeapi.NetworkReady] {
		t.Errorf("conditions = %v, want RuntimeReady and NetworkReady true", st.Status.Conditions)
	}
}

func TestLifecycle(t *testing.T) {
	tests := []struct {
		name string
		// end finishes the running container somehow.
		end          func(ctx context.Context, c clients, sandboxID, containerID string) error
		wantExitCode int32
		wantReason   string
		wantSandbox  runtimeapi.PodSandboxState
	}{{
		name: "graceful stop",
		end: func(ctx context.Context, c clients, _, id string) error {
			_, err := c.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 30})
			return err
		},
		wantExitCode: 0, wantReason: "Completed", wantSandbox: runtimeapi.PodSandboxState_SANDBOX_READY,
	}, {
		name: "stop without grace period kills",
		end: func(ctx context.Context, c clients, _, id string) error {
			_, err := c.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id})
			return err
		},
		wantExitCode: 137, wantReason: "Error", wantSandbox: runtimeapi.PodSandboxState_SANDBOX_READY,
	}, {
		name: "sandbox stop kills containers",
		end: func(ctx context.Context, c clients, sb, _ string) error {
			_, err := c.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb})
			return err
		},
		wantExitCode: 137, wantReason: "Error", wantSandbox: runtimeapi.PodSandboxState_SANDBOX_NOTREADY,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			_, c := start(t, Config{})
			sbID, ctrID := runPod(t, c, "web", map[string]string{"app": "web"}, map[string]string{"tier": "front"})

			sb, err := c.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sbID})
			if err != nil {
				t.Fatalf("PodSandboxStatus: %v", err)
			}
			if s := sb.Status; s.State != runtimeapi.PodSandboxState_SANDBOX_READY || s.Metadata.GetName() != "web" ||
				s.Labels["app"] != "web" || s.CreatedAt == 0 || !defaultPodCIDR.Contains(netip.MustParseAddr(s.Network.GetIp())) {
				t.Fatalf("sandbox status = %v", s)
			}
			st := containerStatus(t, c, ctrID)
			if st.State != runtimeapi.ContainerState_CONTAINER_RUNNING || st.StartedAt < st.CreatedAt || st.FinishedAt != 0 ||
				st.Metadata.GetName() != "app" || st.Labels["tier"] != "front" ||
				st.Image.GetImage() != "docker.io/library/busybox:latest" || st.ImageId == "" ||
				st.ImageRef == "" || st.ImageRef == st.ImageId {
				t.Fatalf("running container status = %v", st)
			}
			if _, err := c.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctrID}); status.Code(err) != codes.FailedPrecondition {
				t.Errorf("second StartContainer: %v, want FailedPrecondition", err)
			}

			if err := tt.end(ctx, c, sbID, ctrID); err != nil {
				t.Fatalf("ending the container: %v", err)
			}
			st = containerStatus(t, c, ctrID)
			if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != tt.wantExitCode ||
				st.Reason != tt.wantReason || st.FinishedAt < st.StartedAt {
				t.Errorf("exited container: state %s exit %d reason %q finished %d, want EXITED %d %q",
					st.State, st.ExitCode, st.Reason, st.FinishedAt, tt.wantExitCode, tt.wantReason)
			}
			sb, err = c.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sbID})
			if err != nil || sb.Status.State != tt.wantSandbox {
				t.Errorf("sandbox after end: %v, %v; want %s", sb, err, tt.wantSandbox)
			}

			// Stop and remove are idempotent all the way down.
			for range 2 {
				if _, err := c.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctrID, Timeout: 1}); err != nil {
					t.Errorf("StopContainer again: %v", err)
				}
				if _, err := c.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sbID}); err != nil {
					t.Errorf("StopPodSandbox: %v", err)
				}
			}
			if st := containerStatus(t, c, ctrID); st.ExitCode != tt.wantExitCode {
				t.Errorf("stopping again changed the exit code to %d", st.ExitCode)
			}
			for range 2 {
				if _, err := c.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctrID}); err != nil {
					t.Errorf("RemoveContainer: %v", err)
				}
				if _, err := c.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sbID}); err != nil {
					t.Errorf("RemovePodSandbox: %v", err)
				}
			}
			_, err = c.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sbID})
			wantCode(t, "PodSandboxStatus after remove", err, codes.NotFound)
			list, err := c.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
			if err != nil || len(list.Containers) != 0 {
				t.Errorf("ListContainers after remove = %v, %v", list, err)
			}
			// The names are free again: the same pod attempt can run anew.
			runPod(t, c, "web", nil, nil)
		})
	}
}

func TestRemoveSandboxRemovesContainers(t *testing.T) {
	_, c := start(t, Config{})
	sbID, ctrID := runPod(t, c, "web", nil, nil)
	if _, err := c.rt.RemovePodSandbox(t.Context(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sbID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	_, err := c.rt.ContainerStatus(t.Context(), &runtimeapi.ContainerStatusRequest{ContainerId: ctrID})
	wantCode(t, "ContainerStatus of a removed sandbox's container", err, codes.NotFound)
}

func containerStatus(t *testing.T, c clients, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	resp, err := c.rt.ContainerStatus(t.Context(), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStatus: %v", err)
	}
	return resp.Status
}

func TestErrorCodes(t *testing.T) {
	_, c := start(t, Config{})
	sbID, _ := runPod(t, c, "web", nil, nil)
	const unknown = "0000000000000000000000000000000000000000000000000000000000000000"
	tests := []struct {
		name string
		call func(ctx context.Context) error
		want codes.Code
	}{
		{"ContainerStatus unknown", func(ctx context.Context) error {
			_, err := c.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: unknown})
			return err
		}, codes.NotFound},
		{"StartContainer unknown", func(ctx context.Context) error {
			_, err := c.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: unknown})
			return err
		}, codes.NotFound},
		{"StopContainer unknown", func(ctx context.Context) error {
			_, err := c.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: unknown})
			return err
		}, codes.NotFound},
		{"PodSandboxStatus unknown", func(ctx context.Context) error {
			_, err := c.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: unknown})
			return err
		}, codes.NotFound},
		{"StopPodSandbox unknown", func(ctx context.Context) error {
			_, err := c.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: unknown})
			return err
		}, codes.NotFound},
		{"ContainerStats unknown", func(ctx context.Context) error {
			_, err := c.rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: unknown})
			return err
		}, codes.NotFound},
		{"PodSandboxStats unknown", func(ctx context.Context) error {
			_, err := c.rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: unknown})
			return err
		}, codes.NotFound},
		{"ExecSync unknown", func(ctx context.Context) error {
			_, err := c.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: unknown, Cmd: []string{"true"}})
			return err
		}, codes.NotFound},
		{"UpdateContainerResources unknown", func(ctx context.Context) error {
			_, err := c.rt.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: unknown})
			return err
		}, codes.NotFound},
		{"CreateContainer in unknown sandbox", func(ctx context.Context) error {
			_, err := c.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: unknown, Config: containerConfig("x", "busybox", nil)})
			return err
		}, codes.NotFound},
		{"CreateContainer with image not pulled", func(ctx context.Context) error {
			_, err := c.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: sbID, Config: containerConfig("x", "nginx:1.27", nil)})
			return err
		}, codes.NotFound},
		{"CreateContainer with a taken name", func(ctx context.Context) error {
			_, err := c.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: sbID, Config: containerConfig("app", "busybox", nil)})
			return err
		}, codes.AlreadyExists},
		{"RunPodSandbox twice for one attempt", func(ctx context.Context) error {
			_, err := c.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sandboxConfig("web", nil)})
			return err
		}, codes.AlreadyExists},
		{"RunPodSandbox without metadata", func(ctx context.Context) error {
			_, err := c.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{}})
			return err
		}, codes.InvalidArgument},
		{"RemoveContainer unknown is idempotent", func(ctx context.Context) error {
			_, err := c.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: unknown})
			return err
		}, codes.OK},
		{"RemovePodSandbox unknown is idempotent", func(ctx context.Context) error {
			_, err := c.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: unknown})
			return err
		}, codes.OK},
		{"PodSandboxStatus by ID prefix", func(ctx context.Context) error {
			_, err := c.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sbID[:12]})
			return err
		}, codes.OK},
		{"GetContainerEvents, as containerd 1.6", func(ctx context.Context) error {
			stream, err := c.rt.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
			if err == nil {
				_, err = stream.Recv()
			}
			return err
		}, codes.Unimplemented},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, tt.name, tt.call(t.Context()), tt.want)
		})
	}
}

func TestListFilters(t *testing.T) {
	ctx := t.Context()
	_, c := start(t, Config{})
	sbA, ctrA := runPod(t, c, "a", map[string]string{"app": "a", "env": "prod"}, map[string]string{"role": "main"})
	sbB, ctrB := runPod(t, c, "b", map[string]string{"app": "b", "env": "prod"}, map[string]string{"role": "main"})
	sideB, err := c.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: sbB, Config: containerConfig("side", "busybox", map[string]string{"role": "side"}),
	})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := c.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sbA}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}

	sandboxTests := []struct {
		name   string
		filter *runtimeapi.PodSandboxFilter
		want   []string
	}{
		{"no filter", nil, []string{sbA, sbB}},
		{"id", &runtimeapi.PodSandboxFilter{Id: sbB}, []string{sbB}},
		{"id prefix", &runtimeapi.PodSandboxFilter{Id: sbA[:8]}, []string{sbA}},
		{"ready", &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}, []string{sbB}},
		{"not ready", &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}}, []string{sbA}},
		{"labels", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"env": "prod", "app": "a"}}, []string{sbA}},
		{"labels no match", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"env": "dev"}}, nil},
	}
	for _, tt := range sandboxTests {
		t.Run("sandboxes/"+tt.name, func(t *testing.T) {
			resp, err := c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: tt.filter})
			if err != nil {
				t.Fatalf("ListPodSandbox: %v", err)
			}
			var got []string
			for _, sb := range resp.Items {
				got = append(got, sb.Id)
			}
			sameIDs(t, got, tt.want)
			stream, err := c.rt.StreamPodSandboxes(ctx, &runtimeapi.StreamPodSandboxesRequest{Filter: tt.filter})
			if err != nil {
				t.Fatalf("StreamPodSandboxes: %v", err)
			}
			got = nil
			for {
				msg, err := stream.Recv()
				if err != nil {
					if !errors.Is(err, io.EOF) {
						t.Fatalf("StreamPodSandboxes: %v", err)
					}
					break
				}
				for _, sb := range msg.PodSandboxes {
					got = append(got, sb.Id)
				}
			}
			sameIDs(t, got, tt.want)
		})
	}

	running := &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}
	containerTests := []struct {
		name   string
		filter *runtimeapi.ContainerFilter
		want   []string
	}{
		{"no filter", nil, []string{ctrA, ctrB, sideB.ContainerId}},
		{"id", &runtimeapi.ContainerFilter{Id: ctrB}, []string{ctrB}},
		{"sandbox", &runtimeapi.ContainerFilter{PodSandboxId: sbB}, []string{ctrB, sideB.ContainerId}},
		{"running", &runtimeapi.ContainerFilter{State: running}, []string{ctrB}},
		{"created in sandbox", &runtimeapi.ContainerFilter{PodSandboxId: sbB, State: &runtimeapi.ContainerStateValue{}}, []string{sideB.ContainerId}},
		{"exited", &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}}, []string{ctrA}},
		{"labels", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"role": "main"}}, []string{ctrA, ctrB}},
		{"sandbox and labels", &runtimeapi.ContainerFilter{PodSandboxId: sbA, LabelSelector: map[string]string{"role": "side"}}, nil},
	}
	for _, tt := range containerTests {
		t.Run("containers/"+tt.name, func(t *testing.T) {
			resp, err := c.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: tt.filter})
			if err != nil {
				t.Fatalf("ListContainers: %v", err)
			}
			var got []string
			for _, ctr := range resp.Containers {
				got = append(got, ctr.Id)
			}
			sameIDs(t, got, tt.want)

			var statsFilter *runtimeapi.ContainerStatsFilter
			if tt.filter != nil {
				if tt.filter.State != nil {
					return // stats filters have no state
				}
				statsFilter = &runtimeapi.ContainerStatsFilter{Id: tt.filter.Id, PodSandboxId: tt.filter.PodSandboxId, LabelSelector: tt.filter.LabelSelector}
			}
			stats, err := c.rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{Filter: statsFilter})
			if err != nil {
				t.Fatalf("ListContainerStats: %v", err)
			}
			got = nil
			for _, s := range stats.Stats {
				got = append(got, s.Attributes.Id)
			}
			sameIDs(t, got, tt.want)
		})
	}
}

// sameIDs compares ID lists ignoring order.
func sameIDs(t *testing.T, got, want []string) {
	t.Helper()
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	for _, id := range want {
		seen[id]--
	}
	for id, n := range seen {
		if n != 0 {
			t.Errorf("got IDs %v, want %v (mismatch at %s)", got, want, id)
			return
		}
	}
}

func TestPodIPs(t *testing.T) {
	ctx := t.Context()
	_, c := start(t, Config{})
	if _, err := c.rt.UpdateRuntimeConfig(ctx, &runtimeapi.UpdateRuntimeConfigRequest{
		RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.1.2.0/30,fd00::/64"}},
	}); err != nil {
		t.Fatalf("UpdateRuntimeConfig: %v", err)
	}
	run := func(name string, hostNetwork bool) (string, string, error) {
		cfg := sandboxConfig(name, nil)
		if hostNetwork {
			cfg.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
			}}
		}
		sb, err := c.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		if err != nil {
			return "", "", err
		}
		st, err := c.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sb.PodSandboxId})
		if err != nil {
			return "", "", err
		}
		return sb.PodSandboxId, st.Status.Network.GetIp(), nil
	}
	// A /30 has two host addresses: .0 is the network, .3 broadcast.
	first, ip1, err := run("one", false)
	if err != nil || ip1 != "10.1.2.1" {
		t.Fatalf("first sandbox IP = %q, %v; want 10.1.2.1", ip1, err)
	}
	if _, ip, err := run("two", false); err != nil || ip != "10.1.2.2" {
		t.Fatalf("second sandbox IP = %q, %v; want 10.1.2.2", ip, err)
	}
	if _, ip, err := run("host", true); err != nil || ip != "" {
		t.Fatalf("host-network sandbox IP = %q, %v; want none", ip, err)
	}
	_, _, err = run("three", false)
	wantCode(t, "third sandbox in a /30", err, codes.ResourceExhausted)
	if _, err := c.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: first}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, ip, err := run("four", false); err != nil || ip != "10.1.2.1" {
		t.Fatalf("sandbox after a stop got IP %q, %v; want the freed 10.1.2.1", ip, err)
	}

	_, err = c.rt.UpdateRuntimeConfig(ctx, &runtimeapi.UpdateRuntimeConfigRequest{
		RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "not-a-cidr"}},
	})
	wantCode(t, "UpdateRuntimeConfig with a bad CIDR", err, codes.InvalidArgument)
}

func TestServe(t *testing.T) {
	r := New(Config{Logger: slog.New(slog.DiscardHandler)})
	lis, err := net.Listen("unix", t.TempDir()+"/cri.sock")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, lis) }()

	conn, err := grpc.NewClient("unix://"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := runtimeapi.NewImageServiceClient(conn).ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{}); err != nil {
		t.Fatalf("ImageFsInfo over a socket: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve returned %v after its context ended", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

func TestConnectStopsWithContext(t *testing.T) {
	before := runtime.NumGoroutine()
	r := New(Config{Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(t.Context())
	conn, err := r.Connect(ctx)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if _, err := runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
		t.Fatalf("Version: %v", err)
	}
	if runtime.NumGoroutine() <= before {
		t.Fatal("a live connection should own goroutines")
	}
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines remain after the context ended, %d before Connect", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
	if _, err := r.Connect(ctx); err == nil {
		t.Error("Connect with an ended context succeeded")
	}
}
