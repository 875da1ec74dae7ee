package ruleset_test

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"

	"github.com/skiffhq/skiff/internal/proxy/proxytest"
	"github.com/skiffhq/skiff/internal/proxy/ruleset"
)

var node = ruleset.Node{
	Name:        "node-a",
	IPs:         []netip.Addr{netip.MustParseAddr("192.168.50.1")},
	ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"),
}

// rendered is a group as text: chains' rules, "set key : verdict"
// elements and "name type timeout" sets, each sorted where order does not
// matter to the kernel.
type rendered struct {
	chains   map[string][]string
	elements []string
	sets     []string
}

func render(g *ruleset.Group) rendered {
	r := rendered{chains: map[string][]string{}}
	if g == nil {
		return r
	}
	types := map[string]ruleset.KeyType{
		ruleset.MapServiceIPs: ruleset.KeyAddrProtoPort, ruleset.MapNoEndpointIPs: ruleset.KeyAddrProtoPort,
		ruleset.MapServiceNodePorts: ruleset.KeyProtoPort, ruleset.MapNoEndpointNodePort: ruleset.KeyProtoPort,
	}
	for _, s := range g.Sets {
		types[s.Name] = s.Key
	}
	for _, c := range g.Chains {
		rules := []string{}
		for _, rule := range c.Rules {
			rules = append(rules, rule.String())
		}
		r.chains[c.Name] = rules
	}
	for _, e := range g.Elements {
		r.elements = append(r.elements, fmt.Sprintf("%s %s : %s", e.Set, e.Key.Format(types[e.Set]), e.Verdict))
	}
	for _, s := range g.Sets {
		r.sets = append(r.sets, fmt.Sprintf("%s %s %s", s.Name, s.Key, s.Timeout))
	}
	slices.Sort(r.elements)
	slices.Sort(r.sets)
	return r
}

// Names used below.
const (
	svc      = "svc-default/web/tcp/http"
	ext      = "ext-default/web/tcp/http"
	cluster  = "cluster-default/web/tcp/http"
	local    = "local-default/web/tcp/http"
	ep1      = "ep-default/web/tcp/http__10.244.1.5/8080"
	ep2      = "ep-default/web/tcp/http__10.244.2.6/8080"
	ep3      = "ep-default/web/tcp/http__10.244.3.7/8080"
	markMasq = "jump mark-for-masquerade"
)

// pick12 are the elements of the map picking ep1 or ep2 at random.
var pick12 = []string{cluster + " 0 : goto " + ep1, cluster + " 1 : goto " + ep2}

var (
	local1  = proxytest.Endpoint{IP: "10.244.1.5", Node: "node-a"}
	remote2 = proxytest.Endpoint{IP: "10.244.2.6", Node: "node-b"}
	remote3 = proxytest.Endpoint{IP: "10.244.3.7", Node: "node-c"}
)

func web(opts ...func(*corev1.Service)) *corev1.Service {
	return proxytest.Service("default", "web", "10.96.0.10", 80, opts...)
}

func slice(eps ...proxytest.Endpoint) *discoveryv1.EndpointSlice {
	return proxytest.Slice("default", "web", "web-abc", 8080, eps...)
}

func dnatChain(ip string) []string {
	return []string{"ip saddr " + ip + " " + markMasq, "meta l4proto tcp dnat to " + ip + ":8080"}
}

func TestService(t *testing.T) {
	tests := []struct {
		name   string
		node   ruleset.Node
		svc    *corev1.Service
		slices []*discoveryv1.EndpointSlice
		want   rendered
		isNil  bool
	}{
		{
			name:   "ClusterIP with two ready endpoints picks one at random",
			svc:    web(),
			slices: []*discoveryv1.EndpointSlice{slice(local1, remote2)},
			want: rendered{
				chains: map[string][]string{
					svc:     {"ip saddr != 10.244.0.0/16 " + markMasq, "goto " + cluster},
					cluster: {"numgen random mod 2 vmap @" + cluster},
					ep1:     dnatChain("10.244.1.5"),
					ep2:     dnatChain("10.244.2.6"),
				},
				elements: append(pick12, "service-ips 10.96.0.10 . tcp . 80 : goto "+svc),
				sets:     []string{cluster + " integer 0s"},
			},
		},
		{
			name:   "one endpoint needs no random choice",
			svc:    web(),
			slices: []*discoveryv1.EndpointSlice{slice(remote2)},
			want: rendered{
				chains: map[string][]string{
					svc:     {"ip saddr != 10.244.0.0/16 " + markMasq, "goto " + cluster},
					cluster: {"goto " + ep2},
					ep2:     dnatChain("10.244.2.6"),
				},
				elements: []string{"service-ips 10.96.0.10 . tcp . 80 : goto " + svc},
			},
		},
		{
			name:   "unknown pod range masquerades all ClusterIP traffic",
			node:   ruleset.Node{Name: "node-a"},
			svc:    web(),
			slices: []*discoveryv1.EndpointSlice{slice(remote2)},
			want: rendered{
				chains: map[string][]string{
					svc:     {markMasq, "goto " + cluster},
					cluster: {"goto " + ep2},
					ep2:     dnatChain("10.244.2.6"),
				},
				elements: []string{"service-ips 10.96.0.10 . tcp . 80 : goto " + svc},
			},
		},
		{
			name: "no endpoints: rejected",
			svc:  web(),
			want: rendered{chains: map[string][]string{},
				elements: []string{"no-endpoint-services 10.96.0.10 . tcp . 80 : goto reject-chain"}},
		},
		{
			name:   "not-ready endpoints are skipped",
			svc:    web(),
			slices: []*discoveryv1.EndpointSlice{slice(remote2, proxytest.Endpoint{IP: "10.244.3.7", NotReady: true})},
			want: rendered{
				chains: map[string][]string{
					svc:     {"ip saddr != 10.244.0.0/16 " + markMasq, "goto " + cluster},
					cluster: {"goto " + ep2},
					ep2:     dnatChain("10.244.2.6"),
				},
				elements: []string{"service-ips 10.96.0.10 . tcp . 80 : goto " + svc},
			},
		},
		{
			name: "only terminating endpoints: the serving ones still answer",
			svc:  web(),
			slices: []*discoveryv1.EndpointSlice{slice(
				proxytest.Endpoint{IP: "10.244.2.6", NotReady: true, Terminating: true},
				proxytest.Endpoint{IP: "10.244.3.7", NotReady: true, Terminating: true, NotServing: true})},
			want: rendered{
				chains: map[string][]string{
					svc:     {"ip saddr != 10.244.0.0/16 " + markMasq, "goto " + cluster},
					cluster: {"goto " + ep2},
					ep2:     dnatChain("10.244.2.6"),
				},
				elements: []string{"service-ips 10.96.0.10 . tcp . 80 : goto " + svc},
			},
		},
		{
			name:   "terminating endpoints are not used while ready ones exist",
			svc:    web(),
			slices: []*discoveryv1.EndpointSlice{slice(remote3, proxytest.Endpoint{IP: "10.244.2.6", NotReady: true, Terminating: true})},
			want: rendered{
				chains: map[string][]string{
					svc:     {"ip saddr != 10.244.0.0/16 " + markMasq, "goto " + cluster},
					cluster: {"goto " + ep3},
					ep3:     dnatChain("10.244.3.7"),
				},
				elements: []string{"service-ips 10.96.0.10 . tcp . 80 : goto " + svc},
			},
		},
		{
			name: "an endpoint in two slices counts once",
			svc:  web(),
			slices: []*discoveryv1.EndpointSlice{slice(remote2),
				proxytest.Slice("default", "web", "web-def", 8080, remote2)},
			want: rendered{
				chains: map[string][]string{
					svc:     {"ip saddr != 10.244.0.0/16 " + markMasq, "goto " + cluster},
					cluster: {"goto " + ep2},
					ep2:     dnatChain("10.244.2.6"),
				},
				elements: []string{"service-ips 10.96.0.10 . tcp . 80 : goto " + svc},
			},
		},
		{
			name:   "a slice port of another name does not serve the port",
			svc:    web(),
			slices: []*discoveryv1.EndpointSlice{renamePort(slice(remote2), "metrics")},
			want: rendered{chains: map[string][]string{},
				elements: []string{"no-endpoint-services 10.96.0.10 . tcp . 80 : goto reject-chain"}},
		},
		{
			name:   "internalTrafficPolicy Local uses only this node's endpoints",
			svc:    web(proxytest.InternalLocal),
			slices: []*discoveryv1.EndpointSlice{slice(local1, remote2)},
			want: rendered{
				chains: map[string][]string{
					svc:   {"ip saddr != 10.244.0.0/16 " + markMasq, "goto " + local},
					local: {"goto " + ep1},
					ep1:   dnatChain("10.244.1.5"),
				},
				elements: []string{"service-ips 10.96.0.10 . tcp . 80 : goto " + svc},
			},
		},
		{
			name:   "internalTrafficPolicy Local without local endpoints drops",
			svc:    web(proxytest.InternalLocal),
			slices: []*discoveryv1.EndpointSlice{slice(remote2)},
			want: rendered{chains: map[string][]string{},
				elements: []string{"no-endpoint-services 10.96.0.10 . tcp . 80 : drop"}},
		},
		{
			name:   "NodePort masquerades and uses every endpoint",
			svc:    web(proxytest.NodePort(30080)),
			slices: []*discoveryv1.EndpointSlice{slice(remote2)},
			want: rendered{
				chains: map[string][]string{
					svc:     {"ip saddr != 10.244.0.0/16 " + markMasq, "goto " + cluster},
					ext:     {markMasq, "goto " + cluster},
					cluster: {"goto " + ep2},
					ep2:     dnatChain("10.244.2.6"),
				},
				elements: []string{
					"service-ips 10.96.0.10 . tcp . 80 : goto " + svc,
					"service-nodeports tcp . 30080 : goto " + ext,
				},
			},
		},
		{
			name:   "NodePort without endpoints is rejected",
			svc:    web(proxytest.NodePort(30080)),
			slices: nil,
			want: rendered{chains: map[string][]string{},
				elements: []string{
					"no-endpoint-nodeports tcp . 30080 : goto reject-chain",
					"no-endpoint-services 10.96.0.10 . tcp . 80 : goto reject-chain",
				},
			},
		},
		{
			name:   "externalTrafficPolicy Local keeps the client address and uses local endpoints",
			svc:    web(proxytest.NodePort(30080), proxytest.ExternalLocal),
			slices: []*discoveryv1.EndpointSlice{slice(local1, remote2)},
			want: rendered{
				chains: map[string][]string{
					svc: {"ip saddr != 10.244.0.0/16 " + markMasq, "goto " + cluster},
					ext: {
						"ip saddr 10.244.0.0/16 goto " + cluster,
						"fib saddr type local " + markMasq,
						"fib saddr type local goto " + cluster,
						"goto " + local,
					},
					cluster: {"numgen random mod 2 vmap @" + cluster},
					local:   {"goto " + ep1},
					ep1:     dnatChain("10.244.1.5"),
					ep2:     dnatChain("10.244.2.6"),
				},
				elements: append(pick12,
					"service-ips 10.96.0.10 . tcp . 80 : goto "+svc,
					"service-nodeports tcp . 30080 : goto "+ext,
				),
				sets: []string{cluster + " integer 0s"},
			},
		},
		{
			name:   "externalTrafficPolicy Local without local endpoints drops outside clients",
			svc:    web(proxytest.NodePort(30080), proxytest.ExternalLocal),
			slices: []*discoveryv1.EndpointSlice{slice(remote2)},
			want: rendered{
				chains: map[string][]string{
					svc: {"ip saddr != 10.244.0.0/16 " + markMasq, "goto " + cluster},
					ext: {
						"ip saddr 10.244.0.0/16 goto " + cluster,
						"fib saddr type local " + markMasq,
						"fib saddr type local goto " + cluster,
					},
					cluster: {"goto " + ep2},
					ep2:     dnatChain("10.244.2.6"),
				},
				elements: []string{
					"no-endpoint-nodeports tcp . 30080 : drop",
					"service-ips 10.96.0.10 . tcp . 80 : goto " + svc,
					"service-nodeports tcp . 30080 : goto " + ext,
				},
			},
		},
		{
			name: "LoadBalancer: node port and ingress IP, but not a Proxy-mode one",
			svc: web(proxytest.NodePort(30080), func(s *corev1.Service) {
				s.Spec.Type = corev1.ServiceTypeLoadBalancer
				s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.9"},
					{IP: "203.0.113.10", IPMode: ptr.To(corev1.LoadBalancerIPModeProxy)}}
			}),
			slices: []*discoveryv1.EndpointSlice{slice(remote2)},
			want: rendered{
				chains: map[string][]string{
					svc:     {"ip saddr != 10.244.0.0/16 " + markMasq, "goto " + cluster},
					ext:     {markMasq, "goto " + cluster},
					cluster: {"goto " + ep2},
					ep2:     dnatChain("10.244.2.6"),
				},
				elements: []string{
					"service-ips 10.96.0.10 . tcp . 80 : goto " + svc,
					"service-ips 203.0.113.9 . tcp . 80 : goto " + ext,
					"service-nodeports tcp . 30080 : goto " + ext,
				},
			},
		},
		{
			name:   "ClientIP affinity remembers each client's endpoint",
			svc:    web(proxytest.Affinity(600)),
			slices: []*discoveryv1.EndpointSlice{slice(local1, remote2)},
			want: rendered{
				chains: map[string][]string{
					svc: {"ip saddr != 10.244.0.0/16 " + markMasq, "goto " + cluster},
					cluster: {
						"ip saddr @affinity-default/web/tcp/http__10.244.1.5/8080 goto " + ep1,
						"ip saddr @affinity-default/web/tcp/http__10.244.2.6/8080 goto " + ep2,
						"numgen random mod 2 vmap @" + cluster,
					},
					ep1: {"ip saddr 10.244.1.5 " + markMasq, "update @affinity-default/web/tcp/http__10.244.1.5/8080 { ip saddr }",
						"meta l4proto tcp dnat to 10.244.1.5:8080"},
					ep2: {"ip saddr 10.244.2.6 " + markMasq, "update @affinity-default/web/tcp/http__10.244.2.6/8080 { ip saddr }",
						"meta l4proto tcp dnat to 10.244.2.6:8080"},
				},
				elements: append(pick12, "service-ips 10.96.0.10 . tcp . 80 : goto "+svc),
				sets: []string{
					"affinity-default/web/tcp/http__10.244.1.5/8080 ipv4_addr 10m0s",
					"affinity-default/web/tcp/http__10.244.2.6/8080 ipv4_addr 10m0s",
					cluster + " integer 0s",
				},
			},
		},
		{
			name: "two ports, one UDP, each with its own endpoints",
			svc: web(func(s *corev1.Service) {
				s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53})
			}),
			slices: []*discoveryv1.EndpointSlice{func() *discoveryv1.EndpointSlice {
				s := slice(remote2)
				s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr.To("dns"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(int32(5353))})
				return s
			}()},
			want: rendered{
				chains: map[string][]string{
					svc:                           {"ip saddr != 10.244.0.0/16 " + markMasq, "goto " + cluster},
					cluster:                       {"goto " + ep2},
					ep2:                           dnatChain("10.244.2.6"),
					"svc-default/web/udp/dns":     {"ip saddr != 10.244.0.0/16 " + markMasq, "goto cluster-default/web/udp/dns"},
					"cluster-default/web/udp/dns": {"goto ep-default/web/udp/dns__10.244.2.6/5353"},
					"ep-default/web/udp/dns__10.244.2.6/5353": {"ip saddr 10.244.2.6 " + markMasq,
						"meta l4proto udp dnat to 10.244.2.6:5353"},
				},
				elements: []string{
					"service-ips 10.96.0.10 . tcp . 80 : goto " + svc,
					"service-ips 10.96.0.10 . udp . 53 : goto svc-default/web/udp/dns",
				},
			},
		},
		{
			name:  "headless Service needs no rules",
			svc:   web(func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "None", []string{"None"} }),
			isNil: true,
		},
		{
			name: "ExternalName Service needs no rules",
			svc: web(func(s *corev1.Service) {
				s.Spec.Type, s.Spec.ExternalName = corev1.ServiceTypeExternalName, "example.com"
			}),
			isNil: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := node
			if tt.node.Name != "" {
				n = tt.node
			}
			g := ruleset.Service(n, tt.svc, tt.slices)
			if tt.isNil {
				if g != nil {
					t.Fatalf("got a group, want none: %+v", render(g))
				}
				return
			}
			if g == nil {
				t.Fatal("got no group")
			}
			got := render(g)
			for _, name := range slices.Sorted(maps.Keys(tt.want.chains)) {
				if !slices.Equal(got.chains[name], tt.want.chains[name]) {
					t.Errorf("chain %s:\n got %s\nwant %s", name, strings.Join(got.chains[name], "\n    "), strings.Join(tt.want.chains[name], "\n     "))
				}
			}
			for name := range got.chains {
				if _, ok := tt.want.chains[name]; !ok {
					t.Errorf("unexpected chain %s: %q", name, got.chains[name])
				}
			}
			if !slices.Equal(got.elements, tt.want.elements) {
				t.Errorf("elements:\n got %q\nwant %q", got.elements, tt.want.elements)
			}
			if !slices.Equal(got.sets, tt.want.sets) {
				t.Errorf("sets:\n got %q\nwant %q", got.sets, tt.want.sets)
			}
			// Every chain a rule or element names must exist in the group
			// or the skeleton: else the kernel refuses the batch.
			checkReferences(t, g)
		})
	}
}

func renamePort(s *discoveryv1.EndpointSlice, name string) *discoveryv1.EndpointSlice {
	s.Ports[0].Name = ptr.To(name)
	return s
}

func checkReferences(t *testing.T, g *ruleset.Group) {
	t.Helper()
	known := map[string]bool{}
	for _, c := range append(ruleset.Skeleton(node).Chains, g.Chains...) {
		known[c.Name] = true
	}
	check := func(v ruleset.Verdict) {
		if (v.Kind == ruleset.Jump || v.Kind == ruleset.Goto) && !known[v.Chain] {
			t.Errorf("reference to missing chain %s", v.Chain)
		}
	}
	for _, c := range g.Chains {
		for _, r := range c.Rules {
			for _, x := range r {
				switch x := x.(type) {
				case ruleset.Verdict:
					check(x)
				}
			}
		}
	}
	for _, e := range g.Elements {
		check(*e.Verdict)
	}
}

func TestSkeleton(t *testing.T) {
	tests := []struct {
		name      string
		node      ruleset.Node
		nodePorts string
		elements  int
	}{
		{"node ports on the node addresses", node,
			"ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports", 1},
		{"node ports on every local address but loopback", ruleset.Node{Name: "n"},
			"fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := ruleset.Skeleton(tt.node)
			r := render(g)
			want := []string{"ip daddr . meta l4proto . th dport vmap @service-ips", tt.nodePorts}
			if !slices.Equal(r.chains[ruleset.ChainServices], want) {
				t.Errorf("services chain: got %q, want %q", r.chains[ruleset.ChainServices], want)
			}
			if len(g.Elements) != tt.elements {
				t.Errorf("got %d elements, want %d", len(g.Elements), tt.elements)
			}
			wantMasq := []string{"meta mark & 0x00004000 == 0x00000000 return", "meta mark set meta mark ^ 0x00004000", "masquerade fully-random"}
			if !slices.Equal(r.chains[ruleset.ChainMasquerading], wantMasq) {
				t.Errorf("masquerading chain: got %q, want %q", r.chains[ruleset.ChainMasquerading], wantMasq)
			}
			hooked := 0
			for _, c := range g.Chains {
				if c.Hook != nil {
					hooked++
				}
			}
			if hooked != 6 {
				t.Errorf("got %d base chains, want 6 (nat prerouting/output/postrouting, filter input/forward/output)", hooked)
			}
		})
	}
}
