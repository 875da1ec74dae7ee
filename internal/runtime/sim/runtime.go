// Package sim is a simulated container runtime for hollow nodes: a CRI v1
// server that keeps pods, containers and images as records in memory and
// runs nothing, so one process can host a thousand kubelets for scale
// tests. It follows containerd's CRI plugin where that is cheap (status
// codes, idempotency, naming, log format) so that a kubelet cannot tell
// the difference without looking at the host.
package sim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/clock"
)

const (
	// RuntimeName is what Version reports as the runtime's name.
	RuntimeName = "skiff-sim"
	// RuntimeVersion is what Version reports as the runtime's version.
	RuntimeVersion = "0.1.0"
	// apiVersion is the CRI version served.
	apiVersion = "v1"

	// pipeSize is the buffer of each direction of an in-process
	// connection. Larger gRPC frames simply take several writes, so it
	// trades a little latency for memory rather than limiting anything;
	// 16 KiB instead would add a fifth to an idle runtime's cost.
	pipeSize = 4 << 10
	// grpcBufferSize bounds gRPC's per-connection read and write buffers
	// (32 KiB each by default), which would otherwise dominate the
	// memory of an idle simulated runtime.
	grpcBufferSize = 4 << 10
)

// defaultPodCIDR matches containerd's default CNI range, used until the
// kubelet sends the node's pod CIDR through UpdateRuntimeConfig.
var defaultPodCIDR = netip.MustParsePrefix("10.88.0.0/16")

// Config tunes a simulated runtime.
type Config struct {
	// StartDelay is how long RunPodSandbox and StartContainer take, as a
	// real runtime's do while it sets up namespaces and starts processes.
	// The sandbox is READY and the container RUNNING when the call
	// returns; 0 answers at once.
	StartDelay time.Duration
	// Streaming serves Exec, Attach and PortForward; one server is shared
	// by many runtimes. Nil answers those calls with Unimplemented.
	Streaming *StreamServer
	// PodCIDR is where sandbox IPs come from until UpdateRuntimeConfig
	// sets another range; default 10.88.0.0/16.
	PodCIDR netip.Prefix
	// Clock times the start delay and stamps records; default real time.
	Clock clock.Clock
	// Logger receives per-object events at debug level; default
	// slog.Default().
	Logger *slog.Logger
}

// Runtime is one simulated container runtime serving the CRI runtime and
// image services. Its state lives in a few maps under one mutex: no
// goroutine or timer exists per pod or container, so an idle runtime
// costs only its records and its gRPC connections.
//
// Like containerd 1.6, it answers Unimplemented to RuntimeConfig,
// GetContainerEvents and the metrics calls, so a kubelet takes the same
// fallbacks against both; checkpoint and restore are Unimplemented too.
type Runtime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	startDelay time.Duration
	streaming  *StreamServer
	clock      clock.Clock
	log        *slog.Logger

	mu         sync.Mutex
	sandboxes  map[string]*sandbox
	containers map[string]*container
	images     map[string]*image
	imageRefs  map[string]string // canonical tag or digest reference → image ID
	// names holds reserved sandbox and container names, as containerd
	// does, so that a retried create of the same pod attempt fails
	// instead of making a twin.
	names   map[string]string
	podCIDR netip.Prefix
	nextIP  netip.Addr
	usedIPs map[netip.Addr]struct{}
}

var (
	_ runtimeapi.RuntimeServiceServer = (*Runtime)(nil)
	_ runtimeapi.ImageServiceServer   = (*Runtime)(nil)
)

// New returns an empty runtime; it serves nothing until Serve or Connect.
func New(cfg Config) *Runtime {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if !cfg.PodCIDR.IsValid() {
		cfg.PodCIDR = defaultPodCIDR
	}
	r := &Runtime{
		startDelay: cfg.StartDelay,
		streaming:  cfg.Streaming,
		clock:      cfg.Clock,
		log:        cfg.Logger,
		sandboxes:  make(map[string]*sandbox),
		containers: make(map[string]*container),
		images:     make(map[string]*image),
		imageRefs:  make(map[string]string),
		names:      make(map[string]string),
		usedIPs:    make(map[netip.Addr]struct{}),
	}
	r.setPodCIDR(cfg.PodCIDR)
	return r
}

// newServer returns a gRPC server with both CRI services registered.
func (r *Runtime) newServer() *grpc.Server {
	srv := grpc.NewServer(
		grpc.SharedWriteBuffer(true),
		grpc.WriteBufferSize(grpcBufferSize),
		grpc.ReadBufferSize(grpcBufferSize),
	)
	runtimeapi.RegisterRuntimeServiceServer(srv, r)
	runtimeapi.RegisterImageServiceServer(srv, r)
	return srv
}

// Serve answers CRI calls on lis until ctx ends, then stops the server,
// closing lis and cutting off calls in flight.
func (r *Runtime) Serve(ctx context.Context, lis net.Listener) error {
	srv := r.newServer()
	stop := context.AfterFunc(ctx, srv.Stop)
	defer stop()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve CRI on %s: %w", lis.Addr(), err)
	}
	return nil
}

// Connect returns a client connection to this runtime through an
// in-memory pipe, so a kubelet in the same process talks real gRPC
// without a socket. The connection and its server close when ctx ends.
func (r *Runtime) Connect(ctx context.Context) (*grpc.ClientConn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("connect to simulated runtime: %w", err)
	}
	lis := bufconn.Listen(pipeSize)
	conn, err := grpc.NewClient("passthrough:///"+RuntimeName,
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return lis.DialContext(ctx)
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithSharedWriteBuffer(true),
		grpc.WithWriteBufferSize(grpcBufferSize),
		grpc.WithReadBufferSize(grpcBufferSize),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to simulated runtime: %w", err)
	}
	srv := r.newServer()
	go func() {
		// Serve only fails once the listener is closed by Stop below.
		_ = srv.Serve(lis)
	}()
	context.AfterFunc(ctx, func() {
		_ = conn.Close()
		srv.Stop()
	})
	return conn, nil
}

// Version reports the simulator's name and version.
func (r *Runtime) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           "0.1.0",
		RuntimeName:       RuntimeName,
		RuntimeVersion:    RuntimeVersion,
		RuntimeApiVersion: apiVersion,
	}, nil
}

// Status reports the runtime and its network as always ready.
func (r *Runtime) Status(context.Context, *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	return &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
			{Type: runtimeapi.RuntimeReady, Status: true},
			{Type: runtimeapi.NetworkReady, Status: true},
		}},
		RuntimeHandlers: []*runtimeapi.RuntimeHandler{{Name: "", Features: &runtimeapi.RuntimeHandlerFeatures{}}},
	}, nil
}

// UpdateRuntimeConfig takes the node's pod CIDR for sandboxes created from
// now on. With a dual-stack list only the first range is used: the
// simulator gives each pod one IP.
func (r *Runtime) UpdateRuntimeConfig(_ context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	cidrs := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	if cidrs == "" {
		return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
	}
	first, _, _ := strings.Cut(cidrs, ",")
	prefix, err := netip.ParsePrefix(first)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "parse pod CIDR %q: %v", first, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if prefix.Masked() != r.podCIDR {
		r.setPodCIDR(prefix)
		r.log.Debug("pod CIDR updated", "podCIDR", r.podCIDR.String())
	}
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}

// wait blocks for the start delay, the simulated work of a start call.
func (r *Runtime) wait(ctx context.Context) error {
	if r.startDelay <= 0 {
		return nil
	}
	select {
	case <-r.clock.After(r.startDelay):
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// now is the current time in the unix nanoseconds CRI uses.
func (r *Runtime) now() int64 { return r.clock.Now().UnixNano() }

// newID returns a random 64-hex-digit ID like containerd's.
func newID() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:])
}

// reserveName claims name for id, failing as containerd does when another
// object holds it. Callers hold r.mu.
func (r *Runtime) reserveName(name, id string) error {
	if holder, ok := r.names[name]; ok {
		return status.Errorf(codes.AlreadyExists, "name %q is reserved for %q", name, holder)
	}
	r.names[name] = id
	return nil
}

// matchLabels reports whether labels carry every pair of selector.
func matchLabels(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
