package network

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// MasqueradeTable names the nftables table (family ip or ip6, after the
// pod CIDR) in which SyncMasquerade keeps its one rule.
const MasqueradeTable = "skiff-pod-egress"

// Multicast is never masqueraded: a multicast group is not a host that
// would answer the pod, and rewriting the source breaks group protocols.
var (
	multicast4 = netip.MustParsePrefix("224.0.0.0/4")
	multicast6 = netip.MustParsePrefix("ff00::/8")
)

// SyncMasquerade makes the node masquerade traffic from its pods
// (podCIDR) to addresses outside the cluster's pod network (clusterCIDR),
// so that hosts beyond the cluster, which have no routes to pod CIDRs,
// can answer. Pod-to-pod traffic across nodes keeps its source address,
// as the Kubernetes network model requires. An invalid clusterCIDR (the
// zero Prefix) falls back to podCIDR: only the node's own pods are then
// reached unmasqueraded.
//
// The node-wide rule replaces the bridge plugin's ipMasq, which adds an
// iptables chain per pod, masquerades everything outside the node's own
// subnet, and costs several iptables runs in every sandbox's set-up and
// tear-down.
//
// The table is replaced in one netlink batch, so the rule is never absent
// while it changes. conn picks the network namespace; nil means the
// calling thread's.
func SyncMasquerade(conn *nftables.Conn, podCIDR, clusterCIDR netip.Prefix) error {
	if !podCIDR.IsValid() {
		return errors.New("masquerade: pod CIDR is required")
	}
	podCIDR = podCIDR.Masked()
	if !clusterCIDR.IsValid() {
		clusterCIDR = podCIDR
	}
	clusterCIDR = clusterCIDR.Masked()
	v4 := podCIDR.Addr().Is4()
	if clusterCIDR.Addr().Is4() != v4 {
		return fmt.Errorf("masquerade: pod CIDR %s and cluster CIDR %s are of different IP families", podCIDR, clusterCIDR)
	}
	conn, err := connOrNew(conn)
	if err != nil {
		return err
	}
	// Source and destination address offsets in the network header.
	family, src, dst, multicast := nftables.TableFamilyIPv4, uint32(12), uint32(16), multicast4
	if !v4 {
		family, src, dst, multicast = nftables.TableFamilyIPv6, 8, 24, multicast6
	}
	table := &nftables.Table{Family: family, Name: MasqueradeTable}
	// Adding an existing table is a no-op, so the delete that follows
	// cannot fail on a first run; both happen with the rest or not at all.
	conn.AddTable(table)
	conn.DelTable(table)
	conn.AddTable(table)
	chain := conn.AddChain(&nftables.Chain{
		Name:     "postrouting",
		Table:    table,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource,
	})
	var exprs []expr.Any
	exprs = append(exprs, prefixMatch(src, podCIDR, false)...)
	exprs = append(exprs, prefixMatch(dst, clusterCIDR, true)...)
	exprs = append(exprs, prefixMatch(dst, multicast, true)...)
	// Fully random source ports, as Kubernetes proxies masquerade: many
	// pods behind one address must not collide on ports.
	exprs = append(exprs, &expr.Masq{FullyRandom: true})
	conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: exprs})
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("masquerade %s to outside %s: %w", podCIDR, clusterCIDR, err)
	}
	return nil
}

// EnsureMasquerade restores the masquerade when its table is missing
// (after an `nft flush ruleset`, say) and otherwise leaves it alone, so a
// periodic resync costs one table lookup. SyncMasquerade is for changes.
func EnsureMasquerade(conn *nftables.Conn, podCIDR, clusterCIDR netip.Prefix) error {
	conn, err := connOrNew(conn)
	if err != nil {
		return err
	}
	family := nftables.TableFamilyIPv4
	if podCIDR.Addr().Is6() {
		family = nftables.TableFamilyIPv6
	}
	_, err = conn.ListTableOfFamily(MasqueradeTable, family)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("masquerade: look up table %s: %w", MasqueradeTable, err)
	}
	return SyncMasquerade(conn, podCIDR, clusterCIDR)
}

// prefixMatch compares the address at offset in the network header with p
// (equal, or not equal when not is set).
func prefixMatch(offset uint32, p netip.Prefix, not bool) []expr.Any {
	addr := p.Addr().AsSlice()
	n := uint32(len(addr))
	out := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: n}}
	if bits := p.Bits(); bits < len(addr)*8 {
		m := make([]byte, n)
		for i := range bits {
			m[i/8] |= 0x80 >> (i % 8)
		}
		out = append(out, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: m, Xor: make([]byte, n)})
	}
	op := expr.CmpOpEq
	if not {
		op = expr.CmpOpNeq
	}
	return append(out, &expr.Cmp{Op: op, Register: 1, Data: addr})
}

// connOrNew returns conn, or a connection in the calling thread's network
// namespace when conn is nil.
func connOrNew(conn *nftables.Conn) (*nftables.Conn, error) {
	if conn != nil {
		return conn, nil
	}
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("masquerade: %w", err)
	}
	return conn, nil
}
