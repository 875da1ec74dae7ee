package nft

import (
	"fmt"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/skiffhq/skiff/internal/proxy/proxytest"
	"github.com/skiffhq/skiff/internal/proxy/ruleset"
)

// benchGroups is the skeleton and services×endpoints Services.
func benchGroups(services, endpoints int) map[string]*ruleset.Group {
	groups := map[string]*ruleset.Group{"": ruleset.Skeleton(testNode)}
	for i := range services {
		name := fmt.Sprintf("svc-%d", i)
		svc := proxytest.Service("bench", name, fmt.Sprintf("10.96.%d.%d", i/250, i%250+1), 80)
		sl := proxytest.Slice("bench", name, name, 8080, proxytest.Endpoints(endpoints, i*endpoints, "node-b")...)
		groups["bench/"+name] = svcGroup(svc, []*discoveryv1.EndpointSlice{sl}...)
	}
	return groups
}

// BenchmarkWrite measures writing 1,000 Services of 10 endpoints: the
// whole table into an empty namespace (a start), over itself (a resync),
// and one Service's change (an update), without an API server.
func BenchmarkWrite(b *testing.B) {
	proxytest.RequireRoot(b)
	groups := benchGroups(1000, 10)
	newW := func(b *testing.B) *Writer {
		w, err := New(Config{Table: "skiff-proxy-bench", NetNS: int(proxytest.NewNetns(b)), Logger: proxytest.Logger()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = w.Delete(); _ = w.Close() })
		return w
	}
	b.Run("Start", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			w := newW(b)
			b.StartTimer()
			if err := w.Replace(groups); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Resync", func(b *testing.B) {
		w := newW(b)
		if err := w.Replace(groups); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := w.Replace(groups); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("UpdateOne", func(b *testing.B) {
		w := newW(b)
		if err := w.Replace(groups); err != nil {
			b.Fatal(err)
		}
		i := 0
		for b.Loop() {
			name := fmt.Sprintf("svc-%d", i%1000)
			svc := proxytest.Service("bench", name, fmt.Sprintf("10.96.%d.%d", i%1000/250, i%1000%250+1), 80)
			eps := proxytest.Endpoints(10, (i%1000)*10, "node-b")
			eps[0] = proxytest.Endpoints(1, 20000+i, "node-b")[0]
			g := svcGroup(svc, proxytest.Slice("bench", name, name, 8080, eps...))
			if err := w.Update(map[string]*ruleset.Group{"bench/" + name: g}); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
