package proxy

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// UDP has no connections, so a flow's conntrack entry, and with it the
// endpoint chosen at its first packet, lives on for as long as packets
// keep coming (30 s unreplied, 120 s once replied). A client that reuses
// its source port, a resolver most of all, would keep talking to an
// endpoint that is gone, or keep being rejected after endpoints appeared.
// So after each write, the entries of the written Services' UDP ports
// whose replies do not come from a current endpoint are deleted, as
// upstream's kube-proxy does.

// udpTargets are the UDP frontends of some Services, each with the
// endpoint addresses its flows may keep.
type udpTargets struct {
	vips      map[netip.AddrPort]map[netip.Addr]bool // ClusterIP or external IP, and port
	nodePorts map[uint16]map[netip.Addr]bool
}

func (u udpTargets) empty() bool { return len(u.vips) == 0 && len(u.nodePorts) == 0 }

// MatchConntrackFlow selects the stale flows: UDP to a frontend, answered
// (or to be answered) by an address that is not a current endpoint. A
// flow that was rejected for want of endpoints has its reply from the
// frontend itself, so it goes too once endpoints appear.
func (u udpTargets) MatchConntrackFlow(f *netlink.ConntrackFlow) bool {
	if f.Forward.Protocol != unix.IPPROTO_UDP {
		return false
	}
	dst, ok1 := netip.AddrFromSlice(f.Forward.DstIP)
	from, ok2 := netip.AddrFromSlice(f.Reverse.SrcIP)
	if !ok1 || !ok2 {
		return false
	}
	allowed, ok := u.vips[netip.AddrPortFrom(dst.Unmap(), f.Forward.DstPort)]
	if !ok {
		if allowed, ok = u.nodePorts[f.Forward.DstPort]; !ok {
			return false
		}
	}
	return !allowed[from.Unmap()]
}

// udpTargetsOf gathers the UDP frontends of the Services named by keys
// (namespace/name) from the informers' caches; a key whose Service is
// gone is skipped.
func (p *Proxy) udpTargetsOf(keys []string) (udpTargets, error) {
	u := udpTargets{vips: map[netip.AddrPort]map[netip.Addr]bool{}, nodePorts: map[uint16]map[netip.Addr]bool{}}
	for _, key := range keys {
		ns, name, err := cache.SplitMetaNamespaceKey(key)
		if err != nil || key == skeletonKey {
			continue
		}
		svc, err := p.services.Services(ns).Get(name)
		if err != nil {
			continue
		}
		var udp []corev1.ServicePort
		for _, sp := range svc.Spec.Ports {
			if sp.Protocol == corev1.ProtocolUDP {
				udp = append(udp, sp)
			}
		}
		if len(udp) == 0 {
			continue
		}
		slices, err := p.slicesOf(ns, name)
		if err != nil {
			return u, err
		}
		allowed := readyAddresses(slices)
		for _, sp := range udp {
			for _, ip := range append(svc.Spec.ClusterIPs, svc.Spec.ExternalIPs...) {
				if a, err := netip.ParseAddr(ip); err == nil {
					u.vips[netip.AddrPortFrom(a.Unmap(), uint16(sp.Port))] = allowed
				}
			}
			if sp.NodePort != 0 {
				u.nodePorts[uint16(sp.NodePort)] = allowed
			}
		}
	}
	return u, nil
}

// readyAddresses are the addresses of the slices' endpoints that take
// traffic.
func readyAddresses(slices []*discoveryv1.EndpointSlice) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	for _, s := range slices {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				if addr, err := netip.ParseAddr(a); err == nil {
					out[addr.Unmap()] = true
				}
			}
		}
	}
	return out
}

// allServiceKeys lists every Service, for the flush after a full write.
func (p *Proxy) allServiceKeys() ([]string, error) {
	svcs, err := p.services.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	keys := make([]string, 0, len(svcs))
	for _, s := range svcs {
		keys = append(keys, s.Namespace+"/"+s.Name)
	}
	return keys, nil
}

// flushStaleUDP deletes the stale UDP flows of the Services named by
// keys and returns how many it deleted. Nothing is read from the kernel
// when none of them has a UDP port.
func (p *Proxy) flushStaleUDP(keys []string) (uint, error) {
	u, err := p.udpTargetsOf(keys)
	if err != nil || u.empty() {
		return 0, err
	}
	var h *netlink.Handle
	if p.cfg.NetNS != 0 {
		h, err = netlink.NewHandleAt(p.cfg.NetNS)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return 0, fmt.Errorf("conntrack: %w", err)
	}
	defer h.Delete()
	var deleted uint
	for _, family := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		n, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, family, u)
		deleted += n
		// A kernel without IPv6 conntrack has nothing to delete there.
		if err != nil && !(family == unix.AF_INET6 && strings.Contains(err.Error(), "not supported")) {
			return deleted, fmt.Errorf("conntrack: delete stale UDP flows: %w", err)
		}
	}
	return deleted, nil
}

var _ netlink.CustomConntrackFilter = udpTargets{}
