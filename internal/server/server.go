// Package server assembles the control plane of `skiff server`: embedded
// etcd, the API server with its stores and admission, and the components
// that run beside it. It owns their start order and shutdown.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/skiffhq/skiff/internal/apiserver"
	"github.com/skiffhq/skiff/internal/apiserver/auth"
	"github.com/skiffhq/skiff/internal/apiserver/ipalloc"
	"github.com/skiffhq/skiff/internal/apiserver/openapi"
	"github.com/skiffhq/skiff/internal/apiserver/resource"
	"github.com/skiffhq/skiff/internal/etcd"
	"github.com/skiffhq/skiff/internal/pki"
	"github.com/skiffhq/skiff/internal/storage"
)

// Config is everything `skiff server` is told.
type Config struct {
	// DataDir holds etcd's data, the PKI and the kubeconfigs.
	DataDir string
	// BindAddress and HTTPSPort are where the API server listens.
	BindAddress string
	HTTPSPort   int
	// AdvertiseAddress is the address other hosts reach this server at;
	// default: the host's first non-loopback address, else 127.0.0.1.
	AdvertiseAddress string
	// TLSSANs are extra names and addresses for the serving certificate.
	TLSSANs []string
	// EtcdEndpoints, when set, uses an external etcd instead of the
	// embedded one.
	EtcdEndpoints []string
	// EtcdClientPort and EtcdPeerPort are the embedded etcd's ports.
	EtcdClientPort, EtcdPeerPort int
	// ClusterInit, JoinURL, Token, EtcdMemberName, EtcdSnapshotInterval,
	// EtcdSnapshotRetention, ClusterReset and ClusterResetRestorePath
	// are about servers sharing the embedded etcd: see ClusterConfig.
	ClusterConfig
	// ServiceCIDR is where Service cluster IPs come from.
	ServiceCIDR string
	// NodePortRange is "min-max".
	NodePortRange string
	// Disable names components not to run (e.g. "controller-manager").
	Disable []string
	// DisableControllers names single controllers not to run.
	DisableControllers []string
	// NodeMonitorGracePeriod is how long a node may be silent before it
	// is marked unreachable; zero takes the controller's default.
	NodeMonitorGracePeriod time.Duration
	// DefaultNotReadyTolerationSeconds and
	// DefaultUnreachableTolerationSeconds are the tolerationSeconds given
	// to pods that do not set their own; zero takes
	// DefaultTolerationSeconds.
	DefaultNotReadyTolerationSeconds, DefaultUnreachableTolerationSeconds int64
	// ClusterCIDR is where node pod CIDRs come from; empty takes the node
	// IPAM controller's default.
	ClusterCIDR string
	// TerminatedPodGCThreshold is how many terminated pods may exist
	// before the oldest are deleted; zero takes the default, negative
	// turns that off.
	TerminatedPodGCThreshold int
	// APIServerLeaseDuration is how long this server's Lease in the
	// `kubernetes` endpoints reconciler lives without renewal; zero takes
	// DefaultAPIServerLeaseDuration.
	APIServerLeaseDuration time.Duration
	// ClusterDNSPort is where the cluster DNS listens, UDP and TCP, on
	// BindAddress; zero picks a free port (tests). The CLI defaults to
	// dns.DefaultPort; pods reach it through the kube-dns Service on 53.
	ClusterDNSPort int
	// ClusterDomain is the cluster DNS domain; empty takes
	// dns.DefaultDomain.
	ClusterDomain string
	// StartTime is when the process started, for the readiness log line.
	StartTime time.Time
	Logger    *slog.Logger
}

// Defaults.
const (
	DefaultDataDir     = "/var/lib/skiff"
	DefaultHTTPSPort   = 6443
	DefaultServiceCIDR = "10.43.0.0/16"
	DefaultNodePorts   = "30000-32767"
)

// Server is a running control plane.
type Server struct {
	cfg       Config
	log       *slog.Logger
	ready     chan struct{}
	readyOnce sync.Once
	serviceIP *net.IPNet
	portMin   int
	portMax   int

	// wg counts the goroutines Run started, so it returns after them.
	wg sync.WaitGroup

	// Set during Run.
	mu     sync.Mutex
	addr   string
	bundle *pki.Bundle
	api    *apiserver.Server
	member *etcd.Server // the embedded etcd member; nil with an external etcd
	dns    []string     // the cluster DNS's listen addresses
}

// New validates cfg and fills defaults.
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.BindAddress == "" {
		cfg.BindAddress = "0.0.0.0"
	}
	if cfg.HTTPSPort == 0 {
		cfg.HTTPSPort = DefaultHTTPSPort
	}
	if cfg.ServiceCIDR == "" {
		cfg.ServiceCIDR = DefaultServiceCIDR
	}
	if cfg.NodePortRange == "" {
		cfg.NodePortRange = DefaultNodePorts
	}
	if cfg.EtcdClientPort == 0 {
		cfg.EtcdClientPort = 2379
	}
	if cfg.EtcdPeerPort == 0 {
		cfg.EtcdPeerPort = 2380
	}
	if cfg.StartTime.IsZero() {
		cfg.StartTime = time.Now()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DefaultNotReadyTolerationSeconds == 0 {
		cfg.DefaultNotReadyTolerationSeconds = DefaultTolerationSeconds
	}
	if cfg.DefaultUnreachableTolerationSeconds == 0 {
		cfg.DefaultUnreachableTolerationSeconds = DefaultTolerationSeconds
	}
	if cfg.APIServerLeaseDuration == 0 {
		cfg.APIServerLeaseDuration = DefaultAPIServerLeaseDuration
	}
	_, cidr, err := net.ParseCIDR(cfg.ServiceCIDR)
	if err != nil {
		return nil, fmt.Errorf("service CIDR: %w", err)
	}
	if cfg.ClusterCIDR != "" {
		if _, _, err := net.ParseCIDR(cfg.ClusterCIDR); err != nil {
			return nil, fmt.Errorf("cluster CIDR: %w", err)
		}
	}
	lo, hi, ok := strings.Cut(cfg.NodePortRange, "-")
	pmin, err1 := strconv.Atoi(lo)
	pmax, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || pmin <= 0 || pmax < pmin || pmax > 65535 {
		return nil, fmt.Errorf("node port range %q: want MIN-MAX", cfg.NodePortRange)
	}
	if cfg.AdvertiseAddress == "" {
		cfg.AdvertiseAddress = defaultAdvertiseAddress()
	}
	srv := &Server{cfg: cfg, log: cfg.Logger, ready: make(chan struct{}), serviceIP: cidr, portMin: pmin, portMax: pmax}
	if err := srv.validateCluster(); err != nil {
		return nil, err
	}
	return srv, nil
}

// Ready is closed once the API server answers and the system objects exist.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the API server's listening address once Ready.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// URL returns the API server's URL on the loopback, once Ready.
func (s *Server) URL() string {
	_, port, _ := net.SplitHostPort(s.Addr())
	return "https://127.0.0.1:" + port
}

// Bundle returns the cluster PKI once Ready: the embedded node agent
// issues its own credentials from it.
func (s *Server) Bundle() *pki.Bundle {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bundle
}

// AdvertiseAddress is the address other hosts reach this server at.
func (s *Server) AdvertiseAddress() string { return s.cfg.AdvertiseAddress }

// AdminKubeconfig returns the path of the admin kubeconfig.
func (s *Server) AdminKubeconfig() string { return filepath.Join(s.cfg.DataDir, "admin.kubeconfig") }

// Run starts every component, serves until ctx ends, then shuts down in
// reverse order.
func (s *Server) Run(parent context.Context) error {
	// Three lifetimes, ended in reverse order of start once parent ends:
	// components (scheduler, controllers) first, so that they release their
	// Leases through a still-working API; then the API's own requests
	// (watches); last storage (watch caches, etcd).
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	defer cancel()
	serveCtx, stopServing := context.WithCancel(ctx)
	defer stopServing()
	compCtx, stopComponents := context.WithCancel(serveCtx)
	defer stopComponents()
	stop := context.AfterFunc(parent, func() {
		select {
		case <-s.ready:
		default:
			cancel() // still starting: abandon start-up at once
		}
	})
	defer stop()
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}

	// Listen first, so a port in use fails before anything else starts.
	ln, err := net.Listen("tcp", net.JoinHostPort(s.cfg.BindAddress, strconv.Itoa(s.cfg.HTTPSPort)))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	s.mu.Lock()
	s.addr = ln.Addr().String()
	s.mu.Unlock()

	if err := s.ensureServerSecrets(ctx); err != nil {
		return err
	}
	start := time.Now()
	bundle, err := pki.Ensure(pki.Config{
		DataDir:      s.cfg.DataDir,
		SANs:         append([]string{s.cfg.AdvertiseAddress}, s.cfg.TLSSANs...),
		ServiceIP:    firstIP(s.serviceIP),
		APIServerURL: "https://127.0.0.1:" + port,
		Logger:       s.log,
	})
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	s.mu.Lock()
	s.bundle = bundle
	s.mu.Unlock()
	s.log.Info("component ready", "component", "pki", "took", time.Since(start).Round(time.Microsecond))

	// Our series go in a registry of our own; the default registry already
	// carries the Go and process collectors and etcd's series, and /metrics
	// serves both.
	reg := prometheus.NewRegistry()

	client, stopEtcd, err := s.startEtcd(ctx, bundle)
	if err != nil {
		return err
	}
	defer stopEtcd()

	storeMetrics, err := storage.NewMetrics(reg)
	if err != nil {
		return fmt.Errorf("storage metrics: %w", err)
	}
	start = time.Now()
	var caches []*storage.Cacher
	factory := func(r *resource.Resource) (storage.Interface, error) {
		opts := storage.Options{Resource: r.Plural, Metrics: storeMetrics, Logger: s.log}
		c, err := storage.NewCacher(ctx, storage.CacherConfig{
			Store:  storage.NewEtcd(client, r.New, opts),
			Prefix: apiserver.KeyPrefix(r), NewFunc: r.New, Attrs: apiserver.AttrsFunc(r),
			Options: opts,
		})
		if err != nil {
			return nil, err
		}
		caches = append(caches, c)
		return c, nil
	}
	alloc, err := ipalloc.New(ipalloc.Config{ServiceCIDR: s.serviceIP, NodePortMin: s.portMin, NodePortMax: s.portMax, Client: client})
	if err != nil {
		return err
	}
	kinds := resource.All()
	prio := &priorityAdmission{}
	tolerations := &defaultTolerations{notReady: s.cfg.DefaultNotReadyTolerationSeconds, unreachable: s.cfg.DefaultUnreachableTolerationSeconds}
	spec, err := openapi.New(openapiKinds(kinds), openapi.Options{Version: apiserver.Version.GitVersion})
	if err != nil {
		return fmt.Errorf("openapi: %w", err)
	}
	// The API server reaches kubelets (pods/log, pods/exec...) as an
	// administrator; the certificate lives in memory, reissued each start.
	kcCert, kcKey, err := bundle.IssueClientCert("kube-apiserver-kubelet-client", []string{pki.SystemMastersGroup})
	if err != nil {
		return fmt.Errorf("kubelet client certificate: %w", err)
	}
	kubeletCert, err := tls.X509KeyPair(kcCert, kcKey)
	if err != nil {
		return fmt.Errorf("kubelet client certificate: %w", err)
	}
	api, err := apiserver.New(apiserver.Config{
		KubeletTLS:      &tls.Config{Certificates: []tls.Certificate{kubeletCert}, RootCAs: bundle.CAPool, MinVersion: tls.VersionTLS12},
		Resources:       kinds,
		Storage:         factory,
		Admission:       []apiserver.Admitter{alloc, prio, tolerations},
		ExternalAddress: net.JoinHostPort(s.cfg.AdvertiseAddress, port),
		Metrics:         apiserver.NewMetrics(reg),
		Logger:          s.log,
		Extra: map[string]http.Handler{
			"/openapi/v2":    http.HandlerFunc(spec.ServeV2),
			"/openapi/v3":    http.HandlerFunc(spec.ServeV3),
			"/openapi/v3/":   http.HandlerFunc(spec.ServeV3),
			"/metrics":       promhttp.HandlerFor(prometheus.Gatherers{prometheus.DefaultGatherer, reg}, promhttp.HandlerOpts{}),
			"/cacerts":       caCertsHandler(bundle.CAPEM),
			ClusterAPIPrefix: s.clusterAPI(bundle).handler(),
		},
		Ready: s.readyCheck,
	})
	if err != nil {
		return err
	}
	s.api = api
	prio.api = api

	authn := auth.New(bundle.CAPool, auth.StaticTokens{bundle.NodeToken: auth.UserInfo{Name: "system:node-bootstrap", Groups: []string{"system:nodes", "system:bootstrappers"}}})
	srv := &http.Server{
		Handler:           auth.Middleware(authn, api.Handler(), auth.PublicPaths),
		TLSConfig:         pki.ServerTLSConfig(bundle),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return serveCtx },
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.ServeTLS(ln, "", "") }()

	for _, c := range caches {
		select {
		case <-c.Ready():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.log.Info("component ready", "component", "watch-cache", "resources", len(caches), "took", time.Since(start).Round(time.Microsecond))
	if err := s.bootstrap(ctx, alloc); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	s.startEndpointsReconciler(compCtx)
	if err := s.startDNS(compCtx); err != nil {
		return fmt.Errorf("cluster dns: %w", err)
	}
	if err := s.startControllers(compCtx, kinds); err != nil {
		return fmt.Errorf("controllers: %w", err)
	}
	if err := s.startScheduler(compCtx); err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	s.startClusterDuties(compCtx, port)
	s.readyOnce.Do(func() { close(s.ready) })
	s.log.Info("component ready", "component", "apiserver", "address", ln.Addr().String(),
		"sinceProcessStart", time.Since(s.cfg.StartTime).Round(time.Millisecond))

	var runErr error
	select {
	case <-parent.Done():
	case runErr = <-serveErr:
		runErr = fmt.Errorf("api server: %w", runErr)
	case <-s.memberDone():
		runErr = s.memberErr()
	}
	stopComponents()
	s.wg.Wait()
	stopServing() // ends watches, so Shutdown need not wait for them
	shutdownCtx, done := context.WithTimeout(ctx, 5*time.Second)
	defer done()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("api server shutdown", "err", err)
	}
	s.log.Info("stopped")
	return runErr
}

// readyCheck backs /readyz: the bootstrap is done.
func (s *Server) readyCheck() error {
	select {
	case <-s.ready:
		return nil
	default:
		return errors.New("bootstrap not finished")
	}
}

// startEtcd starts the embedded member, or connects to external etcd.
func (s *Server) startEtcd(ctx context.Context, bundle *pki.Bundle) (*clientv3.Client, func(), error) {
	start := time.Now()
	if len(s.cfg.EtcdEndpoints) > 0 {
		// The client's own zap logging would bypass slog; its errors reach us
		// as returned errors anyway.
		c, err := clientv3.New(clientv3.Config{Endpoints: s.cfg.EtcdEndpoints, DialTimeout: 5 * time.Second, Context: ctx, Logger: zap.NewNop()})
		if err != nil {
			return nil, nil, fmt.Errorf("etcd client: %w", err)
		}
		s.log.Info("component ready", "component", "etcd", "external", s.cfg.EtcdEndpoints, "took", time.Since(start).Round(time.Millisecond))
		return c, func() { _ = c.Close() }, nil
	}
	e, err := s.startEmbeddedEtcd(ctx, bundle)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	s.member = e
	s.mu.Unlock()
	s.log.Info("component ready", "component", "etcd", "member", e.Name(), "took", time.Since(start).Round(time.Millisecond))
	return e.Client(), e.Close, nil
}

func firstIP(n *net.IPNet) net.IP {
	ip := make(net.IP, 4)
	copy(ip, n.IP.To4())
	ip[3]++
	return ip
}

// defaultAdvertiseAddress picks the host's first global unicast IPv4.
func defaultAdvertiseAddress() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// openapiKinds lists the served kinds for the OpenAPI generator.
func openapiKinds(kinds []*resource.Resource) []openapi.Kind {
	out := make([]openapi.Kind, 0, len(kinds))
	for _, r := range kinds {
		out = append(out, openapi.Kind{GVK: r.Kind, Object: r.New(), List: r.NewList(), Resource: r.Plural, Namespaced: r.Namespaced})
	}
	return out
}
