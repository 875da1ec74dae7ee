// Package cri is the node agent's only way to a container runtime: a thin
// client for the Container Runtime Interface (k8s.io/cri-api v1) over gRPC.
//
// It exposes the generated RuntimeService and ImageService clients as they
// are rather than wrapping every call, so the kubelet speaks CRI directly
// and a fake or in-process runtime can sit behind the same *grpc.ClientConn.
// What it adds is what every caller would otherwise repeat: endpoint
// parsing, message size limits, fast reconnects, a default bound on every
// call, and waiting for a runtime that is still starting.
package cri

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// MaxMsgSize bounds gRPC messages both ways. ListContainers and
// ListImages on a busy node exceed gRPC's 4 MiB default; 16 MiB is what
// upstream's kubelet allows too.
const MaxMsgSize = 16 << 20

// APIVersion is the CRI version this client speaks, sent in Version requests.
const APIVersion = "v1"

// DefaultCallTimeout bounds a CRI call whose context has no deadline of
// its own, as upstream's --runtime-request-timeout (2 min) does: a hung
// runtime then fails the caller (a pod worker, the relist) instead of
// stalling it for good, and the next sync tries again. PullImage is
// exempt: a large image over a slow link may take longer.
const DefaultCallTimeout = 2 * time.Minute

// callTimeout returns an interceptor that gives calls without a deadline
// one of d, except the methods in exempt (full method names).
func callTimeout(d time.Duration, exempt ...string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok && !slices.Contains(exempt, method) {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// Client holds a connection to one CRI runtime.
type Client struct {
	// Runtime manages pod sandboxes and containers.
	Runtime runtimeapi.RuntimeServiceClient
	// Images pulls, lists and removes images.
	Images runtimeapi.ImageServiceClient

	conn *grpc.ClientConn

	mu      sync.Mutex
	version *runtimeapi.VersionResponse
}

// Dial connects to the runtime listening on endpoint, "unix:///path/sock"
// or a bare socket path, and waits until it answers Version. The wait
// retries with backoff until ctx ends, so the agent can dial a runtime it
// has just started; ctx bounds only that wait, not the connection's life.
func Dial(ctx context.Context, endpoint string) (*Client, error) {
	sock, err := socketPath(endpoint)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient("unix://"+sock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(MaxMsgSize),
			grpc.MaxCallSendMsgSize(MaxMsgSize),
		),
		grpc.WithUnaryInterceptor(callTimeout(DefaultCallTimeout, runtimeapi.ImageService_PullImage_FullMethodName)),
		// gRPC's default reconnect backoff grows to two minutes, so a
		// runtime that comes up (or restarts) late would stay unreachable
		// long after its socket appears. A local socket is cheap to retry.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  50 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   time.Second,
			},
			MinConnectTimeout: 5 * time.Second,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to CRI runtime %s: %w", endpoint, err)
	}
	c := NewClient(conn)
	if err := c.Init(ctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("CRI runtime %s: %w", endpoint, err)
	}
	return c, nil
}

// NewClient wraps an existing connection, typically to an in-process
// runtime. It does not talk to the runtime: call Init before
// RuntimeVersion means anything.
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{
		Runtime: runtimeapi.NewRuntimeServiceClient(conn),
		Images:  runtimeapi.NewImageServiceClient(conn),
		conn:    conn,
	}
}

// Init asks the runtime for its Version, retrying with backoff until it
// answers or ctx ends, and keeps the answer for RuntimeVersion. It fails
// at once if the server answers that it doesn't implement CRI v1. Dial
// calls it; callers of NewClient call it themselves.
func (c *Client) Init(ctx context.Context) error {
	const (
		firstDelay = 20 * time.Millisecond
		maxDelay   = 500 * time.Millisecond
		// A runtime that accepted the connection answers Version at once;
		// the per-attempt bound only stops one hung call eating the wait.
		attemptTimeout = 5 * time.Second
	)
	delay := firstDelay
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		v, err := c.Runtime.Version(actx, &runtimeapi.VersionRequest{Version: APIVersion})
		cancel()
		if err == nil {
			c.mu.Lock()
			c.version = v
			c.mu.Unlock()
			return nil
		}
		if status.Code(err) == codes.Unimplemented {
			// Something serves the socket but not CRI v1 (an old runtime,
			// or containerd without its CRI plugin): waiting won't help,
			// because services are registered before a server listens.
			return fmt.Errorf("runtime does not serve CRI v1: %w", err)
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("no Version answer before %w: last error: %w", context.Cause(ctx), err)
		case <-timer.C:
		}
		delay = min(2*delay, maxDelay)
	}
}

// Version returns the runtime's Version answer kept by Init, or nil
// before Init succeeded.
func (c *Client) Version() *runtimeapi.VersionResponse {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

// RuntimeVersion is "<runtime name>://<runtime version>", e.g.
// "containerd://1.6.20", the form a Node's
// status.nodeInfo.containerRuntimeVersion takes. It is empty before Init
// succeeded.
func (c *Client) RuntimeVersion() string {
	v := c.Version()
	if v == nil {
		return ""
	}
	return v.RuntimeName + "://" + v.RuntimeVersion
}

// Close closes the connection, including one handed to NewClient.
func (c *Client) Close() error {
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("close CRI connection: %w", err)
	}
	return nil
}

// socketPath turns a CRI endpoint into an absolute socket path. Only unix
// sockets are supported: that is all a Linux node uses, and rejecting the
// rest early beats a confusing dial error later.
func socketPath(endpoint string) (string, error) {
	if endpoint == "" {
		return "", errors.New("empty CRI endpoint")
	}
	if !strings.Contains(endpoint, "://") {
		// A bare path, relative ones resolved now so that a later chdir
		// cannot change which runtime we reach.
		p, err := filepath.Abs(endpoint)
		if err != nil {
			return "", fmt.Errorf("CRI endpoint %q: %w", endpoint, err)
		}
		return p, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", fmt.Errorf("CRI endpoint %q: %w", endpoint, err)
	}
	if u.Scheme != "unix" {
		return "", fmt.Errorf("CRI endpoint %q: unsupported scheme %q (only unix)", endpoint, u.Scheme)
	}
	// "unix://run/x.sock" would parse as host "run"; demanding an empty
	// host and an absolute path keeps the meaning unambiguous.
	if u.Host != "" || !filepath.IsAbs(u.Path) {
		return "", fmt.Errorf("CRI endpoint %q: want unix:///absolute/path", endpoint)
	}
	return filepath.Clean(u.Path), nil
}
