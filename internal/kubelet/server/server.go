// Package server is the kubelet's HTTPS API on port 10250: container logs,
// and exec, attach and port-forward sessions, which the API server's
// pods/log, pods/exec, pods/attach and pods/portforward subresources proxy
// to. Logs are read from the CRI log files; interactive sessions are handed
// to the container runtime's streaming server, either spliced through
// unchanged (SPDY) or translated from kubectl's WebSocket protocols.
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// AllowedGroup is the client certificate group (O) the server accepts:
// the API server's kubelet client certificate carries it, node
// certificates do not, so one node cannot exec into another's pods.
const AllowedGroup = "system:masters"

// shutdownTimeout bounds how long Run waits for plain requests to finish
// once its context ends; streams end with the context anyway.
const shutdownTimeout = 5 * time.Second

// Config configures a kubelet HTTPS server.
type Config struct {
	// Addr is the listen address, e.g. ":10250"; port 0 picks one.
	Addr string
	// TLS holds the serving certificate. The caller requires and verifies
	// client certificates against the cluster CA
	// (tls.RequireAndVerifyClientCert); the server then only accepts
	// AllowedGroup.
	TLS *tls.Config
	// Pods maps pods and containers to runtime objects.
	Pods Provider
	// Runtime is the CRI runtime service: container status for log
	// following, and the streaming URLs of exec, attach and port-forward.
	Runtime runtimeapi.RuntimeServiceClient
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Server serves the kubelet API.
type Server struct {
	cfg     Config
	log     *slog.Logger
	handler http.Handler
	ready   chan struct{}
	// runtime carries SPDY sessions to the runtime's streaming server.
	runtime *http.Transport

	mu   sync.Mutex
	addr string
}

// New checks cfg and builds the server; Run serves it.
func New(cfg Config) (*Server, error) {
	if cfg.Pods == nil {
		return nil, errors.New("kubelet server: no pod provider")
	}
	if cfg.Runtime == nil {
		return nil, errors.New("kubelet server: no runtime")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger, ready: make(chan struct{}), runtime: runtimeTransport()}
	s.handler = s.routes()
	return s, nil
}

// Handler returns the API's handler, for callers that serve it on a
// listener of their own (tests, hollow nodes sharing one port). Requests
// must arrive over TLS with a verified client certificate.
func (s *Server) Handler() http.Handler { return s.handler }

// Ready is closed once Run listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the address Run listens on, once Ready.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Run listens on cfg.Addr and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if s.cfg.TLS == nil {
		return errors.New("kubelet server: no TLS configuration")
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("kubelet server: listen: %w", err)
	}
	s.mu.Lock()
	s.addr = ln.Addr().String()
	s.mu.Unlock()

	srv := &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.cfg.TLS,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		// Streams and followed logs watch their request's context, so
		// ending ctx ends them too (Shutdown does not wait for hijacked
		// connections).
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	close(s.ready)
	s.log.Info("kubelet server listening", "address", s.addr)

	select {
	case err := <-errc:
		return fmt.Errorf("kubelet server: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
	}
	return nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok"))
	})
	mux.Handle("GET /containerLogs/{namespace}/{pod}/{container}", s.authorized(s.serveLogs))
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		mux.Handle(m+" /exec/{namespace}/{pod}/{container}", s.authorized(s.serveExec))
		mux.Handle(m+" /attach/{namespace}/{pod}/{container}", s.authorized(s.serveAttach))
		mux.Handle(m+" /portForward/{namespace}/{pod}", s.authorized(s.servePortForward))
	}
	return mux
}

// authorized admits only clients whose verified certificate is in
// AllowedGroup; the TLS layer has already checked the chain.
func (s *Server) authorized(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			httpError(w, http.StatusUnauthorized, "Unauthorized")
			return
		}
		cert := r.TLS.VerifiedChains[0][0]
		if !slices.Contains(cert.Subject.Organization, AllowedGroup) {
			httpError(w, http.StatusForbidden, "Forbidden (user=%s, verb=%s, resource=nodes, subresource=proxy)", cert.Subject.CommonName, r.Method)
			return
		}
		next(w, r)
	})
}

// httpError answers with a metav1.Status, which both of client-go's
// upgrade paths (SPDY and WebSocket) turn into a clean error message when
// the API server relays it unchanged; plain text, as upstream's kubelet
// sends, can be misread as YAML by the WebSocket client.
func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	reason := metav1.StatusReasonInternalError
	switch code {
	case http.StatusBadRequest:
		reason = metav1.StatusReasonBadRequest
	case http.StatusUnauthorized:
		reason = metav1.StatusReasonUnauthorized
	case http.StatusForbidden:
		reason = metav1.StatusReasonForbidden
	case http.StatusNotFound:
		reason = metav1.StatusReasonNotFound
	case http.StatusTooManyRequests:
		reason = metav1.StatusReasonTooManyRequests
	case http.StatusServiceUnavailable:
		reason = metav1.StatusReasonServiceUnavailable
	}
	st := metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Code: int32(code), Reason: reason, Message: fmt.Sprintf(format, args...),
	}
	body, _ := json.Marshal(st)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
