package sim

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Exit codes and reasons a simulated container ends with. A graceful stop
// models a process that handles SIGTERM and exits cleanly; anything else
// is a SIGKILL (128+9), as containerd reports it.
const (
	exitCodeKilled  = 137
	reasonCompleted = "Completed"
	reasonError     = "Error"
)

// logTimeLayout is RFC 3339 with fixed-width nanoseconds, as containerd
// writes CRI logs, so that lines sort as text.
const logTimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// container is the record of one container. As with sandbox, its maps and
// messages are never changed in place, only replaced.
type container struct {
	id, sandboxID, name string
	meta                *runtimeapi.ContainerMetadata
	image               *runtimeapi.ImageSpec // as ContainerStatus reports it
	imageRef, imageID   string
	labels, annotations map[string]string
	mounts              []*runtimeapi.Mount
	logPath             string
	resources           *runtimeapi.ContainerResources
	state               runtimeapi.ContainerState
	starting            bool // a StartContainer call is in its delay
	createdAt           int64
	startedAt           int64
	finishedAt          int64
	exitCode            int32
	reason              string
}

// kill ends a running container as SIGKILL would. Callers hold r.mu.
func (c *container) kill(now int64) {
	if c.state == runtimeapi.ContainerState_CONTAINER_RUNNING {
		c.exit(now, exitCodeKilled)
	}
}

func (c *container) exit(now int64, code int32) {
	c.state = runtimeapi.ContainerState_CONTAINER_EXITED
	c.finishedAt = now
	c.exitCode = code
	c.reason = reasonError
	if code == 0 {
		c.reason = reasonCompleted
	}
}

// CreateContainer records a CREATED container in a ready sandbox. The
// image must have been pulled, as with a real runtime.
func (r *Runtime) CreateContainer(_ context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	cfg := req.GetConfig()
	meta := cfg.GetMetadata()
	if meta.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "container config must include metadata with a name")
	}
	if cfg.GetImage().GetImage() == "" {
		return nil, status.Error(codes.InvalidArgument, "container config must include an image")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	sb, err := r.findSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if !sb.ready {
		return nil, status.Errorf(codes.FailedPrecondition, "sandbox %q is not ready", sb.id)
	}
	img, err := r.findImage(cfg.Image.Image)
	if err != nil {
		return nil, err
	}
	if img == nil {
		return nil, status.Errorf(codes.NotFound, "failed to resolve image %q: not found", cfg.Image.Image)
	}
	c := &container{
		id:        newID(),
		sandboxID: sb.id,
		name: strings.Join([]string{meta.Name, sb.meta.Name, sb.meta.Namespace, sb.meta.Uid,
			strconv.FormatUint(uint64(meta.Attempt), 10)}, "_"),
		meta: meta,
		image: &runtimeapi.ImageSpec{
			Image:              img.reportedName(),
			Annotations:        cfg.Image.Annotations,
			UserSpecifiedImage: cfg.Image.UserSpecifiedImage,
			RuntimeHandler:     cfg.Image.RuntimeHandler,
		},
		imageRef:    img.reportedRef(),
		imageID:     img.id,
		labels:      cfg.GetLabels(),
		annotations: cfg.GetAnnotations(),
		mounts:      cfg.GetMounts(),
		resources:   &runtimeapi.ContainerResources{Linux: cfg.GetLinux().GetResources()},
		state:       runtimeapi.ContainerState_CONTAINER_CREATED,
		createdAt:   r.now(),
	}
	if sb.logDir != "" && cfg.GetLogPath() != "" {
		c.logPath = filepath.Join(sb.logDir, cfg.LogPath)
	}
	if err := r.reserveName(c.name, c.id); err != nil {
		return nil, err
	}
	r.containers[c.id] = c
	r.log.Debug("container created", "containerId", c.id, "podSandboxId", sb.id, "container", meta.Name)
	return &runtimeapi.CreateContainerResponse{ContainerId: c.id}, nil
}

// StartContainer runs a created container: after the start delay it is
// RUNNING, and it stays so until stopped. If the sandbox has a log
// directory, one line announcing the start goes to the container's log.
func (r *Runtime) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	r.mu.Lock()
	c, err := r.findContainer(req.GetContainerId())
	if err == nil {
		err = r.startable(c)
	}
	if err != nil {
		r.mu.Unlock()
		return nil, err
	}
	c.starting = true
	id, name, logPath := c.id, c.meta.Name, c.logPath
	r.mu.Unlock()

	err = r.wait(ctx)
	if err == nil && logPath != "" {
		err = r.writeStartLine(logPath, name)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "container %q was removed while starting", id)
	}
	c.starting = false
	if err != nil {
		return nil, err
	}
	// The sandbox may have stopped during the delay.
	if sb := r.sandboxes[c.sandboxID]; sb == nil || !sb.ready {
		return nil, status.Errorf(codes.FailedPrecondition, "sandbox %q is not ready", c.sandboxID)
	}
	c.state = runtimeapi.ContainerState_CONTAINER_RUNNING
	c.startedAt = r.now()
	r.log.Debug("container started", "containerId", c.id)
	return &runtimeapi.StartContainerResponse{}, nil
}

// startable explains why c cannot start, if it cannot. Callers hold r.mu.
func (r *Runtime) startable(c *container) error {
	if c.state != runtimeapi.ContainerState_CONTAINER_CREATED || c.starting {
		return status.Errorf(codes.FailedPrecondition, "container %q is in %s state", c.id, c.state)
	}
	if sb := r.sandboxes[c.sandboxID]; sb == nil || !sb.ready {
		return status.Errorf(codes.FailedPrecondition, "sandbox %q is not ready", c.sandboxID)
	}
	return nil
}

// writeStartLine appends the container's one line of output in the CRI
// log format: timestamp, stream, F for a full line, text.
func (r *Runtime) writeStartLine(path, name string) error {
	line := fmt.Sprintf("%s stdout F simulated container %s started\n", r.clock.Now().UTC().Format(logTimeLayout), name)
	if err := appendFile(path, line); err != nil {
		return status.Errorf(codes.Internal, "write container log: %v", err)
	}
	return nil
}

// appendFile appends text to path, creating it and its directory.
func appendFile(path, text string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create log directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write log %s: %w", path, err)
	}
	return nil
}

// StopContainer ends a running container: with a grace period the
// simulated process exits 0 on SIGTERM (reason Completed); with none it is
// killed (137, Error). Stopping a stopped or never-started container
// succeeds and changes nothing.
func (r *Runtime) StopContainer(_ context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.findContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if c.state == runtimeapi.ContainerState_CONTAINER_RUNNING {
		code := int32(exitCodeKilled)
		if req.GetTimeout() > 0 {
			code = 0
		}
		c.exit(r.now(), code)
		r.log.Debug("container stopped", "containerId", c.id, "exitCode", code)
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

// RemoveContainer kills and forgets a container. Removing an unknown
// container succeeds. Its log file stays: removing logs is the kubelet's
// job, as with containerd.
func (r *Runtime) RemoveContainer(_ context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.findContainer(req.GetContainerId())
	if status.Code(err) == codes.NotFound {
		return &runtimeapi.RemoveContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	delete(r.names, c.name)
	delete(r.containers, c.id)
	r.log.Debug("container removed", "containerId", c.id)
	return &runtimeapi.RemoveContainerResponse{}, nil
}

// ContainerStatus reports a container, or NotFound.
func (r *Runtime) ContainerStatus(_ context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.findContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatusResponse{Status: &runtimeapi.ContainerStatus{
		Id:          c.id,
		Metadata:    c.meta,
		State:       c.state,
		CreatedAt:   c.createdAt,
		StartedAt:   c.startedAt,
		FinishedAt:  c.finishedAt,
		ExitCode:    c.exitCode,
		Image:       c.image,
		ImageRef:    c.imageRef,
		ImageId:     c.imageID,
		Reason:      c.reason,
		Labels:      c.labels,
		Annotations: c.annotations,
		Mounts:      c.mounts,
		LogPath:     c.logPath,
		Resources:   c.resources,
	}}, nil
}

// ListContainers lists the containers matching the filter, oldest first.
// ID filters match prefixes, as in containerd.
func (r *Runtime) ListContainers(_ context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	return &runtimeapi.ListContainersResponse{Containers: r.listContainers(req.GetFilter())}, nil
}

// StreamContainers sends the ListContainers result in chunks.
func (r *Runtime) StreamContainers(req *runtimeapi.StreamContainersRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainersResponse]) error {
	return sendChunks(r.listContainers(req.GetFilter()), func(items []*runtimeapi.Container) error {
		return stream.Send(&runtimeapi.StreamContainersResponse{Containers: items})
	})
}

func (r *Runtime) listContainers(f *runtimeapi.ContainerFilter) []*runtimeapi.Container {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*runtimeapi.Container
	for _, c := range r.containers {
		if !c.matches(f.GetId(), f.GetPodSandboxId(), f.GetLabelSelector()) ||
			(f.GetState() != nil && f.GetState().GetState() != c.state) {
			continue
		}
		// The list reports the image ID as imageRef, as containerd does:
		// the kubelet's image GC matches it against image IDs.
		out = append(out, &runtimeapi.Container{
			Id:           c.id,
			PodSandboxId: c.sandboxID,
			Metadata:     c.meta,
			Image:        c.image,
			ImageRef:     c.imageID,
			ImageId:      c.imageID,
			State:        c.state,
			CreatedAt:    c.createdAt,
			Labels:       c.labels,
			Annotations:  c.annotations,
		})
	}
	slices.SortFunc(out, func(a, b *runtimeapi.Container) int {
		return cmp.Or(cmp.Compare(a.CreatedAt, b.CreatedAt), strings.Compare(a.Id, b.Id))
	})
	return out
}

// matches applies the filters that container lists and stats share.
func (c *container) matches(idPrefix, sandboxPrefix string, selector map[string]string) bool {
	return strings.HasPrefix(c.id, idPrefix) && strings.HasPrefix(c.sandboxID, sandboxPrefix) &&
		matchLabels(selector, c.labels)
}

// UpdateContainerResources records new Linux resources for a container;
// nothing is enforced.
func (r *Runtime) UpdateContainerResources(_ context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.findContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	if req.GetLinux() != nil {
		c.resources = &runtimeapi.ContainerResources{Linux: req.Linux}
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

// ReopenContainerLog recreates a running container's log file after the
// kubelet has rotated it away; like containerd it refuses for a container
// that is not running.
func (r *Runtime) ReopenContainerLog(_ context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	r.mu.Lock()
	c, err := r.findContainer(req.GetContainerId())
	if err == nil && c.state != runtimeapi.ContainerState_CONTAINER_RUNNING {
		err = status.Errorf(codes.FailedPrecondition, "container %q is not running", c.id)
	}
	var path string
	if err == nil {
		path = c.logPath
	}
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if path != "" {
		if err := appendFile(path, ""); err != nil {
			return nil, status.Errorf(codes.Internal, "reopen container log: %v", err)
		}
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}

// ExecSync "runs" cmd in a running container: it exits 0 at once, printing
// what it would have run, so exec probes pass.
func (r *Runtime) ExecSync(_ context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.runningContainer(req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtimeapi.ExecSyncResponse{Stdout: []byte(execOutput(req.GetCmd()))}, nil
}

// execOutput is what a simulated command prints.
func execOutput(cmd []string) string {
	return "simulated exec: " + strings.Join(cmd, " ") + "\n"
}

// runningContainer finds a container that must be running for the call
// at hand. Callers hold r.mu.
func (r *Runtime) runningContainer(id string) (*container, error) {
	c, err := r.findContainer(id)
	if err != nil {
		return nil, err
	}
	if c.state != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return nil, status.Errorf(codes.FailedPrecondition, "container %q is in %s state", c.id, c.state)
	}
	return c, nil
}

// findContainer looks a container up by ID or unique ID prefix. Callers
// hold r.mu.
func (r *Runtime) findContainer(id string) (*container, error) {
	return findByID(r.containers, id, "container")
}
