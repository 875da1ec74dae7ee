package sim

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	// tokenTTL is how long an Exec/Attach/PortForward URL stays valid
	// unused, as in the kubelet's and containerd's streaming servers.
	tokenTTL = time.Minute
	// maxPendingTokens bounds unused URLs across all runtimes sharing a
	// server, so a client that asks and never connects cannot grow it.
	maxPendingTokens = 4096
	// streamIdleTimeout closes a streaming connection with no traffic;
	// containerd's default stream_idle_timeout.
	streamIdleTimeout = 4 * time.Hour
	// streamCreationTimeout is how long a client has to open the streams
	// it asked for once the connection is upgraded.
	streamCreationTimeout = 30 * time.Second
)

// streamKind is the kind of streaming session a token grants.
type streamKind string

const (
	kindExec        streamKind = "exec"
	kindAttach      streamKind = "attach"
	kindPortForward streamKind = "portforward"
)

// streamRequest is what a token grants: a session of one kind with the
// streams the CRI request asked for, and what the simulated process
// prints on stdout.
type streamRequest struct {
	kind                       streamKind
	stdin, stdout, stderr, tty bool
	output                     string
	expires                    time.Time
}

// StreamServer is the HTTP server behind Exec, Attach and PortForward, one
// for any number of runtimes, like containerd's streaming server: a CRI
// call returns a single-use URL on it, and the client (the kubelet or
// whoever it hands the URL to) upgrades that URL to SPDY and speaks the
// Kubernetes remote command or port-forward protocol.
//
// Exec and attach print the simulated process's output on stdout, report
// success and end. Port forwarding echoes every byte sent to any port
// back to the sender.
type StreamServer struct {
	log   *slog.Logger
	ready chan struct{}

	mu      sync.Mutex
	baseURL string // set while serving
	done    bool   // Serve has returned; no new URLs
	pending map[string]*streamRequest

	sessions sync.WaitGroup // handlers, which outlive http.Server.Shutdown once hijacked
}

// NewStreamServer returns a server that serves nothing until Serve.
// A nil logger means slog.Default().
func NewStreamServer(logger *slog.Logger) *StreamServer {
	if logger == nil {
		logger = slog.Default()
	}
	return &StreamServer{
		log:     logger,
		ready:   make(chan struct{}),
		pending: make(map[string]*streamRequest),
	}
}

// Ready is closed once Serve is listening and runtimes can hand out URLs.
func (s *StreamServer) Ready() <-chan struct{} { return s.ready }

// Serve answers streaming sessions on ln, a TCP listener, until ctx ends,
// then closes ln and every session and returns. It can be called once.
// URLs name ln's address, with an unspecified IP replaced by loopback.
func (s *StreamServer) Serve(ctx context.Context, ln net.Listener) error {
	base, err := baseURL(ln.Addr())
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.baseURL != "" || s.done {
		s.mu.Unlock()
		return errors.New("stream server: Serve called twice")
	}
	s.baseURL = base
	s.mu.Unlock()
	close(s.ready)
	s.log.Info("stream server listening", "url", base)

	// Sessions end with this context, whether ctx ends or the listener
	// fails.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	mux := http.NewServeMux()
	mux.HandleFunc("/exec/{token}", s.handle(kindExec))
	mux.HandleFunc("/attach/{token}", s.handle(kindAttach))
	mux.HandleFunc("/portforward/{token}", s.handle(kindPortForward))
	srv := &http.Server{
		Handler:           mux,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.mu.Lock()
	s.baseURL, s.done = "", true
	clear(s.pending)
	s.mu.Unlock()
	cancel()
	shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer stop()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
	}
	if serveErr == nil {
		serveErr = <-errc
	}
	s.sessions.Wait()
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serve streams on %s: %w", ln.Addr(), serveErr)
	}
	return nil
}

// baseURL turns a listener address into the URL prefix clients dial. An
// unspecified IP becomes 127.0.0.1, which Go's dual-stack wildcard
// listeners also accept.
func baseURL(addr net.Addr) (string, error) {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return "", fmt.Errorf("stream server: listener address %s is not TCP", addr)
	}
	ip := tcp.IP
	if len(ip) == 0 || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(tcp.Port)), nil
}

// handle serves one kind of session, consuming its token.
func (s *StreamServer) handle(kind streamKind) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		s.sessions.Add(1)
		defer s.sessions.Done()
		sr := s.take(kind, req.PathValue("token"))
		if sr == nil {
			http.Error(w, "unknown or expired stream token", http.StatusNotFound)
			return
		}
		if kind == kindPortForward {
			s.servePortForward(w, req)
			return
		}
		s.serveRemoteCommand(w, req, sr)
	}
}

// register stores sr under a new token and returns the URL that redeems
// it.
func (s *StreamServer) register(sr *streamRequest) (string, error) {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	token := base64.RawURLEncoding.EncodeToString(b[:])
	now := time.Now()
	sr.expires = now.Add(tokenTTL)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.baseURL == "" {
		return "", status.Error(codes.Unavailable, "stream server is not serving")
	}
	for t, p := range s.pending {
		if now.After(p.expires) {
			delete(s.pending, t)
		}
	}
	if len(s.pending) >= maxPendingTokens {
		return "", status.Errorf(codes.ResourceExhausted, "%d streaming requests are already waiting", len(s.pending))
	}
	s.pending[token] = sr
	return s.baseURL + "/" + string(sr.kind) + "/" + token, nil
}

// take redeems a token for a session of kind, or returns nil.
func (s *StreamServer) take(kind streamKind, token string) *streamRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	sr, ok := s.pending[token]
	if !ok {
		return nil
	}
	delete(s.pending, token)
	if sr.kind != kind || time.Now().After(sr.expires) {
		return nil
	}
	return sr
}
