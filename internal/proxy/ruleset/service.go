package ruleset

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// DefaultAffinityTimeout is how long a ClientIP session affinity lasts
// when the Service does not say (the API's default, three hours).
const DefaultAffinityTimeout = 10800 * time.Second

// Prefixes of the chains and sets of a Service port. Names carry the
// Service port's identity (namespace/name/protocol/port) in clear so that
// `nft list` can be read; they stay well under the kernel's 255 bytes.
const (
	prefixService  = "svc-"
	prefixExternal = "ext-"
	prefixCluster  = "cluster-"
	prefixLocal    = "local-"
	prefixEndpoint = "ep-"
	prefixAffinity = "affinity-"
)

// Service builds the group of one Service from its EndpointSlices (those
// labelled with its name). It returns nil for a Service that needs no
// rules: ExternalName, headless, or without IPv4 addresses.
//
// Each port gets, as needed: a svc- chain for its ClusterIPs (masquerade
// traffic from outside the pod range, then pick an endpoint), an ext-
// chain for node ports and external addresses (masquerade, or with
// externalTrafficPolicy Local keep the client's address and pick a local
// endpoint), a cluster- and a local- chain that pick an endpoint at random
// (after ClientIP affinity), and an ep- chain per endpoint that DNATs to
// it. Addresses with no endpoint to go to get an entry in the
// no-endpoint maps instead.
func Service(node Node, svc *corev1.Service, slices []*discoveryv1.EndpointSlice) *Group {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	b := &serviceBuilder{node: node, svc: svc, slices: slices, g: &Group{}}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	b.clusterIPs = ipv4s(ips)
	ext := append([]string(nil), svc.Spec.ExternalIPs...)
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			// A load balancer in Proxy mode sends traffic to node
			// addresses itself, never to its own address.
			if in.IPMode == nil || *in.IPMode != corev1.LoadBalancerIPModeProxy {
				ext = append(ext, in.IP)
			}
		}
	}
	b.externalIPs = ipv4s(ext)
	b.nodePorts = svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer
	if len(b.clusterIPs) == 0 {
		// Headless, or IPv6 only: nothing of ours answers on it.
		return nil
	}
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		b.affinity = DefaultAffinityTimeout
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			b.affinity = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
		}
	}
	for _, sp := range svc.Spec.Ports {
		b.port(sp)
	}
	if len(b.g.Chains) == 0 && len(b.g.Elements) == 0 {
		return nil
	}
	return b.g
}

type serviceBuilder struct {
	node        Node
	svc         *corev1.Service
	slices      []*discoveryv1.EndpointSlice
	clusterIPs  []netip.Addr
	externalIPs []netip.Addr
	nodePorts   bool
	affinity    time.Duration
	g           *Group
}

// port adds the chains and map elements of one Service port.
func (b *serviceBuilder) port(sp corev1.ServicePort) {
	proto, ok := protoOf(sp.Protocol)
	if !ok || sp.Port <= 0 || sp.Port > 65535 {
		return
	}
	name := sp.Name
	if name == "" {
		name = strconv.Itoa(int(sp.Port))
	}
	id := fmt.Sprintf("%s/%s/%s/%s", b.svc.Namespace, b.svc.Name, proto, name)
	eps := categorize(endpointsFor(sp, b.slices, b.node.Name))

	internalLocal := b.svc.Spec.InternalTrafficPolicy != nil &&
		*b.svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
	externalLocal := b.svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	nodePort := uint16(0)
	if b.nodePorts && sp.NodePort > 0 && sp.NodePort <= 65535 {
		nodePort = uint16(sp.NodePort)
	}
	hasExternal := nodePort != 0 || len(b.externalIPs) > 0
	internal, external := eps.cluster, eps.cluster
	if internalLocal {
		internal = eps.local
	}
	if externalLocal {
		external = eps.local
	}

	clusterChain, localChain := prefixCluster+id, prefixLocal+id
	// Externally-Local Services still send host and pod clients to any
	// endpoint (see the ext- chain), so they need the cluster chain.
	needCluster := len(eps.cluster) > 0 && (!internalLocal || hasExternal)
	needLocal := len(eps.local) > 0 && (internalLocal || (hasExternal && externalLocal))
	chainFor := func(local bool) string {
		if local {
			return localChain
		}
		return clusterChain
	}

	// What to do with traffic that finds no endpoint: with endpoints
	// elsewhere only (a Local policy), drop it, as the client has no
	// business reaching this node; with none at all, refuse it at once.
	noEndpoints := gotoReject
	if eps.any {
		noEndpoints = dropVerdict
	}

	// ClusterIPs.
	svcChain := prefixService + id
	for _, ip := range b.clusterIPs {
		key := Key{Addr: ip, Proto: proto, Port: uint16(sp.Port)}
		if len(internal) == 0 {
			b.element(MapNoEndpointIPs, key, noEndpoints)
		} else {
			b.element(MapServiceIPs, key, Verdict{Kind: Goto, Chain: svcChain})
		}
	}
	if len(internal) > 0 {
		masq := Rule{jumpMarkMasq}
		if b.node.ClusterCIDR.IsValid() {
			masq = Rule{SaddrIn{Prefix: b.node.ClusterCIDR, Not: true}, jumpMarkMasq}
		}
		b.chain(svcChain, masq, Rule{Verdict{Kind: Goto, Chain: chainFor(internalLocal)}})
	}

	// Node ports and external addresses.
	if hasExternal {
		extChain := prefixExternal + id
		if len(external) > 0 || (externalLocal && len(eps.cluster) > 0) {
			to := Verdict{Kind: Goto, Chain: extChain}
			if nodePort != 0 {
				b.element(MapServiceNodePorts, Key{Proto: proto, Port: nodePort}, to)
			}
			for _, ip := range b.externalIPs {
				b.element(MapServiceIPs, Key{Addr: ip, Proto: proto, Port: uint16(sp.Port)}, to)
			}
			b.chain(extChain, b.externalRules(externalLocal, clusterChain, localChain, len(external) > 0)...)
		}
		if len(external) == 0 {
			if nodePort != 0 {
				b.element(MapNoEndpointNodePort, Key{Proto: proto, Port: nodePort}, noEndpoints)
			}
			for _, ip := range b.externalIPs {
				b.element(MapNoEndpointIPs, Key{Addr: ip, Proto: proto, Port: uint16(sp.Port)}, noEndpoints)
			}
		}
	}

	// Endpoint selection and the endpoints themselves.
	used := map[netip.AddrPort]endpoint{}
	if needCluster {
		b.pickChain(clusterChain, id, eps.cluster)
		for _, e := range eps.cluster {
			used[e.addrPort()] = e
		}
	}
	if needLocal {
		b.pickChain(localChain, id, eps.local)
		for _, e := range eps.local {
			used[e.addrPort()] = e
		}
	}
	for _, e := range eps.cluster {
		if _, ok := used[e.addrPort()]; ok {
			b.endpointChain(id, proto, e)
			delete(used, e.addrPort())
		}
	}
	for _, e := range eps.local {
		if _, ok := used[e.addrPort()]; ok {
			b.endpointChain(id, proto, e)
			delete(used, e.addrPort())
		}
	}
}

// externalRules is the ext- chain: traffic from outside is masqueraded so
// that replies come back through this node, unless the policy is Local,
// where the client's address is kept and only local endpoints serve.
// Even then, pods and the host itself may use any endpoint: they are not
// the outside clients the policy is about, and a node without a local
// endpoint would otherwise black-hole its own clients.
func (b *serviceBuilder) externalRules(local bool, clusterChain, localChain string, hasLocal bool) []Rule {
	if !local {
		return []Rule{{jumpMarkMasq}, {Verdict{Kind: Goto, Chain: clusterChain}}}
	}
	var rules []Rule
	if b.node.ClusterCIDR.IsValid() {
		rules = append(rules, Rule{SaddrIn{Prefix: b.node.ClusterCIDR}, Verdict{Kind: Goto, Chain: clusterChain}})
	}
	rules = append(rules,
		Rule{FibLocal{}, jumpMarkMasq},
		Rule{FibLocal{}, Verdict{Kind: Goto, Chain: clusterChain}},
	)
	if hasLocal {
		rules = append(rules, Rule{Verdict{Kind: Goto, Chain: localChain}})
	}
	// Without a local endpoint the packet falls through undisturbed and
	// the filter chains drop it (no-endpoint maps).
	return rules
}

// pickChain goes to one of eps: the one a client is bound to by session
// affinity, else one at random.
func (b *serviceBuilder) pickChain(name, id string, eps []endpoint) {
	var rules []Rule
	if b.affinity > 0 {
		for _, e := range eps {
			rules = append(rules, Rule{SaddrInSet{Set: endpointName(prefixAffinity, id, e)},
				Verdict{Kind: Goto, Chain: endpointName(prefixEndpoint, id, e)}})
		}
	}
	if len(eps) == 1 {
		rules = append(rules, Rule{Verdict{Kind: Goto, Chain: endpointName(prefixEndpoint, id, eps[0])}})
	} else {
		// The map is named after the chain (maps and chains have names of
		// their own).
		b.g.Sets = append(b.g.Sets, Set{Name: name, Key: KeyIndex, Verdicts: true})
		for i, e := range eps {
			b.element(name, Key{Index: uint32(i)}, Verdict{Kind: Goto, Chain: endpointName(prefixEndpoint, id, e)})
		}
		rules = append(rules, Rule{Numgen{N: len(eps), Map: name}})
	}
	b.chain(name, rules...)
}

// endpointChain DNATs to one endpoint. A pod that reaches its own Service
// and lands on itself is masqueraded (hairpin): else it would see a reply
// from its own address to a connection it made to the Service's.
func (b *serviceBuilder) endpointChain(id string, proto Proto, e endpoint) {
	rules := []Rule{{SaddrIn{Prefix: netip.PrefixFrom(e.addr, 32)}, jumpMarkMasq}}
	if b.affinity > 0 {
		set := endpointName(prefixAffinity, id, e)
		b.g.Sets = append(b.g.Sets, Set{Name: set, Key: KeyAddr, Timeout: b.affinity})
		rules = append(rules, Rule{UpdateSet{Set: set}})
	}
	rules = append(rules, Rule{DNAT{Proto: proto, Addr: e.addr, Port: e.port}})
	b.chain(endpointName(prefixEndpoint, id, e), rules...)
}

func (b *serviceBuilder) chain(name string, rules ...Rule) {
	b.g.Chains = append(b.g.Chains, Chain{Name: name, Rules: rules})
}

func (b *serviceBuilder) element(set string, key Key, v Verdict) {
	b.g.Elements = append(b.g.Elements, Element{Set: set, Key: key, Verdict: &v})
}

// endpointName names an endpoint's chain or affinity set. The "/" between
// address and port keeps the name parseable by nft, which ":" is not.
func endpointName(prefix, id string, e endpoint) string {
	return fmt.Sprintf("%s%s__%s/%d", prefix, id, e.addr, e.port)
}

func protoOf(p corev1.Protocol) (Proto, bool) {
	switch p {
	case corev1.ProtocolTCP, "":
		return TCP, true
	case corev1.ProtocolUDP:
		return UDP, true
	case corev1.ProtocolSCTP:
		return SCTP, true
	}
	return 0, false
}

// ipv4s parses the IPv4 addresses among ss, without duplicates.
func ipv4s(ss []string) []netip.Addr {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, s := range ss {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() || seen[a] {
			continue
		}
		seen[a] = true
		out = append(out, a)
	}
	return out
}
