package dns

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"k8s.io/apimachinery/pkg/runtime"
)

// BenchmarkQueries measures cluster-record queries per second: parallel
// clients, each on its own UDP socket, asking for random Services among
// 1,000 over loopback. Client and server share the machine's cores.
func BenchmarkQueries(b *testing.B) {
	const services = 1000
	objs := make([]runtime.Object, 0, services)
	for i := range services {
		objs = append(objs, svc("bench", fmt.Sprintf("svc-%d", i), fmt.Sprintf("10.43.%d.%d", 1+i/250, 1+i%250)))
	}
	s, _ := testServer(b, objs)
	addr := s.Addrs()[0]
	b.SetParallelism(8) // clients wait on the network, not the CPU
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		co, err := mdns.Dial("udp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer co.Close()
		q := new(mdns.Msg)
		for pb.Next() {
			q.SetQuestion(fmt.Sprintf("svc-%d.bench.svc.cluster.local.", rand.IntN(services)), mdns.TypeA)
			// A datagram lost under load would otherwise hang the client.
			_ = co.SetDeadline(time.Now().Add(5 * time.Second))
			if err := co.WriteMsg(q); err != nil {
				b.Error(err)
				return
			}
			r, err := co.ReadMsg()
			if err != nil {
				b.Error(err)
				return
			}
			if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
				b.Errorf("%s: %s, %d answers", q.Question[0].Name, mdns.RcodeToString[r.Rcode], len(r.Answer))
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}
