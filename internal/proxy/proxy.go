// Package proxy is the node's service proxy: it load-balances connections
// to Services in the kernel, with nftables, as Kubernetes' kube-proxy does
// in its nftables mode. It watches Services and EndpointSlices and keeps
// one nftables table (family ip, IPv4 only) equal to what they ask for:
// ClusterIPs, node ports, load balancer and external IPs DNATed to a ready
// endpoint chosen at random per connection, ClientIP session affinity,
// the internal and external traffic policies, masquerading where replies
// would otherwise bypass this node, and an immediate reject for Services
// without endpoints.
//
// Package ruleset computes the rules; package nft writes them. This
// package decides when: the whole table at start, then only the Services
// that changed, bursts of changes coalesced into one batch.
package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/vishvananda/netns"

	"github.com/skiffhq/skiff/internal/proxy/ruleset"
)

// DefaultTableName is the table the proxy owns unless told otherwise.
const DefaultTableName = "skiff-proxy"

// Config is what the proxy is told.
type Config struct {
	// Client builds an informer factory of the proxy's own when
	// Informers is nil.
	Client kubernetes.Interface
	// Informers is a factory shared with the rest of the agent. New
	// registers the Service and EndpointSlice informers in it; Run starts
	// the factory (starting it again is harmless) and waits for them.
	Informers informers.SharedInformerFactory
	// NodeName finds this node's endpoints, for the Local traffic
	// policies.
	NodeName string
	// NodeIPs are the addresses node ports answer on (IPv4 ones; others
	// are ignored). With none, node ports answer on every local address
	// but loopback.
	NodeIPs []net.IP
	// ClusterCIDR is the pod range ("10.244.0.0/16"; in a dual-stack
	// list the IPv4 entry is used). Connections to a ClusterIP from
	// outside it are masqueraded; when empty, all are.
	ClusterCIDR string
	// TableName is the nftables table (family ip) the proxy owns:
	// deleted and rebuilt at start, deleted at a clean stop. Default
	// DefaultTableName.
	TableName string
	// NetNS is the network namespace to program; 0 (the zero value)
	// means the process's own. Tests use throwaway namespaces.
	NetNS netns.NsHandle
	// MinSyncInterval is the least time between two writes to the
	// kernel: changes arriving meanwhile wait and go in one batch. Zero
	// writes as soon as a change arrives, still batching whatever queued
	// up while the previous write ran.
	MinSyncInterval time.Duration
	Logger          *slog.Logger
}

// Proxy keeps the kernel's service rules in step with the API.
type Proxy struct {
	cfg   Config
	log   *slog.Logger
	node  ruleset.Node
	ready chan struct{}

	services     corelisters.ServiceLister
	slices       cache.Indexer
	indexed      bool // slices has the byService index
	registration []handlerRegistration

	// writes counts successful writes to the kernel, for tests.
	writes atomic.Int64

	mu    sync.Mutex
	dirty map[string]bool // Services (namespace/name) to rewrite
	full  bool            // the next write must rebuild the table
	kick  chan struct{}   // capacity 1: a write is wanted
}

type handlerRegistration struct {
	informer cache.SharedIndexInformer
	reg      cache.ResourceEventHandlerRegistration
}

// byService indexes EndpointSlices by the Service they belong to.
const byService = "byService"

// New validates cfg and registers the informers the proxy needs.
func New(cfg Config) (*Proxy, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("proxy: node name is required")
	}
	if cfg.Informers == nil {
		if cfg.Client == nil {
			return nil, errors.New("proxy: a client or an informer factory is required")
		}
		cfg.Informers = informers.NewSharedInformerFactory(cfg.Client, 0)
	}
	if cfg.TableName == "" {
		cfg.TableName = DefaultTableName
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	node, err := nodeOf(cfg)
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		cfg:   cfg,
		log:   cfg.Logger.With("component", "proxy"),
		node:  node,
		ready: make(chan struct{}),
		dirty: map[string]bool{},
		kick:  make(chan struct{}, 1),
	}

	svcInformer := cfg.Informers.Core().V1().Services().Informer()
	p.services = cfg.Informers.Core().V1().Services().Lister()
	sliceInformer := cfg.Informers.Discovery().V1().EndpointSlices().Informer()
	// The index makes finding a Service's slices cheap; a factory
	// started by someone else can no longer take one, and then slices
	// are found by label within the namespace instead.
	if err := sliceInformer.AddIndexers(cache.Indexers{byService: sliceServiceIndex}); err == nil {
		p.indexed = true
	} else {
		p.log.Info("EndpointSlice informer already started; finding slices by label", "err", err)
	}
	p.slices = sliceInformer.GetIndexer()

	for _, h := range []struct {
		inf cache.SharedIndexInformer
		fns cache.ResourceEventHandlerFuncs
	}{
		{svcInformer, cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { p.serviceChanged(obj) },
			UpdateFunc: func(_, obj any) { p.serviceChanged(obj) },
			DeleteFunc: func(obj any) { p.serviceChanged(obj) },
		}},
		{sliceInformer, cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { p.sliceChanged(obj) },
			UpdateFunc: func(old, obj any) { p.sliceChanged(old); p.sliceChanged(obj) },
			DeleteFunc: func(obj any) { p.sliceChanged(obj) },
		}},
	} {
		reg, err := h.inf.AddEventHandler(h.fns)
		if err != nil {
			p.removeHandlers()
			return nil, fmt.Errorf("proxy: watch: %w", err)
		}
		p.registration = append(p.registration, handlerRegistration{h.inf, reg})
	}
	return p, nil
}

// nodeOf turns the configuration into what the ruleset needs.
func nodeOf(cfg Config) (ruleset.Node, error) {
	node := ruleset.Node{Name: cfg.NodeName}
	for _, ip := range cfg.NodeIPs {
		if a, ok := netip.AddrFromSlice(ip); ok && a.Unmap().Is4() {
			node.IPs = append(node.IPs, a.Unmap())
		}
	}
	for _, c := range strings.Split(cfg.ClusterCIDR, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			return node, fmt.Errorf("proxy: cluster CIDR %q: %w", c, err)
		}
		if pfx.Addr().Is4() {
			node.ClusterCIDR = pfx.Masked()
			break
		}
	}
	return node, nil
}

func sliceServiceIndex(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return nil, nil
	}
	return []string{s.Namespace + "/" + name}, nil
}

// Ready is closed once the kernel holds the rules for every Service the
// API had when the proxy started.
func (p *Proxy) Ready() <-chan struct{} { return p.ready }

func (p *Proxy) serviceChanged(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		p.markDirty(t.Key)
		return
	}
	if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
		p.markDirty(key)
	}
}

func (p *Proxy) sliceChanged(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	keys, _ := sliceServiceIndex(obj)
	for _, k := range keys {
		p.markDirty(k)
	}
}

func (p *Proxy) markDirty(key string) {
	p.mu.Lock()
	p.dirty[key] = true
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *Proxy) removeHandlers() {
	for _, r := range p.registration {
		_ = r.informer.RemoveEventHandler(r.reg)
	}
	p.registration = nil
}
