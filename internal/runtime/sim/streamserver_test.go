package sim

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// startStreaming serves a StreamServer on loopback until the test ends,
// and checks then that Serve returns cleanly.
func startStreaming(t *testing.T) *StreamServer {
	t.Helper()
	s := NewStreamServer(slog.New(slog.DiscardHandler))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("stream server Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("stream server did not stop")
		}
	})
	select {
	case <-s.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("stream server not ready")
	}
	return s
}

// spdyExecutor connects to a streaming URL speaking only protocols.
func spdyExecutor(t *testing.T, rawURL string, protocols ...string) remotecommand.Executor {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("parse URL %q: %v", rawURL, err)
	}
	cfg := &rest.Config{Host: u.Scheme + "://" + u.Host}
	if len(protocols) == 0 {
		exec, err := remotecommand.NewSPDYExecutor(cfg, http.MethodPost, u)
		if err != nil {
			t.Fatalf("NewSPDYExecutor: %v", err)
		}
		return exec
	}
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		t.Fatalf("RoundTripperFor: %v", err)
	}
	exec, err := remotecommand.NewSPDYExecutorForProtocols(transport, upgrader, http.MethodPost, u, protocols...)
	if err != nil {
		t.Fatalf("NewSPDYExecutorForProtocols: %v", err)
	}
	return exec
}

func TestExec(t *testing.T) {
	streaming := startStreaming(t)
	_, c := start(t, Config{Streaming: streaming})
	_, ctrID := runPod(t, c, "web", nil, nil)
	tests := []struct {
		name      string
		protocols []string // nil: client-go's default list, v5 first
		stdin     bool
		tty       bool
		want      string
	}{
		{name: "default protocols", want: "simulated exec: ls -l /\n"},
		{name: "v4 with stdin", protocols: []string{protocolV4}, stdin: true, want: "simulated exec: ls -l /\n"},
		{name: "v4 tty", protocols: []string{protocolV4}, tty: true, want: "simulated exec: ls -l /\r\n"},
		{name: "v3 tty", protocols: []string{protocolV3}, tty: true, want: "simulated exec: ls -l /\r\n"},
		{name: "v2", protocols: []string{protocolV2}, stdin: true, want: "simulated exec: ls -l /\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.rt.Exec(t.Context(), &runtimeapi.ExecRequest{
				ContainerId: ctrID, Cmd: []string{"ls", "-l", "/"},
				Stdin: tt.stdin, Stdout: true, Stderr: !tt.tty, Tty: tt.tty,
			})
			if err != nil {
				t.Fatalf("Exec: %v", err)
			}
			if !strings.HasPrefix(resp.Url, "http://127.0.0.1:") || !strings.Contains(resp.Url, "/exec/") {
				t.Fatalf("Exec URL = %q", resp.Url)
			}
			var stdout, stderr bytes.Buffer
			opts := remotecommand.StreamOptions{Stdout: &stdout, Tty: tt.tty}
			if !tt.tty {
				opts.Stderr = &stderr
			}
			// More input than any buffer holds: the process must read it all.
			input := &countingReader{r: bytes.NewReader(bytes.Repeat([]byte("input\n"), 1<<20))}
			if tt.stdin {
				opts.Stdin = input
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			if err := spdyExecutor(t, resp.Url, tt.protocols...).StreamWithContext(ctx, opts); err != nil {
				t.Fatalf("stream: %v", err)
			}
			if stdout.String() != tt.want || stderr.Len() != 0 {
				t.Errorf("stdout %q stderr %q, want stdout %q", stdout.String(), stderr.String(), tt.want)
			}
			if n := input.n.Load(); tt.stdin && !tt.tty && n != 6<<20 {
				t.Errorf("the process read %d bytes of stdin, want all %d", n, 6<<20)
			}

			// URLs are single-use.
			err = spdyExecutor(t, resp.Url).StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: io.Discard})
			if err == nil {
				t.Error("second use of an exec URL succeeded")
			}
		})
	}
}

// countingReader counts what has been read from r, safely for another
// goroutine to look at.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func TestAttach(t *testing.T) {
	streaming := startStreaming(t)
	_, c := start(t, Config{Streaming: streaming})
	_, ctrID := runPod(t, c, "web", nil, nil)
	resp, err := c.rt.Attach(t.Context(), &runtimeapi.AttachRequest{ContainerId: ctrID, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	var stdout bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := spdyExecutor(t, resp.Url).StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: io.Discard}); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if want := "simulated container app started\n"; stdout.String() != want {
		t.Errorf("attach output %q, want %q", stdout.String(), want)
	}
}

func TestPortForward(t *testing.T) {
	streaming := startStreaming(t)
	_, c := start(t, Config{Streaming: streaming})
	sbID, _ := runPod(t, c, "web", nil, nil)
	resp, err := c.rt.PortForward(t.Context(), &runtimeapi.PortForwardRequest{PodSandboxId: sbID, Port: []int32{8080}})
	if err != nil {
		t.Fatalf("PortForward: %v", err)
	}
	u, err := url.Parse(resp.Url)
	if err != nil {
		t.Fatal(err)
	}
	transport, upgrader, err := spdy.RoundTripperFor(&rest.Config{Host: u.Scheme + "://" + u.Host})
	if err != nil {
		t.Fatal(err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	stop, ready := make(chan struct{}), make(chan struct{})
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:8080"}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("portforward.New: %v", err)
	}
	forwarded := make(chan error, 1)
	go func() { forwarded <- pf.ForwardPorts() }()
	defer func() {
		close(stop)
		if err := <-forwarded; err != nil {
			t.Errorf("ForwardPorts: %v", err)
		}
	}()
	select {
	case <-ready:
	case err := <-forwarded:
		t.Fatalf("ForwardPorts ended early: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("port forward not ready")
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		t.Fatalf("GetPorts = %v, %v", ports, err)
	}

	// Two connections in turn, each a separate pair of streams.
	for _, msg := range []string{"hello, hollow pod", "again"} {
		conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local))))
		if err != nil {
			t.Fatalf("dial forwarded port: %v", err)
		}
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(conn, msg); err != nil {
			t.Fatalf("write: %v", err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, got); err != nil {
			t.Fatalf("read echo: %v", err)
		}
		if string(got) != msg {
			t.Errorf("echo = %q, want %q", got, msg)
		}
		_ = conn.Close()
	}
}

func TestStreamingErrors(t *testing.T) {
	streaming := startStreaming(t)
	_, c := start(t, Config{Streaming: streaming})
	_, noStreams := start(t, Config{})
	sbID, ctrID := runPod(t, c, "web", nil, nil)
	stoppedSb, stoppedCtr := runPod(t, c, "stopped", nil, nil)
	if _, err := c.rt.StopPodSandbox(t.Context(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: stoppedSb}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func(ctx context.Context) error
		want codes.Code
	}{
		{"exec without a stream server", func(ctx context.Context) error {
			_, err := noStreams.rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: ctrID, Cmd: []string{"sh"}, Stdout: true})
			return err
		}, codes.Unimplemented},
		{"port forward without a stream server", func(ctx context.Context) error {
			_, err := noStreams.rt.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: sbID})
			return err
		}, codes.Unimplemented},
		{"exec with no streams", func(ctx context.Context) error {
			_, err := c.rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: ctrID, Cmd: []string{"sh"}})
			return err
		}, codes.InvalidArgument},
		{"exec with tty and stderr", func(ctx context.Context) error {
			_, err := c.rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: ctrID, Cmd: []string{"sh"}, Stdout: true, Stderr: true, Tty: true})
			return err
		}, codes.InvalidArgument},
		{"exec without a command", func(ctx context.Context) error {
			_, err := c.rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: ctrID, Stdout: true})
			return err
		}, codes.InvalidArgument},
		{"exec in a stopped container", func(ctx context.Context) error {
			_, err := c.rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: stoppedCtr, Cmd: []string{"sh"}, Stdout: true})
			return err
		}, codes.FailedPrecondition},
		{"attach to an unknown container", func(ctx context.Context) error {
			_, err := c.rt.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: "feed", Stdout: true})
			return err
		}, codes.NotFound},
		{"port forward to a stopped sandbox", func(ctx context.Context) error {
			_, err := c.rt.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: stoppedSb})
			return err
		}, codes.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, tt.name, tt.call(t.Context()), tt.want)
		})
	}
}

func TestStreamServerStops(t *testing.T) {
	s := NewStreamServer(slog.New(slog.DiscardHandler))
	_, c := start(t, Config{Streaming: s})
	_, ctrID := runPod(t, c, "web", nil, nil)
	exec := func() error {
		_, err := c.rt.Exec(t.Context(), &runtimeapi.ExecRequest{ContainerId: ctrID, Cmd: []string{"sh"}, Stdout: true})
		return err
	}
	wantCode(t, "Exec before the stream server serves", exec(), codes.Unavailable)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	<-s.Ready()
	wantCode(t, "Exec while serving", exec(), codes.OK)
	if err := s.Serve(ctx, ln); err == nil {
		t.Error("second Serve succeeded")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	wantCode(t, "Exec after the stream server stopped", exec(), codes.Unavailable)
	if conn, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		_ = conn.Close()
		t.Error("the listener still accepts after Serve returned")
	}
}
