package network

import (
	"maps"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// testNetns creates a throwaway network namespace holding a veth pair
// v0/v1 with 10.99.0.1/24 and fd00:99::1/64 on v0, so gateways in those
// subnets are reachable. The namespace has no name and no process: it
// vanishes when the returned handles are closed at cleanup.
func testNetns(t *testing.T) (netns.NsHandle, *netlink.Handle) {
	t.Helper()
	ns := newNetns(t)
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in test netns: %v", err)
	}
	t.Cleanup(h.Close)

	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "v0"}, PeerName: "v1"}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	v0, err := h.LinkByName("v0")
	if err != nil {
		t.Fatal(err)
	}
	v1, err := h.LinkByName("v1")
	if err != nil {
		t.Fatal(err)
	}
	for _, cidr := range []string{"10.99.0.1/24", "fd00:99::1/64"} {
		addr, err := netlink.ParseAddr(cidr)
		if err != nil {
			t.Fatal(err)
		}
		// No duplicate address detection: a tentative address would make
		// IPv6 gateways briefly unusable.
		addr.Flags = unix.IFA_F_NODAD
		if err := h.AddrAdd(v0, addr); err != nil {
			t.Fatalf("add address %s: %v", cidr, err)
		}
	}
	for _, l := range []netlink.Link{v0, v1} {
		if err := h.LinkSetUp(l); err != nil {
			t.Fatalf("set %s up: %v", l.Attrs().Name, err)
		}
	}
	return ns, h
}

// routesByProto returns dst → gateway for the main table's routes of proto.
func routesByProto(t *testing.T, h *netlink.Handle, proto netlink.RouteProtocol) map[string]string {
	t.Helper()
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL,
		&netlink.Route{Protocol: proto, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatalf("list routes: %v", err)
	}
	got := map[string]string{}
	for _, rt := range routes {
		got[rt.Dst.String()] = rt.Gw.String()
	}
	return got
}

// route builds a Route from text, keeping any host bits of dst (and a
// 16-byte form of IPv4 addresses) to exercise normalisation.
func route(t *testing.T, dst, via string) Route {
	t.Helper()
	ip, n, err := net.ParseCIDR(dst)
	if err != nil {
		t.Fatal(err)
	}
	return Route{Dst: &net.IPNet{IP: ip, Mask: n.Mask}, Via: net.ParseIP(via)}
}

func TestRoutesSync(t *testing.T) {
	_, h := testNetns(t)
	// A route of someone else's, which Sync must never touch.
	_, foreignDst, _ := net.ParseCIDR("10.60.0.0/24")
	if err := h.RouteAdd(&netlink.Route{Dst: foreignDst, Gw: net.ParseIP("10.99.0.9"), Protocol: unix.RTPROT_STATIC}); err != nil {
		t.Fatalf("add foreign route: %v", err)
	}
	foreign := map[string]string{"10.60.0.0/24": "10.99.0.9"}
	r := NewRoutes(h, nil)

	steps := []struct {
		name    string
		want    []Route
		wantErr bool
		// ours is the expected dst → gateway of proto-147 routes afterwards.
		ours map[string]string
	}{
		{
			name: "add IPv4 and IPv6 routes",
			want: []Route{
				route(t, "10.50.0.0/24", "10.99.0.2"),
				route(t, "10.51.0.0/24", "10.99.0.3"),
				route(t, "fd01::/64", "fd00:99::2"),
			},
			ours: map[string]string{"10.50.0.0/24": "10.99.0.2", "10.51.0.0/24": "10.99.0.3", "fd01::/64": "fd00:99::2"},
		},
		{
			name: "same set again changes nothing",
			want: []Route{
				route(t, "fd01::/64", "fd00:99::2"),
				route(t, "10.51.0.0/24", "10.99.0.3"),
				route(t, "10.50.0.0/24", "10.99.0.2"),
			},
			ours: map[string]string{"10.50.0.0/24": "10.99.0.2", "10.51.0.0/24": "10.99.0.3", "fd01::/64": "fd00:99::2"},
		},
		{
			name: "gateway changes",
			want: []Route{
				route(t, "10.50.0.0/24", "10.99.0.3"),
				route(t, "10.51.0.0/24", "10.99.0.3"),
				route(t, "fd01::/64", "fd00:99::3"),
			},
			ours: map[string]string{"10.50.0.0/24": "10.99.0.3", "10.51.0.0/24": "10.99.0.3", "fd01::/64": "fd00:99::3"},
		},
		{
			name: "routes no longer wanted are deleted",
			want: []Route{route(t, "10.50.0.0/24", "10.99.0.3")},
			ours: map[string]string{"10.50.0.0/24": "10.99.0.3"},
		},
		{
			name: "host bits in destination are masked",
			want: []Route{route(t, "10.50.0.0/24", "10.99.0.3"), route(t, "10.52.0.7/24", "10.99.0.2")},
			ours: map[string]string{"10.50.0.0/24": "10.99.0.3", "10.52.0.0/24": "10.99.0.2"},
		},
		{
			name:    "destination held by a foreign route is refused, the rest applied",
			want:    []Route{route(t, "10.50.0.0/24", "10.99.0.3"), route(t, "10.60.0.0/24", "10.99.0.2")},
			wantErr: true,
			ours:    map[string]string{"10.50.0.0/24": "10.99.0.3"},
		},
		{
			name:    "unreachable gateway fails",
			want:    []Route{route(t, "10.50.0.0/24", "10.99.0.3"), route(t, "10.53.0.0/24", "192.0.2.1")},
			wantErr: true,
			ours:    map[string]string{"10.50.0.0/24": "10.99.0.3"},
		},
		{
			name:    "duplicate destination is rejected before any change",
			want:    []Route{route(t, "10.54.0.0/24", "10.99.0.2"), route(t, "10.54.0.0/24", "10.99.0.3")},
			wantErr: true,
			ours:    map[string]string{"10.50.0.0/24": "10.99.0.3"},
		},
		{
			name:    "mixed families are rejected",
			want:    []Route{route(t, "10.55.0.0/24", "fd00:99::2")},
			wantErr: true,
			ours:    map[string]string{"10.50.0.0/24": "10.99.0.3"},
		},
		{
			name:    "missing gateway is rejected",
			want:    []Route{{Dst: route(t, "10.56.0.0/24", "10.99.0.2").Dst}},
			wantErr: true,
			ours:    map[string]string{"10.50.0.0/24": "10.99.0.3"},
		},
		{
			name: "empty set removes all of ours",
			want: nil,
			ours: map[string]string{},
		},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			err := r.Sync(s.want)
			if (err != nil) != s.wantErr {
				t.Fatalf("Sync error = %v, wantErr %v", err, s.wantErr)
			}
			if got := routesByProto(t, h, RouteProtocol); !maps.Equal(got, s.ours) {
				t.Errorf("skiff routes = %v, want %v", got, s.ours)
			}
			if got := routesByProto(t, h, unix.RTPROT_STATIC); !maps.Equal(got, foreign) {
				t.Errorf("foreign routes = %v, want %v untouched", got, foreign)
			}
			listed, err := r.List()
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			got := map[string]string{}
			for _, rt := range listed {
				got[rt.Dst.String()] = rt.Via.String()
			}
			if !maps.Equal(got, s.ours) {
				t.Errorf("List() = %v, want %v", got, s.ours)
			}
		})
	}
	if got := routesByProto(t, h, unix.RTPROT_KERNEL); got["10.99.0.0/24"] == "" {
		t.Errorf("connected route 10.99.0.0/24 vanished: %v", got)
	}
}

// TestRoutesCurrentNetns checks that a nil handle means the calling
// thread's namespace, by syncing from a thread switched into a test one.
func TestRoutesCurrentNetns(t *testing.T) {
	ns, h := testNetns(t)
	inNetns(t, ns, func() error {
		return NewRoutes(nil, nil).Sync([]Route{route(t, "10.70.0.0/16", "10.99.0.2")})
	})
	want := map[string]string{"10.70.0.0/16": "10.99.0.2"}
	if got := routesByProto(t, h, RouteProtocol); !maps.Equal(got, want) {
		t.Errorf("routes in test netns = %v, want %v", got, want)
	}
}
