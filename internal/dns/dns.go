// Package dns is the cluster DNS server of `skiff server`: it answers for
// the cluster domain (Services, their endpoints, pods) from an in-memory
// view fed by watches on Services and EndpointSlices, following the
// Kubernetes DNS specification, and forwards every other name to the
// host's resolvers.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Defaults.
const (
	// DefaultDomain is the cluster domain, as upstream.
	DefaultDomain = "cluster.local"
	// DefaultTTL is the TTL of cluster records, as upstream's CoreDNS.
	DefaultTTL = 30
	// DefaultPort is where the server listens on each host. Not 53: the
	// host's own resolver often holds it. Not 5353 either: that is mDNS,
	// which avahi holds on most desktops. 10053 is where upstream's old
	// kube-dns answered behind its dnsmasq cache. Pods never see this
	// port: they reach the DNS Service on 53, which the service proxy
	// translates.
	DefaultPort = 10053
	// DefaultResolvConf is where the default upstreams are read.
	DefaultResolvConf = "/etc/resolv.conf"
	// serviceIPOffset is the DNS Service's place in the service CIDR:
	// the tenth address, as upstream distributions choose.
	serviceIPOffset = 10
	// upstreamTimeout bounds one exchange with one upstream.
	upstreamTimeout = 2 * time.Second
)

// Config configures a Server.
type Config struct {
	// Client reads Services and EndpointSlices; unused if Informers is
	// set.
	Client kubernetes.Interface
	// Informers, if set, is a shared factory to take the Service and
	// EndpointSlice informers from. Run starts it if its owner has not,
	// and informers it starts stop when Run returns. Otherwise the server
	// makes its own from Client.
	Informers informers.SharedInformerFactory
	// Domain is the cluster domain (default DefaultDomain).
	Domain string
	// Listen lists the addresses served over both UDP and TCP (default
	// 0.0.0.0:DefaultPort). A port of 0 picks a free port, the same for
	// UDP and TCP.
	Listen []string
	// Upstreams are the resolvers ("IP" or "IP:port") other names go
	// to; default: the nameservers of ResolvConf, less those that would
	// send the query back to this server.
	Upstreams []string
	// ResolvConf is where default upstreams are read (default
	// DefaultResolvConf).
	ResolvConf string
	// TTL is the TTL of cluster records and of negative answers (default
	// DefaultTTL).
	TTL    uint32
	Logger *slog.Logger
}

// Server is a cluster DNS server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	ready   chan struct{}
	handler *handler

	mu    sync.Mutex
	addrs []string
	ran   bool
}

// New validates cfg and fills defaults.
func New(cfg Config) (*Server, error) {
	if cfg.Client == nil && cfg.Informers == nil {
		return nil, errors.New("dns: no client")
	}
	cfg.Domain = strings.ToLower(strings.Trim(cfg.Domain, "."))
	if cfg.Domain == "" {
		cfg.Domain = DefaultDomain
	}
	if _, ok := mdns.IsDomainName(cfg.Domain); !ok {
		return nil, fmt.Errorf("dns: domain %q is not a domain name", cfg.Domain)
	}
	if len(cfg.Listen) == 0 {
		cfg.Listen = []string{net.JoinHostPort("0.0.0.0", fmt.Sprint(DefaultPort))}
	}
	for _, a := range cfg.Listen {
		if _, err := netip.ParseAddrPort(a); err != nil {
			return nil, fmt.Errorf("dns: listen address %q: %w", a, err)
		}
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = DefaultResolvConf
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ups, err := upstreams(cfg)
	if err != nil {
		return nil, err
	}
	if len(ups) == 0 {
		cfg.Logger.Warn("cluster dns: no upstream resolvers; names outside the cluster will fail", "resolvConf", cfg.ResolvConf)
	}
	cfg.Upstreams = ups
	v := newView(cfg.Domain, cfg.TTL)
	return &Server{cfg: cfg, log: cfg.Logger, ready: make(chan struct{}),
		handler: &handler{view: v, fwd: newForwarder(ups, upstreamTimeout), log: cfg.Logger}}, nil
}

// Ready is closed once the server answers from a synced view.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addrs returns the addresses served (UDP and TCP alike), with the ports
// actually bound, once Ready.
func (s *Server) Addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.addrs...)
}

// Upstreams returns the resolvers other names are forwarded to.
func (s *Server) Upstreams() []string { return append([]string(nil), s.cfg.Upstreams...) }

// Run listens, fills the view and serves until ctx ends. It may be called
// once.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.ran {
		s.mu.Unlock()
		return errors.New("dns: Run called twice")
	}
	s.ran = true
	s.mu.Unlock()

	// Listen first, so a port in use fails before anything else starts.
	ls, err := listen(s.cfg.Listen)
	if err != nil {
		return err
	}
	defer ls.close()
	s.mu.Lock()
	s.addrs = ls.addrs()
	s.mu.Unlock()

	start := time.Now()
	factory := s.cfg.Informers
	if factory == nil {
		factory = informers.NewSharedInformerFactoryWithOptions(s.cfg.Client, 0, informers.WithTransform(trim))
		defer factory.Shutdown()
	}
	// Deferred after Shutdown so it runs first: Shutdown waits for the
	// informers, which stop only when this ends, on every return path.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	svcInf := factory.Core().V1().Services().Informer()
	sliceInf := factory.Discovery().V1().EndpointSlices().Informer()
	v := s.handler.view
	regs := make([]cache.ResourceEventHandlerRegistration, 0, 2)
	for inf, h := range map[cache.SharedIndexInformer]cache.ResourceEventHandler{
		svcInf:   handlerFuncs(v.setService, v.deleteService),
		sliceInf: handlerFuncs(v.setSlice, v.deleteSlice),
	} {
		reg, err := inf.AddEventHandler(h)
		if err != nil {
			return fmt.Errorf("dns: watch: %w", err)
		}
		// A shared factory outlives us: stop feeding a view nobody reads.
		defer func() { _ = inf.RemoveEventHandler(reg) }()
		regs = append(regs, reg)
	}
	factory.Start(ctx.Done())
	for _, r := range regs {
		if !cache.WaitForCacheSync(ctx.Done(), r.HasSynced) {
			return fmt.Errorf("dns: sync services and endpoint slices: %w", ctx.Err())
		}
	}

	s.handler.ctx = ctx
	srv := ls.serve(s.handler, s.log)
	if err := srv.waitStarted(ctx); err != nil {
		srv.stop()
		return err
	}
	close(s.ready)
	s.log.Info("component ready", "component", "dns", "addresses", s.Addrs(), "domain", s.cfg.Domain,
		"upstreams", s.cfg.Upstreams, "took", time.Since(start).Round(time.Millisecond))

	var runErr error
	if err := srv.wait(ctx); err != nil {
		// A socket failed on its own: stop the rest.
		runErr = fmt.Errorf("dns: serve: %w", err)
	}
	srv.stop()
	return runErr
}

// ServiceIP returns the DNS Service's cluster IP in serviceCIDR: its tenth
// address (10.43.0.10 in 10.43.0.0/16). It is nil if the range is too
// small to hold it.
func ServiceIP(serviceCIDR *net.IPNet) net.IP {
	if serviceCIDR == nil {
		return nil
	}
	a, ok := netip.AddrFromSlice(serviceCIDR.IP)
	if !ok {
		return nil
	}
	ones, _ := serviceCIDR.Mask.Size()
	p := netip.PrefixFrom(a.Unmap(), ones).Masked()
	ip := p.Addr()
	for range serviceIPOffset {
		ip = ip.Next()
	}
	if !p.Contains(ip) {
		return nil
	}
	return net.IP(ip.AsSlice())
}

// handlerFuncs adapts a view's set and delete to an informer handler,
// unwrapping the tombstones of deletes the watch missed.
func handlerFuncs[T any](set func(T), del func(T)) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { as(obj, set) },
		UpdateFunc: func(_, obj any) { as(obj, set) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			as(obj, del)
		},
	}
}

func as[T any](obj any, f func(T)) {
	if o, ok := obj.(T); ok {
		f(o)
	}
}
