package ruleset

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// endpoint is one address and port a Service port can send traffic to.
type endpoint struct {
	addr        netip.Addr
	port        uint16
	ready       bool
	serving     bool
	terminating bool
	local       bool
}

func (e endpoint) addrPort() netip.AddrPort { return netip.AddrPortFrom(e.addr, e.port) }

// endpointsFor collects the IPv4 endpoints of one Service port from the
// Service's slices, sorted and without duplicates (an endpoint may sit in
// two slices for a moment while the controller moves it).
func endpointsFor(sp corev1.ServicePort, from []*discoveryv1.EndpointSlice, nodeName string) []endpoint {
	seen := map[netip.AddrPort]int{}
	var out []endpoint
	for _, s := range from {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		port, ok := slicePort(s, sp)
		if !ok {
			continue
		}
		for _, ep := range s.Endpoints {
			c := ep.Conditions
			// An unknown readiness means ready; an unknown serving
			// state means the same as readiness (the API's rules).
			ready := c.Ready == nil || *c.Ready
			serving := ready
			if c.Serving != nil {
				serving = *c.Serving
			}
			e := endpoint{
				port:        port,
				ready:       ready,
				serving:     serving,
				terminating: c.Terminating != nil && *c.Terminating,
				local:       ep.NodeName != nil && *ep.NodeName == nodeName && nodeName != "",
			}
			for _, a := range ep.Addresses {
				addr, err := netip.ParseAddr(a)
				if err != nil || !addr.Is4() {
					continue
				}
				e.addr = addr
				if i, dup := seen[e.addrPort()]; dup {
					// Prefer the copy that can take traffic.
					if !out[i].ready && e.ready {
						out[i] = e
					}
					continue
				}
				seen[e.addrPort()] = len(out)
				out = append(out, e)
			}
		}
	}
	slices.SortFunc(out, func(a, b endpoint) int { return a.addrPort().Compare(b.addrPort()) })
	return out
}

// slicePort finds the port of a slice that serves the Service port: the
// one of the same name and protocol.
func slicePort(s *discoveryv1.EndpointSlice, sp corev1.ServicePort) (uint16, bool) {
	want := sp.Protocol
	if want == "" {
		want = corev1.ProtocolTCP
	}
	for _, p := range s.Ports {
		name, proto := "", corev1.ProtocolTCP
		if p.Name != nil {
			name = *p.Name
		}
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		if name != sp.Name || proto != want || p.Port == nil || *p.Port <= 0 || *p.Port > 65535 {
			continue
		}
		return uint16(*p.Port), true
	}
	return 0, false
}

// categorized is a Service port's endpoints sorted by use.
type categorized struct {
	// cluster serves cluster-wide traffic: the ready endpoints, or when
	// there are none, those still serving while terminating (so that a
	// rolling update whose last pods are shutting down still answers).
	cluster []endpoint
	// local serves Local-policy traffic: this node's ready endpoints, or
	// when there are none its serving terminating ones.
	local []endpoint
	// any says whether the Service has a usable endpoint anywhere; with
	// none, connections are rejected rather than dropped.
	any bool
}

func categorize(eps []endpoint) categorized {
	var c categorized
	servingTerminating := func(e endpoint) bool { return e.serving && e.terminating }
	pick := func(keep func(endpoint) bool) []endpoint {
		var out []endpoint
		for _, e := range eps {
			if keep(e) {
				out = append(out, e)
			}
		}
		return out
	}
	c.cluster = pick(func(e endpoint) bool { return e.ready })
	if len(c.cluster) == 0 {
		c.cluster = pick(servingTerminating)
	}
	c.local = pick(func(e endpoint) bool { return e.local && e.ready })
	if len(c.local) == 0 {
		c.local = pick(func(e endpoint) bool { return e.local && servingTerminating(e) })
	}
	c.any = len(c.cluster) > 0
	return c
}
