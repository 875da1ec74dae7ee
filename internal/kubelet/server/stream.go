package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/streaming/pkg/httpstream/wsstream"
)

// dialTimeout bounds connecting to the runtime's streaming server, which
// listens on the loopback.
const dialTimeout = 10 * time.Second

// streamOptions are exec's and attach's query parameters.
type streamOptions struct {
	command                    []string
	stdin, stdout, stderr, tty bool
}

// parseStreamOptions reads the parameters under upstream's names (input,
// output, error, tty = 1, as the API server sends them) or the names of
// PodExecOptions (stdin, stdout, stderr).
func parseStreamOptions(q url.Values) (streamOptions, error) {
	opts := streamOptions{command: q[corev1.ExecCommandParam]}
	flags := []struct {
		names []string
		to    *bool
	}{
		{[]string{corev1.ExecStdinParam, "stdin"}, &opts.stdin},
		{[]string{corev1.ExecStdoutParam, "stdout"}, &opts.stdout},
		{[]string{corev1.ExecStderrParam, "stderr"}, &opts.stderr},
		{[]string{corev1.ExecTTYParam}, &opts.tty},
	}
	for _, f := range flags {
		for _, name := range f.names {
			v := q.Get(name)
			if v == "" {
				continue
			}
			b, err := strconv.ParseBool(v)
			if err != nil {
				return opts, fmt.Errorf("invalid %s %q: must be true or false", name, v)
			}
			*f.to = *f.to || b
		}
	}
	if !opts.stdin && !opts.stdout && !opts.stderr {
		return opts, errors.New("you must specify at least 1 of stdin, stdout, stderr")
	}
	// A terminal merges stderr into stdout; upstream drops the stream
	// rather than fail.
	if opts.tty {
		opts.stderr = false
	}
	return opts, nil
}

// serveExec answers /exec/{namespace}/{pod}/{container}.
func (s *Server) serveExec(w http.ResponseWriter, r *http.Request) {
	opts, err := parseStreamOptions(r.URL.Query())
	if err == nil && len(opts.command) == 0 {
		err = errors.New("you must specify at least one command for the container")
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	id, ok := s.runningContainer(w, r)
	if !ok {
		return
	}
	resp, err := s.cfg.Runtime.Exec(r.Context(), &runtimeapi.ExecRequest{
		ContainerId: id, Cmd: opts.command, Tty: opts.tty, Stdin: opts.stdin, Stdout: opts.stdout, Stderr: opts.stderr,
	})
	if err != nil {
		runtimeError(w, "exec", err)
		return
	}
	s.serveRemoteCommand(w, r, resp.GetUrl(), opts)
}

// serveAttach answers /attach/{namespace}/{pod}/{container}.
func (s *Server) serveAttach(w http.ResponseWriter, r *http.Request) {
	opts, err := parseStreamOptions(r.URL.Query())
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	id, ok := s.runningContainer(w, r)
	if !ok {
		return
	}
	resp, err := s.cfg.Runtime.Attach(r.Context(), &runtimeapi.AttachRequest{
		ContainerId: id, Tty: opts.tty, Stdin: opts.stdin, Stdout: opts.stdout, Stderr: opts.stderr,
	})
	if err != nil {
		runtimeError(w, "attach", err)
		return
	}
	s.serveRemoteCommand(w, r, resp.GetUrl(), opts)
}

// servePortForward answers /portForward/{namespace}/{pod}. The ports come
// in the SPDY streams' headers; the port parameters, if any, are passed to
// the runtime as well.
func (s *Server) servePortForward(w http.ResponseWriter, r *http.Request) {
	ns, pod := r.PathValue("namespace"), r.PathValue("pod")
	var ports []int32
	for _, v := range r.URL.Query()["port"] {
		p, err := strconv.ParseUint(v, 10, 16)
		if err != nil || p == 0 {
			httpError(w, http.StatusBadRequest, "invalid port %q", v)
			return
		}
		ports = append(ports, int32(p))
	}
	sandbox, err := s.cfg.Pods.PodSandbox(ns, pod)
	switch {
	case errors.Is(err, ErrPodNotFound):
		httpError(w, http.StatusNotFound, "pod %q does not exist", pod)
		return
	case err != nil:
		httpError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	resp, err := s.cfg.Runtime.PortForward(r.Context(), &runtimeapi.PortForwardRequest{PodSandboxId: sandbox, Port: ports})
	if err != nil {
		runtimeError(w, "port forward", err)
		return
	}
	target, err := streamURL(resp.GetUrl())
	if err != nil {
		httpError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	if wsstream.IsWebSocketRequest(r) {
		s.tunnelPortForward(w, r, target)
		return
	}
	s.proxy(w, r, target)
}

// runningContainer returns the ID of the container a request names,
// answering the error itself when there is none.
func (s *Server) runningContainer(w http.ResponseWriter, r *http.Request) (string, bool) {
	ref, ok := s.container(w, r)
	if !ok {
		return "", false
	}
	if ref.ID == "" {
		httpError(w, http.StatusBadRequest, "container %q in pod %q is waiting to start: %s", r.PathValue("container"), r.PathValue("pod"), ref.Waiting)
		return "", false
	}
	return ref.ID, true
}

// serveRemoteCommand hands an exec or attach session to the runtime's
// streaming server: SPDY goes through unchanged, WebSocket is translated.
func (s *Server) serveRemoteCommand(w http.ResponseWriter, r *http.Request, rawURL string, opts streamOptions) {
	target, err := streamURL(rawURL)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	if wsstream.IsWebSocketRequest(r) {
		s.translateRemoteCommand(w, r, target, opts)
		return
	}
	s.proxy(w, r, target)
}

// streamURL checks the URL a runtime returned for a session.
func streamURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("runtime returned an unusable streaming URL %q", raw)
	}
	return u, nil
}

// proxy passes the request, its upgrade and then the raw connection to
// the runtime's streaming server; the runtime answers the protocol
// negotiation itself.
func (s *Server) proxy(w http.ResponseWriter, r *http.Request, target *url.URL) {
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = target
			pr.Out.Host = target.Host
		},
		Transport:     s.runtime,
		FlushInterval: -1,
		ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() == nil {
				s.log.Warn("proxy to runtime stream server", "url", target.Redacted(), "err", err)
			}
			httpError(w, http.StatusBadGateway, "error dialing container runtime: %v", err)
		},
	}
	p.ServeHTTP(w, r)
}

// runtimeTransport carries proxied sessions to the runtime's streaming
// server. Each URL is good for one session, so connections are not kept.
func runtimeTransport() *http.Transport {
	return &http.Transport{
		Proxy:             nil,
		DialContext:       (&net.Dialer{Timeout: dialTimeout}).DialContext,
		TLSClientConfig:   runtimeTLS(),
		DisableKeepAlives: true,
	}
}

// runtimeTLS is for a runtime serving its streams over TLS: such runtimes
// (containerd's enable_tls_streaming) use a self-signed certificate on the
// loopback, so there is nothing to verify it against.
func runtimeTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}
}

// runtimeError answers a failed CRI call with the status upstream's
// kubelet gives.
func runtimeError(w http.ResponseWriter, op string, err error) {
	st := status.Convert(err)
	code := http.StatusInternalServerError
	switch st.Code() {
	case codes.NotFound:
		code = http.StatusNotFound
	case codes.FailedPrecondition, codes.InvalidArgument:
		code = http.StatusBadRequest
	case codes.ResourceExhausted:
		code = http.StatusTooManyRequests
	case codes.Unavailable:
		code = http.StatusServiceUnavailable
	}
	httpError(w, code, "%s: %s", op, st.Message())
}

// bufferedConn is a connection whose first bytes were read ahead into a
// bufio.Reader while parsing the upgrade response.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// dialUpgrade asks the runtime's streaming server at target for an SPDY
// upgrade offering protocols, and returns the upgraded connection and the
// protocol chosen. A refusal is returned as an error carrying the
// server's message.
func dialUpgrade(ctx context.Context, target *url.URL, protocols []string) (net.Conn, string, error) {
	addr := target.Host
	if target.Port() == "" {
		addr = net.JoinHostPort(target.Hostname(), map[string]string{"http": "80", "https": "443"}[target.Scheme])
	}
	d := &net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("dial container runtime: %w", err)
	}
	if target.Scheme == "https" {
		tc := tls.Client(conn, runtimeTLS())
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, "", fmt.Errorf("dial container runtime: %w", err)
		}
		conn = tc
	}
	// Stop waiting for the answer if ctx ends first.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target.String(), nil)
	if err != nil {
		_ = conn.Close()
		return nil, "", err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "SPDY/3.1")
	for _, p := range protocols {
		req.Header.Add("X-Stream-Protocol-Version", p)
	}
	br := bufio.NewReader(conn)
	resp, err := func() (*http.Response, error) {
		if err := req.Write(conn); err != nil {
			return nil, err
		}
		return http.ReadResponse(br, req)
	}()
	if err != nil {
		_ = conn.Close()
		return nil, "", fmt.Errorf("upgrade to container runtime: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		_ = resp.Body.Close()
		_ = conn.Close()
		return nil, "", fmt.Errorf("container runtime refused the stream: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if !stop() {
		_ = conn.Close()
		return nil, "", ctx.Err()
	}
	return &bufferedConn{Conn: conn, r: br}, resp.Header.Get("X-Stream-Protocol-Version"), nil
}
