package cri

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestSocketPath(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		endpoint string
		want     string
		wantErr  bool
	}{
		{name: "unix URL", endpoint: "unix:///run/containerd/containerd.sock", want: "/run/containerd/containerd.sock"},
		{name: "unix URL cleaned", endpoint: "unix:///run//x/../containerd.sock", want: "/run/containerd.sock"},
		{name: "bare absolute path", endpoint: "/var/run/crio/crio.sock", want: "/var/run/crio/crio.sock"},
		{name: "bare relative path", endpoint: "run/cri.sock", want: filepath.Join(wd, "run/cri.sock")},
		{name: "empty", endpoint: "", wantErr: true},
		{name: "tcp scheme", endpoint: "tcp://127.0.0.1:1234", wantErr: true},
		{name: "npipe scheme", endpoint: "npipe:////./pipe/containerd", wantErr: true},
		{name: "unix URL with host", endpoint: "unix://run/containerd.sock", wantErr: true},
		{name: "unix URL without path", endpoint: "unix://", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := socketPath(tt.endpoint)
			if (err != nil) != tt.wantErr {
				t.Fatalf("socketPath(%q) error = %v, wantErr %v", tt.endpoint, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("socketPath(%q) = %q, want %q", tt.endpoint, got, tt.want)
			}
		})
	}
}

// versionServer answers Version like a runtime named "fake" would.
type versionServer struct {
	runtimeapi.UnimplementedRuntimeServiceServer
}

func (versionServer) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: "fake", RuntimeVersion: "1.2.3", RuntimeApiVersion: "v1"}, nil
}

// serve starts a CRI Version server on sock and returns its stop function.
func serve(sock string) (stop func(), err error) {
	return serveWith(sock, true)
}

// serveWith starts a gRPC server on sock, with the RuntimeService only if
// withCRI.
func serveWith(sock string, withCRI bool) (stop func(), err error) {
	l, err := net.Listen("unix", sock)
	if err != nil {
		return nil, err
	}
	srv := grpc.NewServer()
	if withCRI {
		runtimeapi.RegisterRuntimeServiceServer(srv, versionServer{})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	return func() {
		srv.Stop()
		<-done
	}, nil
}

// When the fake runtime starts, relative to Dial.
const (
	never = iota
	beforeDial
	whileDialing
	// notCRI serves gRPC without the RuntimeService.
	notCRI
)

func TestDial(t *testing.T) {
	tests := []struct {
		name        string
		start       int
		endpoint    func(sock string) string
		timeout     time.Duration
		wantErr     bool
		wantVersion string
	}{
		{
			name:     "no runtime: gives up when ctx ends",
			start:    never,
			endpoint: func(sock string) string { return "unix://" + sock },
			timeout:  300 * time.Millisecond,
			wantErr:  true,
		},
		{
			// Fails fast: the timeout is far beyond the test's deadline check.
			name:     "server without CRI: fails at once",
			start:    notCRI,
			endpoint: func(sock string) string { return "unix://" + sock },
			timeout:  time.Minute,
			wantErr:  true,
		},
		{
			name:        "runtime already up",
			start:       beforeDial,
			endpoint:    func(sock string) string { return "unix://" + sock },
			timeout:     10 * time.Second,
			wantVersion: "fake://1.2.3",
		},
		{
			name:        "runtime starts while dialing, bare path",
			start:       whileDialing,
			endpoint:    func(sock string) string { return sock },
			timeout:     10 * time.Second,
			wantVersion: "fake://1.2.3",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "cri.sock")
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()

			type started struct {
				stop func()
				err  error
			}
			server := make(chan started, 1)
			switch tt.start {
			case beforeDial, notCRI:
				stop, err := serveWith(sock, tt.start == beforeDial)
				server <- started{stop, err}
			case whileDialing:
				// A listener that hangs up on its first caller stands in for
				// a runtime not yet serving; the real server replaces it
				// only after Dial's first attempt failed, so what connects
				// is the retry.
				l, err := net.Listen("unix", sock)
				if err != nil {
					t.Fatal(err)
				}
				go func() {
					conn, err := l.Accept()
					if err == nil {
						_ = conn.Close()
					}
					_ = l.Close()
					stop, err := serve(sock)
					server <- started{stop, err}
				}()
			}

			begin := time.Now()
			c, err := Dial(ctx, tt.endpoint(sock))
			if elapsed := time.Since(begin); elapsed > 10*time.Second {
				t.Errorf("Dial took %s", elapsed)
			}
			if tt.start != never {
				s := <-server
				if s.err != nil {
					t.Fatalf("start fake runtime: %v", s.err)
				}
				t.Cleanup(s.stop)
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("Dial error = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				switch tt.start {
				case never:
					if !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("Dial error = %v, want it to wrap context.DeadlineExceeded", err)
					}
				case notCRI:
					if status.Code(err) != codes.Unimplemented {
						t.Errorf("Dial error = %v, want code Unimplemented", err)
					}
				}
				return
			}
			t.Cleanup(func() { _ = c.Close() })
			if got := c.RuntimeVersion(); got != tt.wantVersion {
				t.Errorf("RuntimeVersion() = %q, want %q", got, tt.wantVersion)
			}
		})
	}
}

func TestNewClientBeforeInit(t *testing.T) {
	conn, err := grpc.NewClient("passthrough:///unused", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(conn)
	if got := c.RuntimeVersion(); got != "" {
		t.Errorf("RuntimeVersion() before Init = %q, want empty", got)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// deadlineServer reports, for each call, the deadline its context had.
type deadlineServer struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer
	seen chan time.Duration // remaining time; -1 without a deadline
}

func (s deadlineServer) report(ctx context.Context) {
	d := time.Duration(-1)
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
	}
	s.seen <- d
}

func (s deadlineServer) ListContainers(ctx context.Context, _ *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	s.report(ctx)
	return &runtimeapi.ListContainersResponse{}, nil
}

func (s deadlineServer) PullImage(ctx context.Context, _ *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	s.report(ctx)
	return &runtimeapi.PullImageResponse{}, nil
}

// TestCallTimeout: calls without a deadline get the default one, except
// image pulls; a caller's own deadline is left alone.
func TestCallTimeout(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "cri.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	fake := deadlineServer{seen: make(chan time.Duration, 1)}
	runtimeapi.RegisterRuntimeServiceServer(srv, fake)
	runtimeapi.RegisterImageServiceServer(srv, fake)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)

	const bound = time.Hour
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(callTimeout(bound, runtimeapi.ImageService_PullImage_FullMethodName)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := NewClient(conn)

	tests := []struct {
		name     string
		callerDL time.Duration // 0: none
		call     func(ctx context.Context) error
		// want is the range of the deadline the runtime saw; -1: none.
		wantMin, wantMax time.Duration
	}{
		{name: "no deadline gets the bound", call: func(ctx context.Context) error {
			_, err := c.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
			return err
		}, wantMin: bound - time.Minute, wantMax: bound},
		{name: "the caller's deadline is kept", callerDL: 2 * bound, call: func(ctx context.Context) error {
			_, err := c.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
			return err
		}, wantMin: 2*bound - time.Minute, wantMax: 2 * bound},
		{name: "image pulls are not bounded", call: func(ctx context.Context) error {
			_, err := c.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "x"}})
			return err
		}, wantMin: -1, wantMax: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.callerDL > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.callerDL)
				defer cancel()
			}
			if err := tt.call(ctx); err != nil {
				t.Fatal(err)
			}
			if got := <-fake.seen; got < tt.wantMin || got > tt.wantMax {
				t.Errorf("runtime saw a deadline %v away, want %v to %v (-1: none)", got, tt.wantMin, tt.wantMax)
			}
		})
	}
}
