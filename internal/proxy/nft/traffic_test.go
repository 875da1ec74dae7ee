package nft

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"

	"github.com/skiffhq/skiff/internal/proxy/proxytest"
	"github.com/skiffhq/skiff/internal/proxy/ruleset"
)

// TestTraffic sends real connections through the rules: pods, the node
// itself and an outside client reaching a Service whose endpoints change
// as the steps go, each step applied to the kernel as an Update.
func TestTraffic(t *testing.T) {
	tp := proxytest.NewTopology(t)
	proxytest.Serve(t, tp.Endpoint1, 8080, "ep1")
	proxytest.Serve(t, tp.Endpoint2, 8080, "ep2")
	node := ruleset.Node{
		Name:        "node-a",
		IPs:         []netip.Addr{netip.MustParseAddr(proxytest.NodeIP)},
		ClusterCIDR: netip.MustParsePrefix(proxytest.ClusterCIDR),
	}
	w, err := New(Config{Table: "skiff-proxy-traffic", NetNS: int(tp.Node), Logger: proxytest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	if err := w.Replace(map[string]*ruleset.Group{"": ruleset.Skeleton(node)}); err != nil {
		t.Fatal(err)
	}

	var (
		ep1        = proxytest.Endpoint{IP: proxytest.Endpoint1IP, Node: "node-a"}
		ep2        = proxytest.Endpoint{IP: proxytest.Endpoint2IP, Node: "node-b"}
		clusterIP  = "10.96.0.10:80"
		nodePort   = proxytest.NodeIP + ":30080"
		gateways   = map[string]bool{proxytest.Gateway1: true, proxytest.Gateway2: true}
		anyServer  = map[string]bool{"ep1": true, "ep2": true}
		onlyEP1    = map[string]bool{"ep1": true}
		onlyEP2    = map[string]bool{"ep2": true}
		clientSeen = map[string]bool{proxytest.ClientIP: true}
	)
	web := func(eps []proxytest.Endpoint, opts ...func(*corev1.Service)) *ruleset.Group {
		svc := proxytest.Service("default", "web", "10.96.0.10", 80, opts...)
		var slices []*discoveryv1.EndpointSlice
		if len(eps) > 0 {
			slices = append(slices, proxytest.Slice("default", "web", "web-1", 8080, eps...))
		}
		return ruleset.Service(node, svc, slices)
	}
	np := proxytest.NodePort(30080)

	// Each probe connects n times from one namespace and checks who
	// answered and which client address the server saw.
	type probe struct {
		from     string
		addr     string
		n        int
		servers  map[string]bool // allowed answers
		seen     map[string]bool // allowed client addresses seen
		all      bool            // every allowed server must answer
		same     bool            // one server must answer every time
		refused  bool            // the connection must be refused at once
		timesOut bool            // the connection must get no answer
	}
	steps := []struct {
		name   string
		group  *ruleset.Group
		probes []probe
	}{
		{
			name:  "ClusterIP spreads new connections over both endpoints",
			group: web([]proxytest.Endpoint{ep1, ep2}),
			probes: []probe{
				{from: "client", addr: clusterIP, n: 40, servers: anyServer, seen: clientSeen, all: true},
				// Not from the pod range: masqueraded, so that the reply
				// comes back through the node to be un-DNATed.
				{from: "node", addr: clusterIP, n: 10, servers: anyServer, seen: gateways},
				{from: "outside", addr: clusterIP, n: 10, servers: anyServer, seen: gateways},
			},
		},
		{
			name:   "an endpoint removed gets no new connections",
			group:  web([]proxytest.Endpoint{ep2}),
			probes: []probe{{from: "client", addr: clusterIP, n: 20, servers: onlyEP2, seen: clientSeen}},
		},
		{
			name:   "no endpoints: connections refused at once",
			group:  web(nil),
			probes: []probe{{from: "client", addr: clusterIP, n: 3, refused: true}, {from: "node", addr: clusterIP, n: 1, refused: true}},
		},
		{
			name:  "NodePort on the node address, masqueraded",
			group: web([]proxytest.Endpoint{ep1, ep2}, np),
			probes: []probe{
				{from: "outside", addr: nodePort, n: 30, servers: anyServer, seen: gateways, all: true},
				{from: "client", addr: nodePort, n: 5, servers: anyServer, seen: gateways},
				{from: "node", addr: nodePort, n: 5, servers: anyServer, seen: gateways},
			},
		},
		{
			name:   "NodePort without endpoints: refused",
			group:  web(nil, np),
			probes: []probe{{from: "outside", addr: nodePort, n: 2, refused: true}},
		},
		{
			name:  "NodePort with externalTrafficPolicy Local: local endpoints, client address kept",
			group: web([]proxytest.Endpoint{ep1, ep2}, np, proxytest.ExternalLocal),
			probes: []probe{
				{from: "outside", addr: nodePort, n: 20, servers: onlyEP1, seen: map[string]bool{proxytest.OutsideIP: true}},
				// Pods and the node itself may use any endpoint.
				{from: "client", addr: nodePort, n: 30, servers: anyServer, seen: clientSeen, all: true},
			},
		},
		{
			name:  "externalTrafficPolicy Local without a local endpoint drops outside clients only",
			group: web([]proxytest.Endpoint{ep2}, np, proxytest.ExternalLocal),
			probes: []probe{
				{from: "outside", addr: nodePort, n: 1, timesOut: true},
				{from: "node", addr: nodePort, n: 5, servers: onlyEP2, seen: map[string]bool{proxytest.Gateway2: true}},
			},
		},
		{
			name:  "hairpin: a pod reaching its own Service lands on itself, masqueraded",
			group: web([]proxytest.Endpoint{ep1}),
			probes: []probe{
				{from: "ep1", addr: clusterIP, n: 5, servers: onlyEP1, seen: map[string]bool{proxytest.Gateway1: true}},
			},
		},
		{
			name:  "ClientIP affinity keeps a client on one endpoint",
			group: web([]proxytest.Endpoint{ep1, ep2}, proxytest.Affinity(60)),
			probes: []probe{
				{from: "client", addr: clusterIP, n: 20, servers: anyServer, seen: clientSeen, same: true},
			},
		},
		{
			name:  "internalTrafficPolicy Local uses this node's endpoints",
			group: web([]proxytest.Endpoint{ep1, ep2}, proxytest.InternalLocal),
			probes: []probe{
				{from: "client", addr: clusterIP, n: 20, servers: onlyEP1, seen: clientSeen},
			},
		},
		{
			name:   "internalTrafficPolicy Local without a local endpoint drops",
			group:  web([]proxytest.Endpoint{ep2}, proxytest.InternalLocal),
			probes: []probe{{from: "client", addr: clusterIP, n: 1, timesOut: true}},
		},
	}
	from := map[string]netns.NsHandle{
		"client": tp.Client, "node": tp.Node, "outside": tp.Outside, "ep1": tp.Endpoint1,
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if err := w.Update(map[string]*ruleset.Group{"default/web": s.group}); err != nil {
				t.Fatal(err)
			}
			for _, p := range s.probes {
				ns := from[p.from]
				answered := map[string]int{}
				for range p.n {
					timeout := 3 * time.Second
					if p.timesOut {
						timeout = 300 * time.Millisecond
					}
					start := time.Now()
					server, seen, err := proxytest.Ask(ns, p.addr, timeout)
					switch {
					case p.refused:
						if !errors.Is(err, syscall.ECONNREFUSED) {
							t.Fatalf("%s → %s: got %v, want connection refused", p.from, p.addr, err)
						}
						if d := time.Since(start); d > time.Second {
							t.Fatalf("%s → %s: refused after %v, want < 1s", p.from, p.addr, d)
						}
						continue
					case p.timesOut:
						if err == nil || errors.Is(err, syscall.ECONNREFUSED) {
							t.Fatalf("%s → %s: got answer %q (err %v), want no answer", p.from, p.addr, server, err)
						}
						continue
					case err != nil:
						t.Fatalf("%s → %s: %v", p.from, p.addr, err)
					}
					if !p.servers[server] {
						t.Errorf("%s → %s: answered by %s, want one of %v", p.from, p.addr, server, p.servers)
					}
					if !p.seen[seen] {
						t.Errorf("%s → %s: server saw client %s, want one of %v", p.from, p.addr, seen, p.seen)
					}
					answered[server]++
				}
				if p.all && len(answered) != len(p.servers) {
					t.Errorf("%s → %s: answers %v, want every one of %v", p.from, p.addr, answered, p.servers)
				}
				if p.same && len(answered) != 1 {
					t.Errorf("%s → %s: answers %v, want one server every time", p.from, p.addr, answered)
				}
			}
		})
	}
}

// TestTrafficUDP checks datagrams: a UDP Service (as the cluster DNS is)
// answered by its endpoint, and refused at once without one.
func TestTrafficUDP(t *testing.T) {
	tp := proxytest.NewTopology(t)
	proxytest.ServeUDP(t, tp.Endpoint1, 5353, "ep1")
	node := ruleset.Node{Name: "node-a", IPs: []netip.Addr{netip.MustParseAddr(proxytest.NodeIP)},
		ClusterCIDR: netip.MustParsePrefix(proxytest.ClusterCIDR)}
	w, err := New(Config{Table: "skiff-proxy-udp", NetNS: int(tp.Node), Logger: proxytest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	dns := proxytest.Service("kube-system", "dns", "10.96.0.53", 53, func(s *corev1.Service) {
		s.Spec.Ports[0].Protocol = corev1.ProtocolUDP
	})
	slice := proxytest.Slice("kube-system", "dns", "dns-1", 5353, proxytest.Endpoint{IP: proxytest.Endpoint1IP})
	slice.Ports[0].Protocol = ptr.To(corev1.ProtocolUDP)

	tests := []struct {
		name    string
		slices  []*discoveryv1.EndpointSlice
		refused bool
	}{
		{name: "answered by the endpoint", slices: []*discoveryv1.EndpointSlice{slice}},
		{name: "refused without endpoints", refused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			groups := map[string]*ruleset.Group{"": ruleset.Skeleton(node), "kube-system/dns": ruleset.Service(node, dns, tt.slices)}
			if err := w.Replace(groups); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			server, seen, err := proxytest.AskUDP(tp.Client, "10.96.0.53:53", 3*time.Second)
			if tt.refused {
				if !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) > time.Second {
					t.Fatalf("got %v after %v, want connection refused within 1s", err, time.Since(start))
				}
				return
			}
			if err != nil || server != "ep1" || seen != proxytest.ClientIP {
				t.Fatalf("got %s (client seen as %s), err %v; want ep1 seeing %s", server, seen, err, proxytest.ClientIP)
			}
		})
	}
}
