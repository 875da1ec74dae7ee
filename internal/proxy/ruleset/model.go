// Package ruleset computes the nftables ruleset the service proxy wants in
// the kernel, from Services and EndpointSlices, without touching the
// kernel. The result is a small model of chains, sets, maps and rules that
// prints in nft's own syntax (so tests and logs read like `nft list`) and
// that package nft encodes into netlink messages.
//
// The ruleset is split into groups: one for the fixed skeleton (hooked
// chains, dispatch maps) and one per Service. A change to a Service
// rewrites only its group, which is what keeps an update small however
// many Services there are.
package ruleset

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Group is the part of the ruleset one owner writes: the skeleton, or one
// Service. Chains and Sets belong to it alone; Elements go into its own
// sets or into the skeleton's dispatch maps.
type Group struct {
	Chains   []Chain
	Sets     []Set
	Elements []Element
}

// Chain is a named chain; a Hook makes it a base chain.
type Chain struct {
	Name  string
	Hook  *Hook
	Rules []Rule
}

// Hook attaches a base chain to a netfilter hook.
type Hook struct {
	// Type is "nat" or "filter".
	Type string
	// Hook is "prerouting", "input", "forward", "output" or "postrouting".
	Hook     string
	Priority int32
}

// KeyType is what a set's elements are.
type KeyType int

// The key types the proxy uses.
const (
	// KeyAddr is an IPv4 address.
	KeyAddr KeyType = iota
	// KeyAddrProtoPort is daddr . l4proto . dport, how Services are found.
	KeyAddrProtoPort
	// KeyProtoPort is l4proto . dport, how node ports are found.
	KeyProtoPort
	// KeyIndex is a number, as numgen makes.
	KeyIndex
)

// String is the type as nft prints it.
func (k KeyType) String() string {
	switch k {
	case KeyAddr:
		return "ipv4_addr"
	case KeyAddrProtoPort:
		return "ipv4_addr . inet_proto . inet_service"
	case KeyProtoPort:
		return "inet_proto . inet_service"
	case KeyIndex:
		return "integer"
	}
	return fmt.Sprintf("KeyType(%d)", int(k))
}

// Set is a named set, or with Verdicts a verdict map.
type Set struct {
	Name     string
	Key      KeyType
	Verdicts bool
	// Timeout, when set, makes the set dynamic: packets add elements
	// (session affinity) and each lasts this long after its last update.
	Timeout time.Duration
}

// Key is an element's key; the fields its set's KeyType names are used.
type Key struct {
	Addr  netip.Addr
	Proto Proto
	Port  uint16
	Index uint32
}

// Format prints k as nft does for a set of type t.
func (k Key) Format(t KeyType) string {
	switch t {
	case KeyAddr:
		return k.Addr.String()
	case KeyAddrProtoPort:
		return fmt.Sprintf("%s . %s . %d", k.Addr, k.Proto, k.Port)
	case KeyProtoPort:
		return fmt.Sprintf("%s . %d", k.Proto, k.Port)
	case KeyIndex:
		return fmt.Sprint(k.Index)
	}
	return "?"
}

// Element is one element of a set or map: a skeleton's, which Services
// fill, or the Service's own. Verdict is set for maps.
type Element struct {
	Set     string
	Key     Key
	Verdict *Verdict
}

// Proto is an IP protocol number.
type Proto uint8

// The protocols Services use.
const (
	TCP  Proto = 6
	UDP  Proto = 17
	SCTP Proto = 132
)

// String is the protocol's name as nft prints it.
func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case SCTP:
		return "sctp"
	}
	return fmt.Sprintf("%d", uint8(p))
}

// Rule is a sequence of expressions: matches, then statements, then at
// most one verdict. Its String is its identity: two rules that print the
// same are the same rule.
type Rule []Expr

// String prints the rule as `nft list` does.
func (r Rule) String() string {
	parts := make([]string, len(r))
	for i, e := range r {
		parts[i] = e.String()
	}
	return strings.Join(parts, " ")
}

// Expr is one part of a rule. The concrete types below are all there is;
// package nft encodes each.
type Expr interface {
	String() string
	isExpr()
}

// SaddrIn matches the source address against a prefix (a /32 is an
// address), or with Not outside it.
type SaddrIn struct {
	Prefix netip.Prefix
	Not    bool
}

// DaddrIn matches the destination address like SaddrIn.
type DaddrIn struct {
	Prefix netip.Prefix
	Not    bool
}

// SaddrInSet matches a source address that is in a set.
type SaddrInSet struct{ Set string }

// DaddrInSet matches a destination address that is in a set.
type DaddrInSet struct{ Set string }

// FibLocal matches a packet whose source (or, with Daddr, destination)
// address is one of this host's.
type FibLocal struct{ Daddr bool }

// CtNew matches the first packet of a connection.
type CtNew struct{}

// MarkUnset matches a packet without the given mark bit.
type MarkUnset struct{ Bit uint32 }

// MarkSet sets a mark bit.
type MarkSet struct{ Bit uint32 }

// MarkClear clears a mark bit the packet is known to have (by flipping
// it: nft's own idiom, one bitwise operation).
type MarkClear struct{ Bit uint32 }

// Dispatch looks the packet up in a verdict map keyed by
// daddr . l4proto . dport (or, with NoAddr, l4proto . dport).
type Dispatch struct {
	Map    string
	NoAddr bool
}

// UpdateSet adds the source address to a dynamic set, or refreshes its
// timeout.
type UpdateSet struct{ Set string }

// DNAT rewrites the destination of a packet of protocol Proto.
type DNAT struct {
	Proto Proto
	Addr  netip.Addr
	Port  uint16
}

// Masquerade rewrites the source to the outgoing interface's address,
// with fully random source ports so that many clients masqueraded to one
// address do not collide on ports.
type Masquerade struct{}

// Reject answers with ICMP port unreachable, which TCP clients see as
// "connection refused" at once.
type Reject struct{}

// Numgen goes to one of N chains chosen at random, evenly, through a
// verdict map from 0..N-1 to the chains.
//
// The map is a named one of the group's, not an anonymous one in the
// rule as nft would write it: the kernel binds each anonymous set to its
// rule by searching the whole transaction, which made a batch of a
// thousand of them quadratic (seconds instead of a fraction of one).
type Numgen struct {
	N   int
	Map string
}

// VerdictKind is what a Verdict does.
type VerdictKind int

// The verdicts the proxy uses.
const (
	Jump VerdictKind = iota
	Goto
	Return
	Drop
)

// Verdict ends a rule; Chain is the target of Jump and Goto.
type Verdict struct {
	Kind  VerdictKind
	Chain string
}

func (SaddrIn) isExpr()    {}
func (DaddrIn) isExpr()    {}
func (SaddrInSet) isExpr() {}
func (DaddrInSet) isExpr() {}
func (FibLocal) isExpr()   {}
func (CtNew) isExpr()      {}
func (MarkUnset) isExpr()  {}
func (MarkSet) isExpr()    {}
func (MarkClear) isExpr()  {}
func (Dispatch) isExpr()   {}
func (UpdateSet) isExpr()  {}
func (DNAT) isExpr()       {}
func (Masquerade) isExpr() {}
func (Reject) isExpr()     {}
func (Numgen) isExpr()     {}
func (Verdict) isExpr()    {}

func prefixString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

func notString(not bool) string {
	if not {
		return "!= "
	}
	return ""
}

// String prints the SaddrIn expression as nft does.
func (e SaddrIn) String() string { return "ip saddr " + notString(e.Not) + prefixString(e.Prefix) }

// String prints the DaddrIn expression as nft does.
func (e DaddrIn) String() string { return "ip daddr " + notString(e.Not) + prefixString(e.Prefix) }

// String prints the SaddrInSet expression as nft does.
func (e SaddrInSet) String() string { return "ip saddr @" + e.Set }

// String prints the DaddrInSet expression as nft does.
func (e DaddrInSet) String() string { return "ip daddr @" + e.Set }

// String prints the FibLocal expression as nft does.
func (e FibLocal) String() string {
	if e.Daddr {
		return "fib daddr type local"
	}
	return "fib saddr type local"
}

// String prints the CtNew expression as nft does.
func (CtNew) String() string { return "ct state new" }

// String prints the MarkUnset expression as nft does.
func (e MarkUnset) String() string {
	return fmt.Sprintf("meta mark & 0x%08x == 0x00000000", e.Bit)
}

// String prints the MarkSet expression as nft does.
func (e MarkSet) String() string { return fmt.Sprintf("meta mark set meta mark | 0x%08x", e.Bit) }

// String prints the MarkClear expression as nft does.
func (e MarkClear) String() string { return fmt.Sprintf("meta mark set meta mark ^ 0x%08x", e.Bit) }

// String prints the Dispatch expression as nft does.
func (e Dispatch) String() string {
	if e.NoAddr {
		return "meta l4proto . th dport vmap @" + e.Map
	}
	return "ip daddr . meta l4proto . th dport vmap @" + e.Map
}

// String prints the UpdateSet expression as nft does.
func (e UpdateSet) String() string { return "update @" + e.Set + " { ip saddr }" }

// String prints the DNAT expression as nft does.
func (e DNAT) String() string {
	return fmt.Sprintf("meta l4proto %s dnat to %s", e.Proto, netip.AddrPortFrom(e.Addr, e.Port))
}

// String prints the Masquerade expression as nft does.
func (Masquerade) String() string { return "masquerade fully-random" }

// String prints the Reject expression as nft does.
func (Reject) String() string { return "reject" }

// String prints the Numgen expression as nft does.
func (e Numgen) String() string { return fmt.Sprintf("numgen random mod %d vmap @%s", e.N, e.Map) }

// String prints the verdict as nft does.
func (v Verdict) String() string {
	switch v.Kind {
	case Jump:
		return "jump " + v.Chain
	case Goto:
		return "goto " + v.Chain
	case Return:
		return "return"
	case Drop:
		return "drop"
	}
	return fmt.Sprintf("verdict(%d)", int(v.Kind))
}
