package sim

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// sandbox is the record of one pod sandbox. Its maps and messages come
// from the request and are never changed in place, so responses may share
// them after the lock is released.
type sandbox struct {
	id, name       string
	meta           *runtimeapi.PodSandboxMetadata
	labels         map[string]string
	annotations    map[string]string
	logDir         string
	runtimeHandler string
	namespaces     *runtimeapi.NamespaceOption
	ip             netip.Addr // invalid for host-network pods
	createdAt      int64
	ready          bool
}

// RunPodSandbox records a READY sandbox after the start delay, with an IP
// from the pod CIDR unless the pod uses the host's network.
func (r *Runtime) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	cfg := req.GetConfig()
	meta := cfg.GetMetadata()
	if meta.GetName() == "" || meta.GetNamespace() == "" || meta.GetUid() == "" {
		return nil, status.Error(codes.InvalidArgument, "sandbox config must include metadata with name, namespace and uid")
	}
	sb := &sandbox{
		id:             newID(),
		name:           strings.Join([]string{meta.Name, meta.Namespace, meta.Uid, strconv.FormatUint(uint64(meta.Attempt), 10)}, "_"),
		meta:           meta,
		labels:         cfg.GetLabels(),
		annotations:    cfg.GetAnnotations(),
		logDir:         cfg.GetLogDirectory(),
		runtimeHandler: req.GetRuntimeHandler(),
		namespaces:     cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(),
		createdAt:      r.now(),
	}
	r.mu.Lock()
	err := r.reserveName(sb.name, sb.id)
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := r.wait(ctx); err != nil {
		r.mu.Lock()
		delete(r.names, sb.name)
		r.mu.Unlock()
		return nil, err
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if sb.namespaces.GetNetwork() != runtimeapi.NamespaceMode_NODE {
		ip, err := r.allocateIP()
		if err != nil {
			delete(r.names, sb.name)
			return nil, err
		}
		sb.ip = ip
	}
	sb.ready = true
	r.sandboxes[sb.id] = sb
	r.log.Debug("sandbox ready", "podSandboxId", sb.id, "pod", meta.Namespace+"/"+meta.Name, "ip", sb.ip.String())
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: sb.id}, nil
}

// StopPodSandbox kills the sandbox's running containers, as SIGKILL would,
// and frees its IP. Stopping a stopped sandbox succeeds.
func (r *Runtime) StopPodSandbox(_ context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sb, err := r.findSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	r.stopSandbox(sb)
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

// stopSandbox does StopPodSandbox's work. Callers hold r.mu.
func (r *Runtime) stopSandbox(sb *sandbox) {
	now := r.now()
	for _, c := range r.containers {
		if c.sandboxID == sb.id {
			c.kill(now)
		}
	}
	if sb.ready {
		sb.ready = false
		delete(r.usedIPs, sb.ip)
		r.log.Debug("sandbox stopped", "podSandboxId", sb.id)
	}
}

// RemovePodSandbox stops the sandbox and forgets it and its containers.
// Removing an unknown sandbox succeeds, as the call must be idempotent.
func (r *Runtime) RemovePodSandbox(_ context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sb, err := r.findSandbox(req.GetPodSandboxId())
	if status.Code(err) == codes.NotFound {
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	r.stopSandbox(sb)
	for id, c := range r.containers {
		if c.sandboxID == sb.id {
			delete(r.names, c.name)
			delete(r.containers, id)
		}
	}
	delete(r.names, sb.name)
	delete(r.sandboxes, sb.id)
	r.log.Debug("sandbox removed", "podSandboxId", sb.id)
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

// PodSandboxStatus reports a sandbox, or NotFound.
func (r *Runtime) PodSandboxStatus(_ context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sb, err := r.findSandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	st := &runtimeapi.PodSandboxStatus{
		Id:             sb.id,
		Metadata:       sb.meta,
		State:          sb.state(),
		CreatedAt:      sb.createdAt,
		Network:        &runtimeapi.PodSandboxNetworkStatus{},
		Labels:         sb.labels,
		Annotations:    sb.annotations,
		RuntimeHandler: sb.runtimeHandler,
	}
	if sb.ip.IsValid() {
		st.Network.Ip = sb.ip.String()
	}
	if sb.namespaces != nil {
		st.Linux = &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: sb.namespaces}}
	}
	return &runtimeapi.PodSandboxStatusResponse{Status: st, Timestamp: r.now()}, nil
}

// ListPodSandbox lists the sandboxes matching the filter, oldest first.
// As in containerd, the ID filter matches ID prefixes.
func (r *Runtime) ListPodSandbox(_ context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	return &runtimeapi.ListPodSandboxResponse{Items: r.listSandboxes(req.GetFilter())}, nil
}

// StreamPodSandboxes sends the ListPodSandbox result in chunks.
func (r *Runtime) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxesResponse]) error {
	return sendChunks(r.listSandboxes(req.GetFilter()), func(items []*runtimeapi.PodSandbox) error {
		return stream.Send(&runtimeapi.StreamPodSandboxesResponse{PodSandboxes: items})
	})
}

func (r *Runtime) listSandboxes(f *runtimeapi.PodSandboxFilter) []*runtimeapi.PodSandbox {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*runtimeapi.PodSandbox
	for _, sb := range r.sandboxes {
		if !strings.HasPrefix(sb.id, f.GetId()) ||
			(f.GetState() != nil && f.GetState().GetState() != sb.state()) ||
			!matchLabels(f.GetLabelSelector(), sb.labels) {
			continue
		}
		out = append(out, &runtimeapi.PodSandbox{
			Id:             sb.id,
			Metadata:       sb.meta,
			State:          sb.state(),
			CreatedAt:      sb.createdAt,
			Labels:         sb.labels,
			Annotations:    sb.annotations,
			RuntimeHandler: sb.runtimeHandler,
		})
	}
	slices.SortFunc(out, func(a, b *runtimeapi.PodSandbox) int {
		return cmp.Or(cmp.Compare(a.CreatedAt, b.CreatedAt), strings.Compare(a.Id, b.Id))
	})
	return out
}

func (sb *sandbox) state() runtimeapi.PodSandboxState {
	if sb.ready {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

// findSandbox looks a sandbox up by ID or unique ID prefix, as containerd
// does. Callers hold r.mu.
func (r *Runtime) findSandbox(id string) (*sandbox, error) {
	return findByID(r.sandboxes, id, "sandbox")
}

// findByID finds the object whose ID is id or starts with it, as
// containerd does; kind words the errors ("container", "sandbox").
func findByID[T any](objs map[string]*T, id, kind string) (*T, error) {
	if o, ok := objs[id]; ok {
		return o, nil
	}
	var found *T
	if id != "" {
		for full, o := range objs {
			if strings.HasPrefix(full, id) {
				if found != nil {
					return nil, status.Errorf(codes.InvalidArgument, "%s ID prefix %q is ambiguous", kind, id)
				}
				found = o
			}
		}
	}
	if found == nil {
		return nil, status.Errorf(codes.NotFound, "an error occurred when try to find %s %q: not found", kind, id)
	}
	return found, nil
}

// setPodCIDR makes allocation start over in prefix. Callers hold r.mu or
// own r exclusively.
func (r *Runtime) setPodCIDR(prefix netip.Prefix) {
	r.podCIDR = prefix.Masked()
	r.nextIP = r.podCIDR.Addr().Next()
}

// allocateIP hands out the next free host address of the pod CIDR,
// skipping the network and last (broadcast) addresses, and wraps around
// so that freed addresses are reused. Callers hold r.mu.
func (r *Runtime) allocateIP() (netip.Addr, error) {
	usable := func(ip netip.Addr) bool {
		return r.podCIDR.Contains(ip) && r.podCIDR.Contains(ip.Next())
	}
	first := r.podCIDR.Addr().Next()
	start := r.nextIP
	if !usable(start) {
		start = first
	}
	// Bound the scan: a /64 never fills in a simulation, and anything
	// up to a /12 is scanned whole.
	for ip, i := start, 0; usable(first) && i < 1<<20; i++ {
		if _, used := r.usedIPs[ip]; !used {
			r.usedIPs[ip] = struct{}{}
			r.nextIP = ip.Next()
			return ip, nil
		}
		if ip = ip.Next(); !usable(ip) {
			ip = first
		}
		if ip == start {
			break
		}
	}
	return netip.Addr{}, status.Errorf(codes.ResourceExhausted, "no free IP in pod CIDR %s", r.podCIDR)
}

// sendChunks sends items in groups small enough for any gRPC message
// limit. Every message carries at least one item, as the streaming list
// calls require, so an empty result is just the end of the stream.
func sendChunks[T any](items []T, send func([]T) error) error {
	const chunk = 500
	for len(items) > chunk {
		if err := send(items[:chunk]); err != nil {
			return err
		}
		items = items[chunk:]
	}
	if len(items) == 0 {
		return nil
	}
	return send(items)
}
