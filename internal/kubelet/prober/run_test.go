package prober

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"
)

// closedPort returns a local port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

func portOf(t *testing.T, rawURL string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(rawURL, "http://"), "https://"))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func TestRunHTTP(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	otherHost := fmt.Sprintf("http://127.0.0.2:%d/elsewhere", closedPort(t))
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "fine")
	})
	mux.HandleFunc("/status/", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/"))
		w.WriteHeader(code)
	})
	mux.HandleFunc("/same-host", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/status/500", http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	mux.HandleFunc("/other-host", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, otherHost, http.StatusFound)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strings.Repeat("x", 3*maxOutput))
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	tlsSrv := httptest.NewUnstartedServer(mux)
	// The plain-HTTP case makes the server log a handshake error.
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	port := portOf(t, srv.URL)
	tlsPort := portOf(t, tlsSrv.URL)

	container := &corev1.Container{Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}
	get := func(path string, port intstr.IntOrString) *corev1.HTTPGetAction {
		return &corev1.HTTPGetAction{Path: path, Port: port}
	}
	tests := []struct {
		name       string
		action     *corev1.HTTPGetAction
		podIP      string
		want       Result
		wantOutput string
		wantErr    string
		check      func(t *testing.T, out string)
	}{
		{name: "200 by port number", action: get("/ok", intstr.FromInt32(int32(port))), want: Success, wantOutput: "fine"},
		{name: "named port", action: get("/ok", intstr.FromString("http")), want: Success},
		{name: "number written as string", action: get("/ok", intstr.FromString(strconv.Itoa(port))), want: Success},
		{name: "path without slash", action: get("ok", intstr.FromInt32(int32(port))), want: Success},
		{name: "204", action: get("/status/204", intstr.FromInt32(int32(port))), want: Success},
		{name: "399 counts as success", action: get("/status/399", intstr.FromInt32(int32(port))), want: Success},
		{name: "400", action: get("/status/400", intstr.FromInt32(int32(port))), want: Failure, wantOutput: "HTTP probe failed with statuscode: 400"},
		{name: "503", action: get("/status/503", intstr.FromInt32(int32(port))), want: Failure, wantOutput: "HTTP probe failed with statuscode: 503"},
		{name: "same-host redirect is followed", action: get("/same-host", intstr.FromInt32(int32(port))), want: Failure, wantOutput: "HTTP probe failed with statuscode: 500"},
		{name: "redirect loop fails", action: get("/loop", intstr.FromInt32(int32(port))), want: Failure, wantOutput: "stopped after 10 redirects"},
		{name: "other-host redirect succeeds unfollowed", action: get("/other-host", intstr.FromInt32(int32(port))), want: Success, wantOutput: "Probe terminated redirects"},
		{
			name: "body truncated", action: get("/big", intstr.FromInt32(int32(port))), want: Success,
			check: func(t *testing.T, out string) {
				if len(out) != maxOutput {
					t.Errorf("output length %d, want %d", len(out), maxOutput)
				}
			},
		},
		{name: "timeout fails", action: get("/hang", intstr.FromInt32(int32(port))), want: Failure, wantOutput: "Client.Timeout exceeded"},
		{name: "connection refused fails", action: get("/ok", intstr.FromInt(closedPort(t))), want: Failure, wantOutput: "connection refused"},
		{name: "HTTPS skips verification", action: &corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromInt(tlsPort), Scheme: corev1.URISchemeHTTPS}, want: Success, wantOutput: "fine"},
		{name: "HTTP to an HTTPS server fails", action: get("/ok", intstr.FromInt(tlsPort)), want: Failure, wantOutput: "statuscode: 400"},
		{name: "host field wins over pod IP", action: &corev1.HTTPGetAction{Host: "127.0.0.1", Path: "/ok", Port: intstr.FromInt(port)}, podIP: "192.0.2.1", want: Success},
		{name: "unknown named port", action: get("/ok", intstr.FromString("nope")), wantErr: `couldn't find port "nope"`},
		{name: "port out of range", action: get("/ok", intstr.FromInt(70000)), wantErr: "invalid port number: 70000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			podIP := tt.podIP
			if podIP == "" {
				podIP = "127.0.0.1"
			}
			res, out, err := Run(context.Background(), &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: tt.action}},
				Target{PodIP: podIP, Container: container}, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || res != Unknown {
					t.Fatalf("Run = %v, %v; want Unknown and an error containing %q", res, err, tt.wantErr)
				}
				return
			}
			if err != nil || res != tt.want {
				t.Fatalf("Run = %v, %q, %v; want %v", res, out, err, tt.want)
			}
			if !strings.Contains(out, tt.wantOutput) {
				t.Errorf("output %q, want it to contain %q", out, tt.wantOutput)
			}
			if tt.check != nil {
				tt.check(t, out)
			}
		})
	}
}

func TestRunHTTPHeaders(t *testing.T) {
	got := make(chan *http.Request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r }))
	t.Cleanup(srv.Close)
	port := portOf(t, srv.URL)

	tests := []struct {
		name    string
		headers []corev1.HTTPHeader
		check   func(t *testing.T, r *http.Request)
	}{
		{
			name: "defaults",
			check: func(t *testing.T, r *http.Request) {
				if ua := r.Header.Get("User-Agent"); ua != "kube-probe/1.37" {
					t.Errorf("User-Agent %q", ua)
				}
				if a := r.Header.Get("Accept"); a != "*/*" {
					t.Errorf("Accept %q", a)
				}
				if r.Host != fmt.Sprintf("127.0.0.1:%d", port) {
					t.Errorf("Host %q", r.Host)
				}
				if r.URL.RawQuery != "q=1" {
					t.Errorf("query %q", r.URL.RawQuery)
				}
			},
		},
		{
			name: "overrides and extras",
			headers: []corev1.HTTPHeader{
				{Name: "host", Value: "example.com"},
				{Name: "User-Agent", Value: "mine"},
				{Name: "X-Custom", Value: "a"},
				{Name: "X-Custom", Value: "b"},
			},
			check: func(t *testing.T, r *http.Request) {
				if r.Host != "example.com" {
					t.Errorf("Host %q, want example.com", r.Host)
				}
				if ua := r.Header.Get("User-Agent"); ua != "mine" {
					t.Errorf("User-Agent %q", ua)
				}
				if v := r.Header.Values("X-Custom"); len(v) != 2 || v[0] != "a" || v[1] != "b" {
					t.Errorf("X-Custom %q", v)
				}
			},
		},
		{
			name:    "empty Accept removes it",
			headers: []corev1.HTTPHeader{{Name: "Accept", Value: ""}},
			check: func(t *testing.T, r *http.Request) {
				if _, ok := r.Header["Accept"]; ok {
					t.Errorf("Accept sent: %q", r.Header.Get("Accept"))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/x?q=1", Port: intstr.FromInt(port), HTTPHeaders: tt.headers}}}
			if res, out, err := Run(context.Background(), p, Target{PodIP: "127.0.0.1"}, nil); res != Success || err != nil {
				t.Fatalf("Run = %v, %q, %v", res, out, err)
			}
			tt.check(t, <-got)
		})
	}
}

func TestRunTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	container := &corev1.Container{Ports: []corev1.ContainerPort{{Name: "db", ContainerPort: int32(port)}}}
	tests := []struct {
		name    string
		action  corev1.TCPSocketAction
		podIP   string
		want    Result
		wantErr string
	}{
		{name: "open port", action: corev1.TCPSocketAction{Port: intstr.FromInt(port)}, want: Success},
		{name: "named port", action: corev1.TCPSocketAction{Port: intstr.FromString("db")}, want: Success},
		{name: "host field wins", action: corev1.TCPSocketAction{Host: "127.0.0.1", Port: intstr.FromInt(port)}, podIP: "192.0.2.1", want: Success},
		{name: "closed port", action: corev1.TCPSocketAction{Port: intstr.FromInt(closedPort(t))}, want: Failure},
		{name: "unknown named port", action: corev1.TCPSocketAction{Port: intstr.FromString("web")}, wantErr: `couldn't find port "web"`},
		{name: "zero port", action: corev1.TCPSocketAction{Port: intstr.FromInt(0)}, wantErr: "invalid port number: 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			podIP := tt.podIP
			if podIP == "" {
				podIP = "127.0.0.1"
			}
			action := tt.action
			res, out, err := Run(context.Background(), &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &action}},
				Target{PodIP: podIP, Container: container}, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Run = %v, %v; want error %q", res, err, tt.wantErr)
				}
				return
			}
			if err != nil || res != tt.want {
				t.Fatalf("Run = %v, %q, %v; want %v", res, out, err, tt.want)
			}
		})
	}
}

func TestRunGRPC(t *testing.T) {
	serve := func(t *testing.T, withHealth bool, agents chan<- string) int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("user-agent")) > 0 {
				select {
				case agents <- md.Get("user-agent")[0]:
				default:
				}
			}
			return h(ctx, req)
		}))
		if withHealth {
			hs := health.NewServer()
			hs.SetServingStatus("up", healthpb.HealthCheckResponse_SERVING)
			hs.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)
			healthpb.RegisterHealthServer(s, hs)
		}
		go func() { _ = s.Serve(l) }()
		t.Cleanup(s.Stop)
		return l.Addr().(*net.TCPAddr).Port
	}
	agents := make(chan string, 100)
	healthy := serve(t, true, agents)
	bare := serve(t, false, agents)

	tests := []struct {
		name       string
		port       int
		service    *string
		want       Result
		wantOutput string
		wantErr    string
	}{
		{name: "overall health", port: healthy, want: Success},
		{name: "serving service", port: healthy, service: ptr.To("up"), want: Success},
		{name: "not serving service", port: healthy, service: ptr.To("down"), want: Failure, wantOutput: `service unhealthy (responded with "NOT_SERVING")`},
		{name: "unknown service", port: healthy, service: ptr.To("nope"), want: Failure, wantOutput: "NotFound"},
		{name: "no health service", port: bare, want: Failure, wantOutput: "does not implement the grpc health protocol"},
		{name: "nothing listening", port: closedPort(t), want: Failure, wantOutput: "health rpc probe failed"},
		{name: "bad port", port: 0, wantErr: "invalid port number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: int32(tt.port), Service: tt.service}}}
			res, out, err := Run(context.Background(), p, Target{PodIP: "127.0.0.1"}, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Run = %v, %v; want error %q", res, err, tt.wantErr)
				}
				return
			}
			if err != nil || res != tt.want || !strings.Contains(out, tt.wantOutput) {
				t.Fatalf("Run = %v, %q, %v; want %v with output containing %q", res, out, err, tt.want, tt.wantOutput)
			}
		})
	}
	if ua := <-agents; !strings.HasPrefix(ua, "kube-probe/1.37") {
		t.Errorf("user-agent %q, want kube-probe/1.37 first", ua)
	}
}

// fakeRuntime implements only ExecSync, answering from exec.
type fakeRuntime struct {
	runtimeapi.RuntimeServiceClient
	exec func(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error)
}

func (f *fakeRuntime) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest, _ ...grpc.CallOption) (*runtimeapi.ExecSyncResponse, error) {
	return f.exec(ctx, req)
}

func TestRunExec(t *testing.T) {
	var got *runtimeapi.ExecSyncRequest
	rt := &fakeRuntime{exec: func(_ context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
		got = req
		switch req.Cmd[0] {
		case "ok":
			return &runtimeapi.ExecSyncResponse{Stdout: []byte("out "), Stderr: []byte("err")}, nil
		case "fail":
			return &runtimeapi.ExecSyncResponse{Stdout: []byte("bad"), ExitCode: 2}, nil
		case "big":
			return &runtimeapi.ExecSyncResponse{Stdout: []byte(strings.Repeat("y", 2*maxOutput))}, nil
		case "hang":
			return nil, status.Error(codes.DeadlineExceeded, "timeout 3s exceeded: context deadline exceeded")
		}
		return nil, status.Error(codes.NotFound, "container not found")
	}}
	container := &corev1.Container{Env: []corev1.EnvVar{
		{Name: "FILE", Value: "/tmp/healthy"},
		{Name: "FROM_REF", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
	}}
	tests := []struct {
		name        string
		cmd         []string
		timeout     int32
		noRuntime   bool
		want        Result
		wantOutput  string
		wantErr     string
		wantCmd     []string
		wantTimeout int64
	}{
		{name: "exit 0", cmd: []string{"ok", "cat", "$(FILE)", "$(FROM_REF)", "$$(FILE)", "$(UNSET)"}, want: Success, wantOutput: "out err",
			wantCmd: []string{"ok", "cat", "/tmp/healthy", "", "$(FILE)", "$(UNSET)"}, wantTimeout: 1},
		{name: "nonzero exit", cmd: []string{"fail"}, timeout: 3, want: Failure, wantOutput: "bad", wantTimeout: 3},
		{name: "output truncated", cmd: []string{"big"}, want: Success, wantOutput: strings.Repeat("y", maxOutput)},
		{name: "timeout is a failure", cmd: []string{"hang"}, timeout: 3, want: Failure, wantOutput: "timed out after 3s"},
		{name: "runtime error is no verdict", cmd: []string{"gone"}, wantErr: "container not found"},
		{name: "no runtime", cmd: []string{"ok"}, noRuntime: true, wantErr: "no container runtime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got = nil
			var runtime runtimeapi.RuntimeServiceClient = rt
			if tt.noRuntime {
				runtime = nil
			}
			p := &corev1.Probe{TimeoutSeconds: tt.timeout, ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: tt.cmd}}}
			res, out, err := Run(context.Background(), p, Target{ContainerID: "containerd://abc123", Container: container}, runtime)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || res != Unknown {
					t.Fatalf("Run = %v, %v; want Unknown and error %q", res, err, tt.wantErr)
				}
				return
			}
			if err != nil || res != tt.want || (tt.wantOutput != "" && out != tt.wantOutput && !strings.Contains(out, tt.wantOutput)) {
				t.Fatalf("Run = %v, %q, %v; want %v with output %q", res, out, err, tt.want, tt.wantOutput)
			}
			if got.ContainerId != "abc123" {
				t.Errorf("container ID %q, want the bare CRI ID", got.ContainerId)
			}
			if tt.wantCmd != nil && strings.Join(got.Cmd, "|") != strings.Join(tt.wantCmd, "|") {
				t.Errorf("cmd %q, want %q", got.Cmd, tt.wantCmd)
			}
			if tt.wantTimeout != 0 && got.Timeout != tt.wantTimeout {
				t.Errorf("timeout %d, want %d", got.Timeout, tt.wantTimeout)
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		p    *corev1.Probe
		want error
	}{
		{name: "no handler", ctx: context.Background(), p: &corev1.Probe{}},
		{name: "caller gave up", ctx: cancelled, want: context.Canceled,
			p: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt(portOf(t, srv.URL))}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, _, err := Run(tt.ctx, tt.p, Target{PodIP: "127.0.0.1"}, nil)
			if err == nil || res != Unknown || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("Run = %v, %v; want Unknown and an error (%v)", res, err, tt.want)
			}
		})
	}
}
