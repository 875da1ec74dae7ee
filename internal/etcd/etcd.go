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
	// ClusterToken goes into new clusters' and members' IDs. It is
	// etcd's own default, which clusters made before it was set used.
	ClusterToken = "etcd-cluster"
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
	// AdvertisePeerURL is the peer URL other members dial, which also
	// identifies the member; empty means ListenPeerURL (whose port must
	// then not be 0 to be dialled from elsewhere).
	AdvertisePeerURL string

	// InitialCluster lists every member as "name=peerURL,..." for a
	// member joining an existing cluster (Join): the members the cluster
	// has, and this one, already added to it. Empty means this member
	// alone, founding a new cluster.
	InitialCluster string
	// Join makes a member without data join the cluster InitialCluster
	// describes instead of founding one. A member with data ignores it:
	// its membership is in its write-ahead log.
	Join bool
	// ForceNewCluster restarts a member that has data as the only member
	// of a cluster, keeping the data: the way back from a lost quorum.
	ForceNewCluster bool
	// PeerTLS and ClientTLS, when set, serve the peer and client URLs
	// over TLS with client certificates required; the URLs' scheme must
	// then be https.
	PeerTLS, ClientTLS *TLS

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

// TLS are a listener's credentials.
type TLS struct {
	// CertFile and KeyFile are the member's certificate and key; towards
	// peers the certificate is also the member's client certificate.
	CertFile, KeyFile string
	// CAFile is what client (and peer) certificates must chain to.
	CAFile string
	// AllowedCNs, when set, are the only common names accepted in client
	// certificates: the CA may also sign certificates for others.
	AllowedCNs []string
}

// applyTo sets e's TLS settings of the peer or the client listener.
func (t *TLS) applyTo(e *embed.Config, peer bool) {
	i := &e.ClientTLSInfo
	if peer {
		i = &e.PeerTLSInfo
	}
	i.CertFile, i.KeyFile, i.TrustedCAFile = t.CertFile, t.KeyFile, t.CAFile
	i.ClientCertAuth = true
	i.AllowedCNs = t.AllowedCNs
}

// ErrRemoved means the member stopped, or would not start, because it
// was removed from its cluster. Its data is of no further use: etcd will
// not run it again, and the cluster knows it no more.
var ErrRemoved = errors.New("this etcd member was removed from its cluster")

// Server is a running (or startable) embedded etcd member.
type Server struct {
	cfg     Config
	ecfg    *embed.Config
	log     *slog.Logger
	ready   chan struct{}
	quiet   *atomic.Bool
	removed *atomic.Bool

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
	advertisePeer := *peerURL
	if cfg.AdvertisePeerURL != "" {
		u, err := url.Parse(cfg.AdvertisePeerURL)
		if err != nil {
			return nil, fmt.Errorf("etcd: advertise peer URL: %w", err)
		}
		advertisePeer = *u
	}
	if err := checkScheme("client", clientURL, cfg.ClientTLS); err != nil {
		return nil, err
	}
	if err := checkScheme("peer", peerURL, cfg.PeerTLS); err != nil {
		return nil, err
	}
	if err := checkScheme("advertise peer", &advertisePeer, cfg.PeerTLS); err != nil {
		return nil, err
	}
	if cfg.Join && cfg.InitialCluster == "" {
		return nil, errors.New("etcd: joining a cluster needs InitialCluster")
	}

	log := cfg.Logger.With("component", "etcd")
	e := embed.NewConfig()
	e.Name = cfg.Name
	e.Dir = cfg.DataDir
	e.ListenClientUrls = []url.URL{*clientURL}
	e.AdvertiseClientUrls = []url.URL{*clientURL}
	e.ListenPeerUrls = []url.URL{*peerURL}
	e.AdvertisePeerUrls = []url.URL{advertisePeer}
	e.InitialCluster = e.InitialClusterFromName(cfg.Name)
	e.InitialClusterToken = ClusterToken
	if cfg.InitialCluster != "" {
		e.InitialCluster = cfg.InitialCluster
	}
	if cfg.Join {
		e.ClusterState = embed.ClusterStateFlagExisting
	}
	e.ForceNewCluster = cfg.ForceNewCluster
	if cfg.ClientTLS != nil {
		cfg.ClientTLS.applyTo(e, false)
	}
	if cfg.PeerTLS != nil {
		cfg.PeerTLS.applyTo(e, true)
	}
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
	quiet, removed := new(atomic.Bool), new(atomic.Bool)
	e.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(newSlogCore(log, zapLevel(cfg.LogLevel), quiet, removed)))

	return &Server{
		quiet:   quiet,
		removed: removed,
		cfg:     cfg,
		ecfg:    e,
		log:     log,
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
	}, nil
}

// checkScheme insists on https exactly when the listener has TLS: etcd
// would otherwise serve plain HTTP with the credentials ignored, or fail
// late.
func checkScheme(what string, u *url.URL, t *TLS) error {
	if want := map[bool]string{true: "https", false: "http"}[t != nil]; u.Scheme != want {
		return fmt.Errorf("etcd: %s URL %s: scheme must be %s with%s TLS", what, u, want, map[bool]string{true: "", false: "out"}[t != nil])
	}
	return nil
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
	case <-e.Server.StopNotify():
		// It stopped on its own before serving: most likely a member that
		// was removed from its cluster while it was away.
		err := s.stoppedErr()
		s.Close()
		return err
	case err := <-e.Err():
		if s.removed.Load() {
			err = s.stoppedErr() // etcd's listeners fail as it stops: say why it stopped
		} else {
			err = fmt.Errorf("etcd: serving: %w", err)
		}
		s.Close()
		return err
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
			s.mu.Lock()
			if s.removed.Load() {
				s.err = s.stoppedErr()
			} else if err != nil {
				s.err = fmt.Errorf("etcd: serving: %w", err)
			}
			s.mu.Unlock()
		case <-e.Server.StopNotify():
			s.mu.Lock()
			if !s.closed {
				s.err = s.stoppedErr()
			}
			s.mu.Unlock()
		case <-s.done:
		}
		s.Close()
	}()
	return nil
}

// stoppedErr says why the member stopped without being asked to.
func (s *Server) stoppedErr() error {
	if s.removed.Load() {
		return fmt.Errorf("etcd: member %q: %w", s.cfg.Name, ErrRemoved)
	}
	return errors.New("etcd: the member stopped on its own; see its log")
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
		scheme := "http://"
		if s.cfg.ClientTLS != nil {
			scheme = "https://"
		}
		for _, l := range s.e.Clients {
			out = append(out, scheme+l.Addr().String())
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
