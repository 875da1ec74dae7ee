package ruleset

import "net/netip"

// Node is what the ruleset needs to know about the node it runs on.
type Node struct {
	// Name is compared with endpoints' nodeName to find local endpoints.
	Name string
	// IPs are the IPv4 addresses node ports answer on. With none, node
	// ports answer on every local address but loopback.
	IPs []netip.Addr
	// ClusterCIDR is the pods' range: traffic from outside it to a
	// ClusterIP is masqueraded, so that replies come back through this
	// node. When unknown (the zero Prefix), all ClusterIP traffic is.
	ClusterCIDR netip.Prefix
}

// MasqueradeBit is the packet mark bit that asks the postrouting chain to
// masquerade a connection. It is the bit Kubernetes proxies have always
// used, so that tools which know that convention read our packets right.
const MasqueradeBit = 0x4000

// Names of the skeleton's chains and maps.
const (
	ChainNATPrerouting    = "nat-prerouting"
	ChainNATOutput        = "nat-output"
	ChainNATPostrouting   = "nat-postrouting"
	ChainFilterInput      = "filter-input"
	ChainFilterForward    = "filter-forward"
	ChainFilterOutput     = "filter-output"
	ChainServices         = "services"
	ChainMasquerading     = "masquerading"
	ChainMarkMasquerade   = "mark-for-masquerade"
	ChainEndpointsCheck   = "endpoints-check"
	ChainReject           = "reject-chain"
	MapServiceIPs         = "service-ips"
	MapServiceNodePorts   = "service-nodeports"
	MapNoEndpointIPs      = "no-endpoint-services"
	MapNoEndpointNodePort = "no-endpoint-nodeports"
	SetNodePortIPs        = "nodeport-ips"
)

// Hook priorities. NAT chains sit at the standard dstnat and srcnat
// priorities. The filter chains that reject traffic to Services without
// endpoints run just before the standard filter priority, so that a
// host firewall's accept rules cannot let such traffic on to time out.
const (
	PriorityDstNAT = -100
	PrioritySrcNAT = 100
	PriorityFilter = -10
)

var (
	jumpMarkMasq = Verdict{Kind: Jump, Chain: ChainMarkMasquerade}
	gotoReject   = Verdict{Kind: Goto, Chain: ChainReject}
	dropVerdict  = Verdict{Kind: Drop}
	loopback     = netip.MustParsePrefix("127.0.0.0/8")
)

// Skeleton is the fixed part of the ruleset: hooked chains that send
// packets to the dispatch maps, which Service groups fill.
//
// New connections to a ClusterIP (or external IP) are DNATed in the
// prerouting (pods, outside clients) and output (host processes) hooks,
// found in service-ips by address, protocol and port; connections to a
// node port on a node address are found in service-nodeports. Services
// without endpoints have no entry there but one in the no-endpoint maps,
// which the filter chains consult to reject (or, for a Local policy with
// endpoints only elsewhere, drop) the connection's first packet.
// Connections marked on the way are masqueraded in postrouting.
func Skeleton(node Node) *Group {
	nodePorts := func(m string) Rule {
		if len(node.IPs) == 0 {
			return Rule{FibLocal{Daddr: true}, DaddrIn{Prefix: loopback, Not: true}, Dispatch{Map: m, NoAddr: true}}
		}
		return Rule{DaddrInSet{Set: SetNodePortIPs}, Dispatch{Map: m, NoAddr: true}}
	}
	checkNew := []Rule{{CtNew{}, Verdict{Kind: Jump, Chain: ChainEndpointsCheck}}}
	g := &Group{
		Chains: []Chain{
			{Name: ChainNATPrerouting, Hook: &Hook{Type: "nat", Hook: "prerouting", Priority: PriorityDstNAT},
				Rules: []Rule{{Verdict{Kind: Jump, Chain: ChainServices}}}},
			{Name: ChainNATOutput, Hook: &Hook{Type: "nat", Hook: "output", Priority: PriorityDstNAT},
				Rules: []Rule{{Verdict{Kind: Jump, Chain: ChainServices}}}},
			{Name: ChainNATPostrouting, Hook: &Hook{Type: "nat", Hook: "postrouting", Priority: PrioritySrcNAT},
				Rules: []Rule{{Verdict{Kind: Jump, Chain: ChainMasquerading}}}},
			// Reject only works in the input, forward and output hooks on
			// older kernels, and by then a Service with endpoints has been
			// DNATed away from its address, so only those without match.
			{Name: ChainFilterInput, Hook: &Hook{Type: "filter", Hook: "input", Priority: PriorityFilter}, Rules: checkNew},
			{Name: ChainFilterForward, Hook: &Hook{Type: "filter", Hook: "forward", Priority: PriorityFilter}, Rules: checkNew},
			{Name: ChainFilterOutput, Hook: &Hook{Type: "filter", Hook: "output", Priority: PriorityFilter}, Rules: checkNew},
			{Name: ChainServices, Rules: []Rule{
				{Dispatch{Map: MapServiceIPs}},
				nodePorts(MapServiceNodePorts),
			}},
			{Name: ChainEndpointsCheck, Rules: []Rule{
				{Dispatch{Map: MapNoEndpointIPs}},
				nodePorts(MapNoEndpointNodePort),
			}},
			{Name: ChainMasquerading, Rules: []Rule{
				{MarkUnset{Bit: MasqueradeBit}, Verdict{Kind: Return}},
				// Clear the bit so that a packet re-entering the stack
				// (encapsulated, say) is not masqueraded twice.
				{MarkClear{Bit: MasqueradeBit}},
				{Masquerade{}},
			}},
			{Name: ChainMarkMasquerade, Rules: []Rule{{MarkSet{Bit: MasqueradeBit}}}},
			{Name: ChainReject, Rules: []Rule{{Reject{}}}},
		},
		Sets: []Set{
			{Name: MapServiceIPs, Key: KeyAddrProtoPort, Verdicts: true},
			{Name: MapServiceNodePorts, Key: KeyProtoPort, Verdicts: true},
			{Name: MapNoEndpointIPs, Key: KeyAddrProtoPort, Verdicts: true},
			{Name: MapNoEndpointNodePort, Key: KeyProtoPort, Verdicts: true},
		},
	}
	if len(node.IPs) > 0 {
		g.Sets = append(g.Sets, Set{Name: SetNodePortIPs, Key: KeyAddr})
		for _, ip := range node.IPs {
			g.Elements = append(g.Elements, Element{Set: SetNodePortIPs, Key: Key{Addr: ip}})
		}
	}
	return g
}
