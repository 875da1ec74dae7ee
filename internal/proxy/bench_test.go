package proxy

import (
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/internal/proxy/nft"
	"github.com/skiffhq/skiff/internal/proxy/proxytest"
	"github.com/skiffhq/skiff/internal/testutil"
)

// Size of the benchmark's cluster.
const (
	benchServices  = 1000
	benchEndpoints = 10
)

// BenchmarkProxy measures, with 1,000 Services of 10 endpoints each in a
// real API server:
//
//   - RuleLive: the delay from an EndpointSlice update (the API call) to
//     the new endpoint's rules being in the kernel, as p50 and p99. Goal:
//     p99 < 100 ms.
//   - FullResync: computing and writing the whole table (what a start
//     does) as one batch. Goal: < 1 s.
//
// Run with, for example:
//
//	go test -run '^$' -bench Proxy -benchtime 200x ./internal/proxy/
func BenchmarkProxy(b *testing.B) {
	proxytest.RequireRoot(b)
	cp := testutil.StartControlPlane(b)
	ctx := b.Context()
	const ns = "bench"
	if _, err := cp.Client.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	began := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range benchServices {
		g.Go(func() error {
			name := fmt.Sprintf("svc-%d", i)
			if _, err := cp.Client.CoreV1().Services(ns).Create(gctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
					{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}},
			}, metav1.CreateOptions{}); err != nil {
				return err
			}
			_, err := cp.Client.DiscoveryV1().EndpointSlices(ns).Create(gctx,
				proxytest.Slice(ns, name, name, 8080, proxytest.Endpoints(benchEndpoints, i*benchEndpoints, "node-b")...),
				metav1.CreateOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	b.Logf("created %d services with %d endpoints each in %v", benchServices, benchEndpoints, time.Since(began))

	node := proxytest.NewNetns(b)
	const table = "skiff-proxy-bench"
	p, err := New(Config{
		Client: cp.Client, NodeName: "node-a", NodeIPs: []net.IP{net.ParseIP("192.168.50.1")},
		ClusterCIDR: "10.244.0.0/16", TableName: table, NetNS: node, Logger: testutil.Logger(),
	})
	if err != nil {
		b.Fatal(err)
	}
	began = time.Now()
	start(b, p)
	b.Logf("proxy ready (informers synced, table written) in %v", time.Since(began))

	b.Run("RuleLive", func(b *testing.B) {
		watch, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(int(node)))
		if err != nil {
			b.Fatal(err)
		}
		defer watch.CloseLasting()
		tbl := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
		slicesAPI := cp.Client.DiscoveryV1().EndpointSlices(ns)
		var delays []time.Duration
		i := 0
		for b.Loop() {
			name := fmt.Sprintf("svc-%d", i%benchServices)
			s, err := slicesAPI.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				b.Fatal(err)
			}
			// A fresh address, outside the range the setup used.
			ip := proxytest.Endpoints(1, benchServices*benchEndpoints+i, "node-b")[0].IP
			s.Endpoints[0].Addresses = []string{ip}
			chain := fmt.Sprintf("ep-%s/%s/tcp/http__%s/8080", ns, name, ip)
			i++

			t0 := time.Now()
			if _, err := slicesAPI.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
				b.Fatal(err)
			}
			deadline := t0.Add(10 * time.Second)
			for {
				if _, err := watch.ListChain(tbl, chain); err == nil {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("chain %s not in the kernel after 10s", chain)
				}
				// Poll every 200µs: the measurement's resolution.
				time.Sleep(200 * time.Microsecond)
			}
			delays = append(delays, time.Since(t0))
		}
		slices.Sort(delays)
		pct := func(q float64) float64 {
			return float64(delays[int(q*float64(len(delays)-1))].Microseconds()) / 1000
		}
		b.ReportMetric(pct(0.50), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
		b.ReportMetric(pct(1), "max-ms")
	})

	b.Run("FullResync", func(b *testing.B) {
		// Another namespace, so that the running proxy's table is not
		// disturbed.
		other := proxytest.NewNetns(b)
		w, err := nft.New(nft.Config{Table: table, NetNS: int(other), Logger: testutil.Logger()})
		if err != nil {
			b.Fatal(err)
		}
		defer w.Close()
		var build time.Duration
		for b.Loop() {
			t0 := time.Now()
			groups, err := p.buildAll()
			if err != nil {
				b.Fatal(err)
			}
			build += time.Since(t0)
			if err := w.Replace(groups); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(build.Microseconds())/1000/float64(b.N), "build-ms/op")
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
		if err := w.Delete(); err != nil {
			b.Fatal(err)
		}
	})
}
