package dns

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
)

// clusterObjects is a small cluster: a dual-stack ClusterIP Service, a
// headless one (StatefulSet-like hostnames, one endpoint without, one not
// ready, an IPv6 slice), ExternalNames in and out of the cluster, and a
// headless Service publishing not-ready addresses.
func clusterObjects() []runtime.Object {
	pg := []discoveryv1.EndpointPort{slicePort("pg", 5432, corev1.ProtocolTCP)}
	return []runtime.Object{
		svc("prod", "web", "10.43.0.20", withPorts(
			corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
			corev1.ServicePort{Name: "stats", Port: 9000, Protocol: corev1.ProtocolUDP},
			corev1.ServicePort{Port: 81}, // unnamed: no SRV
		), func(s *corev1.Service) { s.Spec.ClusterIPs = []string{"10.43.0.20", "fd00:43::20"} }),
		svc("prod", "db", corev1.ClusterIPNone, withPorts(corev1.ServicePort{Name: "pg", Port: 5432})),
		endpointSlice("prod", "db-4", "db", discoveryv1.AddressTypeIPv4, pg,
			ep{"10.42.0.5", "db-0", true}, ep{"10.42.0.6", "db-1", true}, ep{"10.42.0.7", "", true}, ep{"10.42.0.8", "db-3", false}),
		endpointSlice("prod", "db-6", "db", discoveryv1.AddressTypeIPv6, pg, ep{"fd00:42::5", "", true}),
		svc("prod", "alias", "", func(s *corev1.Service) {
			s.Spec.Type, s.Spec.ExternalName = corev1.ServiceTypeExternalName, "web.prod.svc.cluster.local"
		}),
		svc("prod", "outside", "", func(s *corev1.Service) {
			s.Spec.Type, s.Spec.ExternalName = corev1.ServiceTypeExternalName, "example.com"
		}),
		svc("prod", "peers", corev1.ClusterIPNone, func(s *corev1.Service) { s.Spec.PublishNotReadyAddresses = true }),
		endpointSlice("prod", "peers-1", "peers", discoveryv1.AddressTypeIPv4, nil, ep{"10.42.0.9", "", false}),
		// A slice without a Service serves nothing.
		endpointSlice("prod", "orphan-1", "orphan", discoveryv1.AddressTypeIPv4, nil, ep{"10.42.0.10", "", true}),
	}
}

func TestRecords(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, clusterObjects())
	addr := s.Addrs()[0]
	const (
		nx, ok = mdns.RcodeNameError, mdns.RcodeSuccess
		web    = "web.prod.svc.cluster.local."
		db     = "db.prod.svc.cluster.local."
	)
	cases := []struct {
		name  string
		qname string
		qtype uint16
		rcode int
		want  []string // answer section
		extra []string // additional section, if checked
		soa   bool     // SOA in the authority section
	}{
		{"cluster IP", web, mdns.TypeA, ok, []string{web + " IN A 10.43.0.20"}, nil, false},
		{"cluster IP v6", web, mdns.TypeAAAA, ok, []string{web + " IN AAAA fd00:43::20"}, nil, false},
		{"case kept as asked", "WEB.Prod.svc.cluster.local.", mdns.TypeA, ok,
			[]string{"WEB.Prod.svc.cluster.local. IN A 10.43.0.20"}, nil, false},
		{"headless: ready endpoints", db, mdns.TypeA, ok,
			[]string{db + " IN A 10.42.0.5", db + " IN A 10.42.0.6", db + " IN A 10.42.0.7"}, nil, false},
		{"headless v6", db, mdns.TypeAAAA, ok, []string{db + " IN AAAA fd00:42::5"}, nil, false},
		{"headless publishing not-ready", "peers.prod.svc.cluster.local.", mdns.TypeA, ok,
			[]string{"peers.prod.svc.cluster.local. IN A 10.42.0.9"}, nil, false},
		{"endpoint hostname", "db-1." + db, mdns.TypeA, ok, []string{"db-1." + db + " IN A 10.42.0.6"}, nil, false},
		{"endpoint by dashed address", "10-42-0-7." + db, mdns.TypeA, ok, []string{"10-42-0-7." + db + " IN A 10.42.0.7"}, nil, false},
		{"not-ready endpoint absent", "db-3." + db, mdns.TypeA, nx, nil, nil, true},
		{"endpoint names only for headless", "10-43-0-20." + web, mdns.TypeA, nx, nil, nil, true},
		{"SRV to the service", "_http._tcp." + web, mdns.TypeSRV, ok,
			[]string{"_http._tcp." + web + " IN SRV 0 100 80 " + web},
			[]string{web + " IN A 10.43.0.20", web + " IN AAAA fd00:43::20"}, false},
		{"SRV udp port", "_stats._udp." + web, mdns.TypeSRV, ok, []string{"_stats._udp." + web + " IN SRV 0 100 9000 " + web}, nil, false},
		{"SRV wrong protocol", "_http._udp." + web, mdns.TypeSRV, nx, nil, nil, true},
		{"SRV per headless endpoint", "_pg._tcp." + db, mdns.TypeSRV, ok, []string{
			"_pg._tcp." + db + " IN SRV 0 25 5432 10-42-0-7." + db,
			"_pg._tcp." + db + " IN SRV 0 25 5432 db-0." + db,
			"_pg._tcp." + db + " IN SRV 0 25 5432 db-1." + db,
			"_pg._tcp." + db + " IN SRV 0 25 5432 fd00-42--5." + db,
		}, []string{
			"10-42-0-7." + db + " IN A 10.42.0.7", "db-0." + db + " IN A 10.42.0.5",
			"db-1." + db + " IN A 10.42.0.6", "fd00-42--5." + db + " IN AAAA fd00:42::5",
		}, false},
		{"SRV name, A asked: NODATA", "_http._tcp." + web, mdns.TypeA, ok, nil, nil, true},
		{"protocol level exists", "_tcp." + web, mdns.TypeSRV, ok, nil, nil, true},
		{"PTR of a cluster IP", "20.0.43.10.in-addr.arpa.", mdns.TypePTR, ok,
			[]string{"20.0.43.10.in-addr.arpa. IN PTR " + web}, nil, false},
		{"PTR of a v6 cluster IP", mustReverse(t, "fd00:43::20"), mdns.TypePTR, ok,
			[]string{mustReverse(t, "fd00:43::20") + " IN PTR " + web}, nil, false},
		{"PTR of a hostname endpoint", "5.0.42.10.in-addr.arpa.", mdns.TypePTR, ok,
			[]string{"5.0.42.10.in-addr.arpa. IN PTR db-0." + db}, nil, false},
		{"PTR of a plain endpoint", "7.0.42.10.in-addr.arpa.", mdns.TypePTR, ok,
			[]string{"7.0.42.10.in-addr.arpa. IN PTR 10-42-0-7." + db}, nil, false},
		{"ExternalName in cluster: CNAME, chased", "alias.prod.svc.cluster.local.", mdns.TypeA, ok, []string{
			"alias.prod.svc.cluster.local. IN CNAME " + web, web + " IN A 10.43.0.20",
		}, nil, false},
		{"ExternalName CNAME asked", "alias.prod.svc.cluster.local.", mdns.TypeCNAME, ok,
			[]string{"alias.prod.svc.cluster.local. IN CNAME " + web}, nil, false},
		{"ExternalName outside, no upstream: CNAME alone", "outside.prod.svc.cluster.local.", mdns.TypeA, ok,
			[]string{"outside.prod.svc.cluster.local. IN CNAME example.com."}, nil, false},
		{"pod A", "10-42-1-9.prod.pod.cluster.local.", mdns.TypeA, ok,
			[]string{"10-42-1-9.prod.pod.cluster.local. IN A 10.42.1.9"}, nil, false},
		{"pod v6", "fd00-42--9.prod.pod.cluster.local.", mdns.TypeAAAA, ok,
			[]string{"fd00-42--9.prod.pod.cluster.local. IN AAAA fd00:42::9"}, nil, false},
		{"pod AAAA of v4: NODATA", "10-42-1-9.prod.pod.cluster.local.", mdns.TypeAAAA, ok, nil, nil, true},
		{"pod not an address", "web.prod.pod.cluster.local.", mdns.TypeA, nx, nil, nil, true},
		{"unknown service", "nope.prod.svc.cluster.local.", mdns.TypeA, nx, nil, nil, true},
		{"slice without service", "orphan.prod.svc.cluster.local.", mdns.TypeA, nx, nil, nil, true},
		{"search path appended", web + "prod.svc.cluster.local.", mdns.TypeA, nx, nil, nil, true},
		{"outside name under the domain", "example.com.cluster.local.", mdns.TypeA, nx, nil, nil, true},
		{"type the name lacks: NODATA", web, mdns.TypeTXT, ok, nil, nil, true},
		{"namespace with services: NODATA", "prod.svc.cluster.local.", mdns.TypeA, ok, nil, nil, true},
		{"namespace without: NXDOMAIN", "empty.svc.cluster.local.", mdns.TypeA, nx, nil, nil, true},
		{"apex SOA", "cluster.local.", mdns.TypeSOA, ok, []string{"cluster.local. IN SOA ns.dns.cluster.local. hostmaster.cluster.local."}, nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := exchange(t, "udp", addr, c.qname, c.qtype, 0)
			if r.Rcode != c.rcode {
				t.Errorf("rcode %s, want %s", mdns.RcodeToString[r.Rcode], mdns.RcodeToString[c.rcode])
			}
			if !r.Authoritative && c.qtype != mdns.TypePTR {
				t.Error("answer not authoritative")
			}
			got := rrs(r.Answer, false)
			if c.qtype == mdns.TypeSOA {
				// Only the names: the serial moves.
				for i, g := range got {
					got[i] = splitN(g, 5)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("answer\n got %q\nwant %q", got, c.want)
			}
			if c.extra != nil && !slices.Equal(rrs(r.Extra, false), c.extra) {
				t.Errorf("extra\n got %q\nwant %q", rrs(r.Extra, false), c.extra)
			}
			hasSOA := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == mdns.TypeSOA && r.Ns[0].Header().Name == "cluster.local."
			if hasSOA != c.soa {
				t.Errorf("authority %v, want SOA: %v", r.Ns, c.soa)
			}
			for _, rr := range r.Answer {
				if rr.Header().Ttl != DefaultTTL {
					t.Errorf("TTL %d, want %d: %v", rr.Header().Ttl, DefaultTTL, rr)
				}
			}
		})
	}
}

// splitN keeps the first n space-separated fields.
func splitN(s string, n int) string {
	count := 0
	for i, r := range s {
		if r == ' ' {
			if count++; count == n {
				return s[:i]
			}
		}
	}
	return s
}

func mustReverse(t testing.TB, ip string) string {
	t.Helper()
	r, err := mdns.ReverseAddr(ip)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRecordsFollowWatches changes the cluster under a running server.
func TestRecordsFollowWatches(t *testing.T) {
	t.Parallel()
	s, client := testServer(t, nil)
	addr := s.Addrs()[0]
	ctx := context.Background()
	name := "api.team.svc.cluster.local."
	answers := func(qname string, qtype uint16) []string {
		return rrs(exchange(t, "udp", addr, qname, qtype, 0).Answer, false)
	}
	rcode := func(qname string) int { return exchange(t, "udp", addr, qname, mdns.TypeA, 0).Rcode }

	if got := rcode(name); got != mdns.RcodeNameError {
		t.Fatalf("before create: rcode %s", mdns.RcodeToString[got])
	}
	if _, err := client.CoreV1().Services("team").Create(ctx, svc("team", "api", corev1.ClusterIPNone), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "headless service to exist", func() bool { return rcode(name) == mdns.RcodeSuccess })

	slice := endpointSlice("team", "api-1", "api", discoveryv1.AddressTypeIPv4, nil, ep{"10.42.3.4", "", true})
	if _, err := client.DiscoveryV1().EndpointSlices("team").Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "endpoint to appear", func() bool {
		return slices.Equal(answers(name, mdns.TypeA), []string{name + " IN A 10.42.3.4"})
	})
	poll(t, "its PTR", func() bool { return len(answers("4.3.42.10.in-addr.arpa.", mdns.TypePTR)) == 1 })

	slice.Endpoints[0].Conditions.Ready = new(bool)
	if _, err := client.DiscoveryV1().EndpointSlices("team").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "not-ready endpoint to leave", func() bool { return len(answers(name, mdns.TypeA)) == 0 })

	if err := client.CoreV1().Services("team").Delete(ctx, "api", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "deleted service to be NXDOMAIN", func() bool { return rcode(name) == mdns.RcodeNameError })
}

func TestServiceIP(t *testing.T) {
	t.Parallel()
	cases := []struct{ cidr, want string }{
		{"10.43.0.0/16", "10.43.0.10"},
		{"10.96.0.0/12", "10.96.0.10"},
		{"10.43.7.9/16", "10.43.0.10"}, // host bits ignored
		{"192.168.5.0/28", "192.168.5.10"},
		{"192.168.5.0/29", ""}, // too small
		{"fd00:43::/112", "fd00:43::a"},
	}
	for _, c := range cases {
		t.Run(c.cidr, func(t *testing.T) {
			t.Parallel()
			_, n, err := net.ParseCIDR(c.cidr)
			if err != nil {
				t.Fatal(err)
			}
			got := ServiceIP(n)
			if (got == nil && c.want != "") || (got != nil && got.String() != c.want) {
				t.Errorf("ServiceIP(%s) = %v, want %q", c.cidr, got, c.want)
			}
		})
	}
}

func TestAddressNames(t *testing.T) {
	t.Parallel()
	for _, ip := range []string{"10.42.0.7", "0.0.0.1", "fd00:42::5", "2001:db8:1:2:3:4:5:6"} {
		t.Run(ip, func(t *testing.T) {
			t.Parallel()
			a := netip.MustParseAddr(ip)
			if got, ok := undashed(dashed(a)); !ok || got != a {
				t.Errorf("undashed(dashed(%s)) = %v, %v", ip, got, ok)
			}
			if got, ok := reverseAddr(mustReverse(t, ip)); !ok || got != a {
				t.Errorf("reverseAddr(%s) = %v, %v", mustReverse(t, ip), got, ok)
			}
		})
	}
	for _, bad := range []string{"web", "10-42-0", "10-42-0-300", "1-2-3-4-5", "::ffff:10.0.0.1", "fe80--1%eth0"} {
		if a, ok := undashed(bad); ok {
			t.Errorf("undashed(%q) = %v, want not an address", bad, a)
		}
	}
	for _, bad := range []string{"1.2.3.in-addr.arpa.", "01.2.3.4.in-addr.arpa.", "256.2.3.4.in-addr.arpa.", "x.ip6.arpa."} {
		if a, ok := reverseAddr(bad); ok {
			t.Errorf("reverseAddr(%q) = %v, want not an address", bad, a)
		}
	}
}

// TestViewUpdates drives the view the way informers do, through the
// handler funcs, including changes a watch cannot show in a fresh list.
func TestViewUpdates(t *testing.T) {
	t.Parallel()
	v := newView(DefaultDomain, DefaultTTL)
	svcs := handlerFuncs(v.setService, v.deleteService)
	sls := handlerFuncs(v.setSlice, v.deleteSlice)
	a := func(name string) []string {
		return rrs(v.lookup(name, mdns.TypeA).records, false)
	}
	ptrs := func(rev string) []string {
		ans, _ := v.reverse(rev, mdns.TypePTR)
		return rrs(ans.records, false)
	}
	const api, db = "api.team.svc.cluster.local.", "db.team.svc.cluster.local."

	steps := []struct {
		name   string
		do     func()
		lookup string
		want   []string
		rev    string // a PTR name to check too
		ptrs   []string
	}{
		{"cluster IP service", func() { svcs.OnAdd(svc("team", "api", "10.43.0.30"), false) },
			api, []string{api + " IN A 10.43.0.30"}, "30.0.43.10.in-addr.arpa.", []string{"30.0.43.10.in-addr.arpa. IN PTR " + api}},
		{"turned ExternalName: cluster IP and its PTR gone", func() {
			svcs.OnUpdate(nil, svc("team", "api", "", func(s *corev1.Service) {
				s.Spec.Type, s.Spec.ExternalName = corev1.ServiceTypeExternalName, "api.example."
			}))
		}, api, []string{api + " IN CNAME api.example."}, "30.0.43.10.in-addr.arpa.", nil},
		{"slice before its service", func() {
			sls.OnAdd(endpointSlice("team", "s1", "db", discoveryv1.AddressTypeIPv4, nil, ep{"10.42.0.1", "", true}), false)
		}, db, nil, "1.0.42.10.in-addr.arpa.", nil},
		{"service arrives", func() { svcs.OnAdd(svc("team", "db", corev1.ClusterIPNone), false) },
			db, []string{db + " IN A 10.42.0.1"}, "1.0.42.10.in-addr.arpa.", []string{"1.0.42.10.in-addr.arpa. IN PTR 10-42-0-1." + db}},
		{"same address in a second slice: once", func() {
			sls.OnAdd(endpointSlice("team", "s2", "db", discoveryv1.AddressTypeIPv4, nil, ep{"10.42.0.1", "", true}, ep{"10.42.0.2", "", true}), false)
		}, db, []string{db + " IN A 10.42.0.1", db + " IN A 10.42.0.2"}, "", nil},
		{"slice relabelled away", func() {
			sls.OnUpdate(nil, endpointSlice("team", "s2", "other", discoveryv1.AddressTypeIPv4, nil, ep{"10.42.0.2", "", true}))
		}, db, []string{db + " IN A 10.42.0.1"}, "2.0.42.10.in-addr.arpa.", nil},
		{"slice delete missed by the watch", func() {
			sls.OnDelete(cache.DeletedFinalStateUnknown{Key: "team/s1",
				Obj: endpointSlice("team", "s1", "db", discoveryv1.AddressTypeIPv4, nil)})
		}, db, nil, "1.0.42.10.in-addr.arpa.", nil},
		{"service deleted", func() { svcs.OnDelete(svc("team", "db", corev1.ClusterIPNone)) }, db, nil, "", nil},
	}
	for _, st := range steps {
		st.do()
		if got := a(st.lookup); !slices.Equal(got, st.want) {
			t.Errorf("%s: %s = %q, want %q", st.name, st.lookup, got, st.want)
		}
		if st.rev != "" {
			if got := ptrs(st.rev); !slices.Equal(got, st.ptrs) {
				t.Errorf("%s: %s = %q, want %q", st.name, st.rev, got, st.ptrs)
			}
		}
	}
	if !v.lookup("team.svc.cluster.local.", mdns.TypeA).exists {
		t.Error("namespace with the ExternalName left reads as absent")
	}
	svcs.OnDelete(svc("team", "api", ""))
	if v.lookup("team.svc.cluster.local.", mdns.TypeA).exists || len(v.ptr) != 0 {
		t.Errorf("after every delete: namespace still there or PTRs left: %v", v.ptr)
	}
}
