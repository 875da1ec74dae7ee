package sim

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The simulated resource use of every running container: a hundredth of
// a core, 1 MiB of memory and a 4 KiB writable layer. Constant figures
// keep stats cheap while giving the kubelet's summary API, eviction and
// metrics something non-zero to chew on.
const (
	nanoCoresRunning   = 10_000_000
	memoryBytesRunning = 1 << 20
	writableLayerBytes = 4 << 10
)

// ContainerStats reports one container's simulated usage, or NotFound.
func (r *Runtime) ContainerStats(_ context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.findContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatsResponse{Stats: r.containerStats(c, r.now())}, nil
}

// ListContainerStats reports the usage of every container matching the
// filter, exited ones included, as containerd does.
func (r *Runtime) ListContainerStats(_ context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	return &runtimeapi.ListContainerStatsResponse{Stats: r.listContainerStats(req.GetFilter())}, nil
}

// StreamContainerStats sends the ListContainerStats result in chunks.
func (r *Runtime) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainerStatsResponse]) error {
	return sendChunks(r.listContainerStats(req.GetFilter()), func(items []*runtimeapi.ContainerStats) error {
		return stream.Send(&runtimeapi.StreamContainerStatsResponse{ContainerStats: items})
	})
}

func (r *Runtime) listContainerStats(f *runtimeapi.ContainerStatsFilter) []*runtimeapi.ContainerStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	var out []*runtimeapi.ContainerStats
	for _, c := range r.containers {
		if c.matches(f.GetId(), f.GetPodSandboxId(), f.GetLabelSelector()) {
			out = append(out, r.containerStats(c, now))
		}
	}
	return out
}

// PodSandboxStats reports a sandbox's usage as the sum of its
// containers', or NotFound.
func (r *Runtime) PodSandboxStats(_ context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sb, err := r.findSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: r.sandboxStats(sb, r.now())}, nil
}

// ListPodSandboxStats reports the usage of the ready sandboxes matching
// the filter.
func (r *Runtime) ListPodSandboxStats(_ context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: r.listSandboxStats(req.GetFilter())}, nil
}

// StreamPodSandboxStats sends the ListPodSandboxStats result in chunks.
func (r *Runtime) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxStatsResponse]) error {
	return sendChunks(r.listSandboxStats(req.GetFilter()), func(items []*runtimeapi.PodSandboxStats) error {
		return stream.Send(&runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: items})
	})
}

func (r *Runtime) listSandboxStats(f *runtimeapi.PodSandboxStatsFilter) []*runtimeapi.PodSandboxStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	var out []*runtimeapi.PodSandboxStats
	for _, sb := range r.sandboxes {
		if sb.ready && strings.HasPrefix(sb.id, f.GetId()) && matchLabels(f.GetLabelSelector(), sb.labels) {
			out = append(out, r.sandboxStats(sb, now))
		}
	}
	return out
}

// containerStats computes c's usage at now. Callers hold r.mu.
func (r *Runtime) containerStats(c *container, now int64) *runtimeapi.ContainerStats {
	running := c.state == runtimeapi.ContainerState_CONTAINER_RUNNING
	var ranFor int64 // nanoseconds spent running
	switch {
	case running:
		ranFor = now - c.startedAt
	case c.startedAt > 0:
		ranFor = c.finishedAt - c.startedAt
	}
	var nanoCores, memory uint64
	if running {
		nanoCores, memory = nanoCoresRunning, memoryBytesRunning
	}
	return &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{
			Id:          c.id,
			Metadata:    c.meta,
			Labels:      c.labels,
			Annotations: c.annotations,
		},
		Cpu: &runtimeapi.CpuUsage{
			Timestamp:            now,
			UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: uint64(max(ranFor, 0)) / (1e9 / nanoCoresRunning)},
			UsageNanoCores:       &runtimeapi.UInt64Value{Value: nanoCores},
		},
		Memory: &runtimeapi.MemoryUsage{
			Timestamp:       now,
			WorkingSetBytes: &runtimeapi.UInt64Value{Value: memory},
			UsageBytes:      &runtimeapi.UInt64Value{Value: memory},
			RssBytes:        &runtimeapi.UInt64Value{Value: memory},
		},
		WritableLayer: &runtimeapi.FilesystemUsage{
			Timestamp:  now,
			FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: imageFsMountpoint},
			UsedBytes:  &runtimeapi.UInt64Value{Value: writableLayerBytes},
			InodesUsed: &runtimeapi.UInt64Value{Value: 1},
		},
	}
}

// sandboxStats sums the usage of sb's containers. Callers hold r.mu.
func (r *Runtime) sandboxStats(sb *sandbox, now int64) *runtimeapi.PodSandboxStats {
	cpu := &runtimeapi.CpuUsage{Timestamp: now, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{}, UsageNanoCores: &runtimeapi.UInt64Value{}}
	mem := &runtimeapi.MemoryUsage{Timestamp: now, WorkingSetBytes: &runtimeapi.UInt64Value{}, UsageBytes: &runtimeapi.UInt64Value{}, RssBytes: &runtimeapi.UInt64Value{}}
	var running uint64
	var containers []*runtimeapi.ContainerStats
	for _, c := range r.containers {
		if c.sandboxID != sb.id {
			continue
		}
		cs := r.containerStats(c, now)
		containers = append(containers, cs)
		cpu.UsageCoreNanoSeconds.Value += cs.Cpu.UsageCoreNanoSeconds.Value
		cpu.UsageNanoCores.Value += cs.Cpu.UsageNanoCores.Value
		mem.WorkingSetBytes.Value += cs.Memory.WorkingSetBytes.Value
		mem.UsageBytes.Value += cs.Memory.UsageBytes.Value
		mem.RssBytes.Value += cs.Memory.RssBytes.Value
		if c.state == runtimeapi.ContainerState_CONTAINER_RUNNING {
			running++
		}
	}
	return &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{
			Id:          sb.id,
			Metadata:    sb.meta,
			Labels:      sb.labels,
			Annotations: sb.annotations,
		},
		Linux: &runtimeapi.LinuxPodSandboxStats{
			Cpu:        cpu,
			Memory:     mem,
			Process:    &runtimeapi.ProcessUsage{Timestamp: now, ProcessCount: &runtimeapi.UInt64Value{Value: running}},
			Containers: containers,
		},
	}
}
