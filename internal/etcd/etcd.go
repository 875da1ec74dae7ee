// Package etcd runs the embedded etcd member that holds the cluster state.
//
// It wraps go.etcd.io/etcd/server/v3/embed with defaults chosen for a
// single binary that must answer /readyz within a second of starting and
// idle in well under 100 MB: fast single-member elections, periodic
// compaction, a bounded raft log, and etcd's zap logs routed to slog.
package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
)

// Defaults for Config fields left empty.
const (
	DefaultName              = "skiff"
	DefaultListenClientURL   = "http://127.0.0.1:2379"
	DefaultListenPeerURL     = "http://127.0.0.1:2380"
	DefaultHeartbeatInterval = 10 * time.Millisecond
	DefaultElectionTimeout   = 100 * time.Millisecond
	DefaultQuotaBackendBytes = 2 << 30
	DefaultCompaction        = 5 * time.Minute
	DefaultSnapshotCount     = 5000
	DefaultProgressNotify    = 5 * time.Second
	DefaultStartTimeout      = 60 * time.Second
)

// Config describes one embedded etcd member.
type Config struct {
	// Name is the member name; it is part of the member's identity.
	Name string
	// DataDir holds the WAL, snapshots and the bbolt backend. Required.
	DataDir string
	// ListenClientURL serves the etcd client API (for etcdctl and other
	// servers). Port 0 picks a free port, which Endpoints reports.
	ListenClientURL string
	// ListenPeerURL serves raft traffic. Port 0 picks a free port.
	ListenPeerURL string

	// HeartbeatInterval and ElectionTimeout are raft timings. A new
	// single member waits between one tick and one election timeout for
	// its first election (etcd fast-forwards all but the last tick, then
	// raft randomises), so a short election timeout is what makes the
	// server ready quickly. A single member sends no heartbeats to anyone,
	// so the short tick costs only a timer; clusters spanning slow links
	// should raise both.
	HeartbeatInterval time.Duration
	ElectionTimeout   time.Duration

	// QuotaBackendBytes caps the backend size before etcd raises a NOSPACE alarm.
	QuotaBackendBytes int64
	// CompactionRetention is how much history periodic compaction keeps;
	// watches and paged lists older than this get 410 Gone.
	CompactionRetention time.Duration
	// SnapshotCount is how many applied entries trigger a raft snapshot;
	// the raft log held in memory is bounded by it, so it sets idle memory.
	SnapshotCount uint64
	// ProgressNotifyInterval is how often watches opened with progress
	// notify learn the current revision even when their keys are idle.
	ProgressNotifyInterval time.Duration
	// StartTimeout bounds how long Start waits for the member to be ready.
	StartTimeout time.Duration

	// UnsafeNoFsync skips fsync. Only for throwaway test clusters: a crash
	// loses acknowledged writes.
	UnsafeNoFsync bool

	// Logger receives etcd's logs at LogLevel and above (default warn).
	Logger   *slog.Logger
	LogLevel slog.Level
}

// Server is a running (or startable) embedded etcd member.
type Server struct {
	cfg   Config
	ecfg  *embed.Config
	log   *slog.Logger
	ready chan struct{}
	quiet *atomic.Bool

	mu     sync.Mutex
	e      *embed.Etcd
	client *clientv3.Client
	closed bool
	err    error
	done   chan struct{}
}

// New validates cfg, fills defaults and prepares (but does not start) the member.
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("etcd: DataDir is required")
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.ListenClientURL == "" {
		cfg.ListenClientURL = DefaultListenClientURL
	}
	if cfg.ListenPeerURL == "" {
		cfg.ListenPeerURL = DefaultListenPeerURL
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.ElectionTimeout == 0 {
		cfg.ElectionTimeout = DefaultElectionTimeout
	}
	if cfg.QuotaBackendBytes == 0 {
		cfg.QuotaBackendBytes = DefaultQuotaBackendBytes
	}
	if cfg.CompactionRetention == 0 {
		cfg.CompactionRetention = DefaultCompaction
	}
	if cfg.SnapshotCount == 0 {
		cfg.SnapshotCount = DefaultSnapshotCount
	}
	if cfg.ProgressNotifyInterval == 0 {
		cfg.ProgressNotifyInterval = DefaultProgressNotify
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LogLevel == 0 {
		cfg.LogLevel = slog.LevelWarn
	}
	if cfg.ElectionTimeout < 5*cfg.HeartbeatInterval {
		return nil, fmt.Errorf("etcd: election timeout %v must be at least 5 heartbeats (%v)", cfg.ElectionTimeout, cfg.HeartbeatInterval)
	}

	clientURL, err := resolveURL(cfg.ListenClientURL)
	if err != nil {
		return nil, fmt.Errorf("etcd: client URL: %w", err)
	}
	peerURL, err := resolveURL(cfg.ListenPeerURL)
	if err != nil {
		return nil, fmt.Errorf("etcd: peer URL: %w", err)
	}

	log := cfg.Logger.With("component", "etcd")
	e := embed.NewConfig()
	e.Name = cfg.Name
	e.Dir = cfg.DataDir
	e.ListenClientUrls = []url.URL{*clientURL}
	e.AdvertiseClientUrls = []url.URL{*clientURL}
	e.ListenPeerUrls = []url.URL{*peerURL}
	e.AdvertisePeerUrls = []url.URL{*peerURL}
	e.InitialCluster = e.InitialClusterFromName(cfg.Name)
	e.TickMs = uint(cfg.HeartbeatInterval / time.Millisecond)
	e.ElectionMs = uint(cfg.ElectionTimeout / time.Millisecond)
	e.InitialElectionTickAdvance = true
	e.QuotaBackendBytes = cfg.QuotaBackendBytes
	e.AutoCompactionMode = embed.CompactorModePeriodic
	e.AutoCompactionRetention = cfg.CompactionRetention.String()
	e.SnapshotCount = cfg.SnapshotCount
	// A lagging follower is sent a snapshot instead of this many entries;
	// keeping it at the snapshot count bounds the in-memory raft log.
	e.SnapshotCatchUpEntries = min(e.SnapshotCatchUpEntries, cfg.SnapshotCount)
	e.WatchProgressNotifyInterval = cfg.ProgressNotifyInterval
	e.UnsafeNoFsync = cfg.UnsafeNoFsync
	// Metrics "basic" is etcd's default; "extensive" adds per-method
	// histograms nobody here reads.
	e.Metrics = "basic"
	e.Logger = "zap"
	e.LogLevel = zapLevel(cfg.LogLevel).String()
	quiet := new(atomic.Bool)
	e.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(newSlogCore(log, zapLevel(cfg.LogLevel), quiet)))

	return &Server{
		quiet: quiet,
		cfg:   cfg,
		ecfg:  e,
		log:   log,
		ready: make(chan struct{}),
		done:  make(chan struct{}),
	}, nil
}

// resolveURL parses u and, if its port is 0, replaces it with a port free
// right now. etcd derives the member ID from the advertised peer URL, so a
// literal port 0 cannot be advertised; the small race of picking a port and
// binding it later is acceptable for tests, which are its users.
func resolveURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q: scheme must be http or https", raw)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", raw, err)
	}
	if port != "0" {
		return u, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("pick free port on %s: %w", host, err)
	}
	u.Host = l.Addr().String()
	if err := l.Close(); err != nil {
		return nil, fmt.Errorf("release probe port: %w", err)
	}
	return u, nil
}

// Start starts the member and returns once it can serve requests (it is
// leader and has published itself), or with the reason it cannot. The
// member keeps running after Start returns until Close or until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.e != nil || s.closed {
		s.mu.Unlock()
		return errors.New("etcd: already started")
	}
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("etcd: create data dir: %w", err)
	}
	started := time.Now()
	e, err := embed.StartEtcd(s.ecfg)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("etcd: start: %w", err)
	}
	s.e = e
	s.mu.Unlock()

	timer := time.NewTimer(s.cfg.StartTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		s.Close()
		return fmt.Errorf("etcd: serving: %w", err)
	case <-timer.C:
		s.Close()
		return fmt.Errorf("etcd: not ready after %v", s.cfg.StartTimeout)
	case <-ctx.Done():
		s.Close()
		return fmt.Errorf("etcd: start: %w", ctx.Err())
	}

	s.mu.Lock()
	s.client = v3client.New(e.Server)
	s.mu.Unlock()
	close(s.ready)
	s.log.Info("etcd ready", "took", time.Since(started), "client", s.Endpoints())

	go func() {
		select {
		case <-ctx.Done():
		case err := <-e.Err():
			if err != nil {
				s.mu.Lock()
				s.err = fmt.Errorf("etcd: serving: %w", err)
				s.mu.Unlock()
			}
		case <-s.done:
		}
		s.Close()
	}()
	return nil
}

// Run starts the member, serves until ctx ends or etcd fails, then stops
// it; it returns nil after a clean stop.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	<-s.done
	return s.Err()
}

// Err reports why the member stopped serving on its own, if it did.
func (s *Server) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Ready is closed once Start has succeeded and Client is usable.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Done is closed once the member has stopped.
func (s *Server) Done() <-chan struct{} { return s.done }

// Client returns an in-process client that calls the server directly,
// without gRPC or sockets. It is nil before Ready and must not be closed
// by callers; Close closes it.
func (s *Server) Client() *clientv3.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client
}

// Endpoints returns the client URLs other processes can dial.
func (s *Server) Endpoints() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	if s.e != nil {
		for _, l := range s.e.Clients {
			out = append(out, "http://"+l.Addr().String())
		}
		if len(out) > 0 {
			return out
		}
	}
	for _, u := range s.ecfg.ListenClientUrls {
		out = append(out, u.String())
	}
	return out
}

// Close stops the member and its client. It is safe to call more than once.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	client, e := s.client, s.e
	s.mu.Unlock()
	s.quiet.Store(true)

	if client != nil {
		if err := client.Close(); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Warn("close etcd client", "err", err)
		}
	}
	if e != nil {
		e.Close()
	}
	close(s.done)
}
