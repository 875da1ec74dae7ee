package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/skiffhq/skiff/internal/network"
)

// podNetwork configures this node's pod network: the CNI configuration
// and the masquerade of traffic leaving the cluster once the node has a
// pod CIDR, and routes to every other node's pods.
type podNetwork struct {
	confDir, dataDir string
	// clusterCIDR is the whole pod network, which pods reach without
	// masquerade; the zero Prefix when unknown.
	clusterCIDR netip.Prefix
	routes      *network.Routes
	log         *slog.Logger

	mu sync.Mutex
	// pods is the node's pod CIDR once configured; mu guards it.
	pods netip.Prefix
}

// configure writes the CNI configuration for the node's pod CIDR and
// masquerades its pods' traffic to outside the pod network.
func (n *podNetwork) configure(_ context.Context, cidr string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	pods, err := netip.ParsePrefix(cidr)
	if err != nil {
		return fmt.Errorf("pod CIDR: %w", err)
	}
	// Masquerade first: a pod started under the new CNI configuration
	// must find its way out at once.
	if err := network.SyncMasquerade(nil, pods, n.clusterCIDR); err != nil {
		return err
	}
	n.pods = pods
	_, err = network.WriteCNIConfig(n.confDir, network.CNIConfig{PodCIDR: cidr, DataDir: n.dataDir})
	return err
}

// ensureMasquerade puts the masquerade back if someone removed it (a
// firewall reload flushing the ruleset, say); pods lose their way out
// until it is back.
func (n *podNetwork) ensureMasquerade() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.pods.IsValid() {
		return
	}
	if err := network.EnsureMasquerade(nil, n.pods, n.clusterCIDR); err != nil {
		n.log.Warn("pod masquerade", "err", err)
	}
}

// routeResync bounds how stale routes get if an event is missed or a
// route is removed behind our back.
const routeResync = 30 * time.Second

// syncRoutes keeps a route to each other node's pod CIDR via its
// InternalIP, whenever nodes change; on the same beat it checks that the
// masquerade is still there.
func (n *podNetwork) syncRoutes(ctx context.Context, f informers.SharedInformerFactory, self string) error {
	kick := make(chan struct{}, 1)
	wake := func(any) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	inf := f.Core().V1().Nodes().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: wake, UpdateFunc: func(_, o any) { wake(o) }, DeleteFunc: wake})
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil
	}
	lister := f.Core().V1().Nodes().Lister()
	t := time.NewTicker(routeResync)
	defer t.Stop()
	for {
		nodes, _ := lister.List(labels.Everything())
		var want []network.Route
		for _, node := range nodes {
			if node.Name == self || node.Spec.PodCIDR == "" {
				continue
			}
			_, dst, err := net.ParseCIDR(node.Spec.PodCIDR)
			via := internalIP(node)
			if err != nil || via == nil {
				continue
			}
			want = append(want, network.Route{Dst: dst, Via: via})
		}
		if err := n.routes.Sync(want); err != nil {
			n.log.Warn("pod routes", "err", err)
		}
		n.ensureMasquerade()
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		case <-t.C:
		}
	}
}

func internalIP(n *corev1.Node) net.IP {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return net.ParseIP(a.Address)
		}
	}
	return nil
}
