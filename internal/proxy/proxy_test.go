package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/skiffhq/skiff/internal/proxy/nft"
	"github.com/skiffhq/skiff/internal/proxy/proxytest"
	"github.com/skiffhq/skiff/internal/proxy/ruleset"
	"github.com/skiffhq/skiff/internal/testutil"
)

// answers asks addr n times from ns and counts the servers that answered;
// an error ends the count.
func answers(tp *proxytest.Topology, from string, addr string, n int) (map[string]int, error) {
	h := tp.Client
	if from == "outside" {
		h = tp.Outside
	}
	got := map[string]int{}
	for range n {
		server, _, err := proxytest.Ask(h, addr, 2*time.Second)
		if err != nil {
			return got, err
		}
		got[server]++
	}
	return got, nil
}

// start runs p until stop is called or the test ends, and waits until it
// is ready. stop returns Run's result; it may be called more than once.
func start(t testing.TB, p *Proxy) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var (
		once   sync.Once
		result error
	)
	stop = func() error {
		once.Do(func() { cancel(); result = <-done })
		return result
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-p.Ready():
	case err := <-done:
		once.Do(func() { cancel(); result = err })
		t.Fatalf("proxy stopped before ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("proxy not ready after 60s")
	}
	return stop
}

// TestProxyFollowsAPI runs the proxy against a real API server: a
// Service without a selector whose EndpointSlice the test manages (as the
// cluster DNS will), followed into the kernel and checked with real
// connections.
func TestProxyFollowsAPI(t *testing.T) {
	tp := proxytest.NewTopology(t)
	proxytest.Serve(t, tp.Endpoint1, 8080, "ep1")
	proxytest.Serve(t, tp.Endpoint2, 8080, "ep2")
	const table = "skiff-proxy-it"

	// A table left by an earlier run, with a chain of its own: the
	// proxy's first write must replace it.
	stale, err := nft.New(nft.Config{Table: table, NetNS: int(tp.Node), Logger: proxytest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stale.Close() })
	if err := stale.Replace(map[string]*ruleset.Group{"": {Chains: []ruleset.Chain{{Name: "stale"}}}}); err != nil {
		t.Fatal(err)
	}

	cp := testutil.StartControlPlane(t)
	ctx := t.Context()
	p, err := New(Config{
		Client:      cp.Client,
		NodeName:    "node-a",
		NodeIPs:     []net.IP{net.ParseIP(proxytest.NodeIP)},
		ClusterCIDR: proxytest.ClusterCIDR,
		TableName:   table,
		NetNS:       tp.Node,
		Logger:      testutil.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, p)
	if _, ok := proxytest.NFTChains(t, tp.Node, table)["stale"]; ok {
		t.Fatal("the stale chain survived the first write")
	}

	svcs := cp.Client.CoreV1().Services("default")
	slices := cp.Client.DiscoveryV1().EndpointSlices("default")
	svc, err := svcs.Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clusterIP := net.JoinHostPort(svc.Spec.ClusterIP, "80")

	steps := []struct {
		name   string
		change func() error
		// ok is polled until it holds.
		ok func() error
	}{
		{
			name: "service without endpoints refuses connections",
			ok: func() error {
				_, err := answers(tp, "client", clusterIP, 1)
				if !errors.Is(err, syscall.ECONNREFUSED) {
					return fmt.Errorf("got %v, want connection refused", err)
				}
				return nil
			},
		},
		{
			name: "a manually managed slice with two endpoints",
			change: func() error {
				_, err := slices.Create(ctx, proxytest.Slice("default", "web", "web-manual", 8080,
					proxytest.Endpoint{IP: proxytest.Endpoint1IP, Node: "node-a"},
					proxytest.Endpoint{IP: proxytest.Endpoint2IP, Node: "node-b"}), metav1.CreateOptions{})
				return err
			},
			ok: func() error {
				got, err := answers(tp, "client", clusterIP, 30)
				if err != nil || got["ep1"] == 0 || got["ep2"] == 0 {
					return fmt.Errorf("answers %v (err %v), want both endpoints", got, err)
				}
				return nil
			},
		},
		{
			name: "one endpoint becomes not ready",
			change: func() error {
				s := proxytest.Slice("default", "web", "web-manual", 8080,
					proxytest.Endpoint{IP: proxytest.Endpoint1IP, Node: "node-a", NotReady: true},
					proxytest.Endpoint{IP: proxytest.Endpoint2IP, Node: "node-b"})
				cur, err := slices.Get(ctx, "web-manual", metav1.GetOptions{})
				if err != nil {
					return err
				}
				s.ResourceVersion = cur.ResourceVersion
				_, err = slices.Update(ctx, s, metav1.UpdateOptions{})
				return err
			},
			ok: func() error {
				got, err := answers(tp, "client", clusterIP, 10)
				if err != nil || got["ep2"] != 10 {
					return fmt.Errorf("answers %v (err %v), want ep2 only", got, err)
				}
				return nil
			},
		},
		{
			name: "the service becomes a NodePort",
			change: func() error {
				cur, err := svcs.Get(ctx, "web", metav1.GetOptions{})
				if err != nil {
					return err
				}
				cur.Spec.Type = corev1.ServiceTypeNodePort
				_, err = svcs.Update(ctx, cur, metav1.UpdateOptions{})
				return err
			},
			ok: func() error {
				cur, err := svcs.Get(ctx, "web", metav1.GetOptions{})
				if err != nil {
					return err
				}
				addr := net.JoinHostPort(proxytest.NodeIP, fmt.Sprint(cur.Spec.Ports[0].NodePort))
				got, err := answers(tp, "outside", addr, 5)
				if err != nil || got["ep2"] != 5 {
					return fmt.Errorf("answers %v (err %v) on %s, want ep2", got, err, addr)
				}
				return nil
			},
		},
		{
			name:   "the slice is deleted",
			change: func() error { return slices.Delete(ctx, "web-manual", metav1.DeleteOptions{}) },
			ok: func() error {
				_, err := answers(tp, "client", clusterIP, 1)
				if !errors.Is(err, syscall.ECONNREFUSED) {
					return fmt.Errorf("got %v, want connection refused", err)
				}
				return nil
			},
		},
		{
			name:   "the service is deleted",
			change: func() error { return svcs.Delete(ctx, "web", metav1.DeleteOptions{}) },
			ok: func() error {
				for name := range proxytest.NFTChains(t, tp.Node, table) {
					if strings.Contains(name, "default/web/") {
						return fmt.Errorf("chain %s still there", name)
					}
				}
				return nil
			},
		},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.change != nil {
				if err := s.change(); err != nil {
					t.Fatal(err)
				}
			}
			last := &lastErr{}
			testutil.Eventually(t, 20*time.Second, func() bool { last.err = s.ok(); return last.err == nil }, "%v", last)
		})
	}

	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := stale.Conn().ListTableOfFamily(table, nftables.TableFamilyIPv4); err == nil {
		t.Fatal("table still there after the proxy stopped")
	}
}

// lastErr prints the last error a poll saw, when the poll gives up.
type lastErr struct{ err error }

func (l *lastErr) String() string { return fmt.Sprint(l.err) }

// TestProxyCoalescesBursts checks that a burst of changes within
// MinSyncInterval reaches the kernel in a few batches, not one each.
func TestProxyCoalescesBursts(t *testing.T) {
	node := proxytest.NewNetns(t)
	cp := testutil.StartControlPlane(t)
	ctx := t.Context()
	const interval = 300 * time.Millisecond
	p, err := New(Config{Client: cp.Client, NodeName: "node-a", ClusterCIDR: proxytest.ClusterCIDR,
		TableName: "skiff-proxy-burst", NetNS: node, MinSyncInterval: interval, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	start(t, p)
	before := p.writes.Load()

	const n = 20
	began := time.Now()
	for i := range n {
		name := fmt.Sprintf("burst-%d", i)
		if _, err := cp.Client.CoreV1().Services("default").Create(ctx, proxytest.Service("default", name, "", 80,
			func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "", nil }), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cp.Client.DiscoveryV1().EndpointSlices("default").Create(ctx,
			proxytest.Slice("default", name, name, 8080, proxytest.Endpoints(2, 2*i, "node-b")...), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		chains := proxytest.NFTChains(t, node, "skiff-proxy-burst")
		for i := range n {
			if _, ok := chains[fmt.Sprintf("cluster-default/burst-%d/tcp/http", i)]; !ok {
				return false
			}
		}
		return true
	}, "all %d services in the kernel", n)
	elapsed := time.Since(began)
	writes := p.writes.Load() - before
	// One write per interval at most, plus the first at once.
	if limit := int64(elapsed/interval) + 2; writes > limit || writes >= 2*n {
		t.Fatalf("%d writes for %d changes in %v, want at most %d", writes, 2*n, elapsed, limit)
	}
	t.Logf("%d changes in %v reached the kernel in %d writes", 2*n, elapsed, writes)
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
		cidr    string
		ips     int
	}{
		{name: "node name required", cfg: Config{Informers: nil}, wantErr: "node name"},
		{name: "client or informers required", cfg: Config{NodeName: "n"}, wantErr: "client or an informer factory"},
		{name: "bad CIDR", cfg: Config{NodeName: "n", Client: fake(), ClusterCIDR: "10.0.0.0/33"}, wantErr: "cluster CIDR"},
		{name: "dual-stack CIDR list: the IPv4 entry", cfg: Config{NodeName: "n", Client: fake(),
			ClusterCIDR: "fd00::/48, 10.244.0.0/16"}, cidr: "10.244.0.0/16"},
		{name: "IPv6 node addresses are ignored", cfg: Config{NodeName: "n", Client: fake(),
			NodeIPs: []net.IP{net.ParseIP("192.168.1.2"), net.ParseIP("fd00::2")}}, ips: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer p.removeHandlers()
			if tt.cidr != "" && p.node.ClusterCIDR.String() != tt.cidr {
				t.Errorf("cluster CIDR %s, want %s", p.node.ClusterCIDR, tt.cidr)
			}
			if len(p.node.IPs) != tt.ips {
				t.Errorf("node IPs %v, want %d", p.node.IPs, tt.ips)
			}
			if p.cfg.TableName != DefaultTableName {
				t.Errorf("table %q, want %q", p.cfg.TableName, DefaultTableName)
			}
		})
	}
}

// fake is a client that is never used: New only registers informers.
func fake() *kubernetes.Clientset {
	return kubernetes.NewForConfigOrDie(&rest.Config{Host: "http://127.0.0.1:1"})
}

// TestProxyFlushesStaleUDPFlows asks a UDP Service from one source port
// throughout, as a resolver does: a flow that was rejected while the
// Service had no endpoints reaches the endpoint that appears, and a flow
// to an endpoint that is replaced moves to the new one, which conntrack
// would otherwise keep sending to the old one while packets keep coming.
func TestProxyFlushesStaleUDPFlows(t *testing.T) {
	tp := proxytest.NewTopology(t)
	proxytest.ServeUDP(t, tp.Endpoint1, 5353, "ep1")
	proxytest.ServeUDP(t, tp.Endpoint2, 5353, "ep2")
	cp := testutil.StartControlPlane(t)
	ctx := t.Context()
	p, err := New(Config{
		Client: cp.Client, NodeName: "node-a", NodeIPs: []net.IP{net.ParseIP(proxytest.NodeIP)},
		ClusterCIDR: proxytest.ClusterCIDR, TableName: "skiff-proxy-udp", NetNS: tp.Node, Logger: testutil.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	start(t, p)
	svc, err := cp.Client.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "dns"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(svc.Spec.ClusterIP, "53")
	const clientPort = 40053
	ask := func() (string, error) {
		server, _, err := proxytest.AskUDPFrom(tp.Client, clientPort, addr, 500*time.Millisecond)
		return server, err
	}
	slice := func(ip string) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "dns-manual", Labels: map[string]string{discoveryv1.LabelServiceName: "dns"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("dns"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To[int32](5353)}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		}
	}
	slices := cp.Client.DiscoveryV1().EndpointSlices("default")

	last := &lastErr{}
	testutil.Eventually(t, 30*time.Second, func() bool {
		_, last.err = ask()
		return errors.Is(last.err, syscall.ECONNREFUSED)
	}, "the flow refused while there are no endpoints: %v", last)
	if _, err := slices.Create(ctx, slice(proxytest.Endpoint1IP), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		server, err := ask()
		last.err = fmt.Errorf("answered by %q, %v", server, err)
		return server == "ep1"
	}, "the refused flow reaching the new endpoint: %v", last)
	cur, err := slices.Get(ctx, "dns-manual", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	next := slice(proxytest.Endpoint2IP)
	next.ResourceVersion = cur.ResourceVersion
	if _, err := slices.Update(ctx, next, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		server, err := ask()
		last.err = fmt.Errorf("answered by %q, %v", server, err)
		return server == "ep2"
	}, "the flow moving to the endpoint that replaced its own: %v", last)
}
