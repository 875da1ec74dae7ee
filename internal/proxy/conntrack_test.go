package proxy

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestStaleUDPFlowMatch(t *testing.T) {
	ep := netip.MustParseAddr("10.244.2.2")
	u := udpTargets{
		vips:      map[netip.AddrPort]map[netip.Addr]bool{netip.MustParseAddrPort("10.43.0.10:53"): {ep: true}},
		nodePorts: map[uint16]map[netip.Addr]bool{30053: {ep: true}},
	}
	flow := func(proto uint8, dst string, dport uint16, replyFrom string) *netlink.ConntrackFlow {
		f := &netlink.ConntrackFlow{}
		f.Forward = netlink.IPTuple{Protocol: proto, SrcIP: net.ParseIP("10.244.1.2"), SrcPort: 40053, DstIP: net.ParseIP(dst), DstPort: dport}
		f.Reverse = netlink.IPTuple{Protocol: proto, SrcIP: net.ParseIP(replyFrom), DstIP: net.ParseIP("10.244.1.2"), DstPort: 40053}
		return f
	}
	tests := []struct {
		name string
		flow *netlink.ConntrackFlow
		want bool
	}{
		{"to a current endpoint stays", flow(unix.IPPROTO_UDP, "10.43.0.10", 53, "10.244.2.2"), false},
		{"to a gone endpoint goes", flow(unix.IPPROTO_UDP, "10.43.0.10", 53, "10.244.3.2"), true},
		{"rejected, not translated, goes", flow(unix.IPPROTO_UDP, "10.43.0.10", 53, "10.43.0.10"), true},
		{"node port to a gone endpoint goes", flow(unix.IPPROTO_UDP, "192.168.50.1", 30053, "10.244.3.2"), true},
		{"node port to a current endpoint stays", flow(unix.IPPROTO_UDP, "192.168.50.1", 30053, "10.244.2.2"), false},
		{"another port of the address stays", flow(unix.IPPROTO_UDP, "10.43.0.10", 54, "10.244.3.2"), false},
		{"TCP stays", flow(unix.IPPROTO_TCP, "10.43.0.10", 53, "10.244.3.2"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := u.MatchConntrackFlow(tt.flow); got != tt.want {
				t.Errorf("match = %v, want %v", got, tt.want)
			}
		})
	}
}
