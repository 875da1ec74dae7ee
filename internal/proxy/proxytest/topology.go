package proxytest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Topology is a node in its own network namespace, routing between
// "pods" and an outside client, each in a namespace of its own joined to
// the node by a veth pair (routed, no bridge: so every packet between two
// of them passes the node's netfilter hooks, as with most CNI plugins'
// point-to-point links).
//
//	client pod  10.244.1.2  ─ 10.244.1.1 ┐
//	endpoint 1  10.244.2.2  ─ 10.244.2.1 ├ node (forwarding; node IP 192.168.50.1)
//	endpoint 2  10.244.3.2  ─ 10.244.3.1 │
//	outside     192.168.50.2 ─ 192.168.50.1 ┘
//
// The pod range is 10.244.0.0/16. The node's default route points at the
// outside client: host processes need some route to a ClusterIP before
// the output hook's DNAT, and forwarded traffic to a Service without
// endpoints needs one to reach the forward hook that rejects it.
type Topology struct {
	Node, Client, Endpoint1, Endpoint2, Outside netns.NsHandle
}

// Addresses of the topology.
const (
	NodeIP      = "192.168.50.1"
	OutsideIP   = "192.168.50.2"
	ClientIP    = "10.244.1.2"
	Endpoint1IP = "10.244.2.2"
	Endpoint2IP = "10.244.3.2"
	ClusterCIDR = "10.244.0.0/16"
	// Gateway1 is the node's address on endpoint 1's link, the address
	// traffic masqueraded towards endpoint 1 comes from.
	Gateway1 = "10.244.2.1"
	Gateway2 = "10.244.3.1"
)

// NewTopology builds the namespaces and links; all are gone at cleanup.
func NewTopology(t testing.TB) *Topology {
	t.Helper()
	RequireRoot(t)
	tp := &Topology{Node: NewNetns(t), Client: NewNetns(t), Endpoint1: NewNetns(t),
		Endpoint2: NewNetns(t), Outside: NewNetns(t)}
	links := []struct {
		peer           netns.NsHandle
		name           string
		nodeIP, peerIP string
		bits           int
	}{
		{tp.Client, "vclient", "10.244.1.1", ClientIP, 24},
		{tp.Endpoint1, "vep1", Gateway1, Endpoint1IP, 24},
		{tp.Endpoint2, "vep2", Gateway2, Endpoint2IP, 24},
		{tp.Outside, "voutside", NodeIP, OutsideIP, 24},
	}
	node, err := netlink.NewHandleAt(tp.Node)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	for _, l := range links {
		if err := veth(node, l.peer, l.name, l.nodeIP, l.peerIP, l.bits); err != nil {
			t.Fatalf("link %s: %v", l.name, err)
		}
	}
	if err := node.RouteAdd(&netlink.Route{Gw: net.ParseIP(OutsideIP)}); err != nil {
		t.Fatalf("default route: %v", err)
	}
	InNetns(t, tp.Node, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	})
	return tp
}

// veth joins peer to the node and routes the peer's traffic through it.
func veth(node *netlink.Handle, peer netns.NsHandle, name, nodeIP, peerIP string, bits int) error {
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(peer))}
	if err := node.LinkAdd(v); err != nil {
		return err
	}
	l, err := node.LinkByName(name)
	if err != nil {
		return err
	}
	if err := node.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(nodeIP), Mask: net.CIDRMask(bits, 32)}}); err != nil {
		return err
	}
	if err := node.LinkSetUp(l); err != nil {
		return err
	}
	ph, err := netlink.NewHandleAt(peer)
	if err != nil {
		return err
	}
	defer ph.Close()
	pl, err := ph.LinkByName("eth0")
	if err != nil {
		return err
	}
	if err := ph.AddrAdd(pl, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(peerIP), Mask: net.CIDRMask(bits, 32)}}); err != nil {
		return err
	}
	if err := ph.LinkSetUp(pl); err != nil {
		return err
	}
	return ph.RouteAdd(&netlink.Route{Gw: net.ParseIP(nodeIP)})
}

// Serve answers every TCP connection to port in ns with one line, "name
// remote-address", and closes it. It stops at cleanup.
func Serve(t testing.TB, ns netns.NsHandle, port int, name string) {
	t.Helper()
	var ln net.Listener
	InNetns(t, ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
}

// Ask connects from ns to addr and returns the line the server said:
// which server answered, and the client address it saw.
func Ask(ns netns.NsHandle, addr string, timeout time.Duration) (server, seenFrom string, err error) {
	var c net.Conn
	if err := Do(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", addr, timeout)
		return err
	}); err != nil {
		return "", "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", "", fmt.Errorf("read from %s: %w", addr, err)
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		return "", "", errors.New("unexpected answer " + line)
	}
	return f[0], f[1], nil
}

// ServeUDP answers every datagram to port in ns with one, "name
// remote-address". It stops at cleanup.
func ServeUDP(t testing.TB, ns netns.NsHandle, port int, name string) {
	t.Helper()
	var pc net.PacketConn
	InNetns(t, ns, func() error {
		var err error
		pc, err = net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(fmt.Appendf(nil, "%s %s\n", name, from.(*net.UDPAddr).IP), from)
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		wg.Wait()
	})
}

// AskUDP sends one datagram from ns to addr and returns the answer, like
// Ask. A refused port shows as ECONNREFUSED, as the socket is connected.
func AskUDP(ns netns.NsHandle, addr string, timeout time.Duration) (server, seenFrom string, err error) {
	return AskUDPFrom(ns, 0, addr, timeout)
}

// AskUDPFrom is AskUDP from local port port (0: any), so that successive
// questions are one flow to conntrack, as a resolver's often are.
func AskUDPFrom(ns netns.NsHandle, port int, addr string, timeout time.Duration) (server, seenFrom string, err error) {
	var c net.Conn
	if err := Do(ns, func() error {
		var err error
		d := net.Dialer{LocalAddr: &net.UDPAddr{Port: port}}
		c, err = d.Dial("udp4", addr)
		return err
	}); err != nil {
		return "", "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("?")); err != nil {
		return "", "", err
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return "", "", fmt.Errorf("read from %s: %w", addr, err)
	}
	f := strings.Fields(string(buf[:n]))
	if len(f) != 2 {
		return "", "", errors.New("unexpected answer " + string(buf[:n]))
	}
	return f[0], f[1], nil
}
