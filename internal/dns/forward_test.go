package dns

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// fakeUpstream is a resolver for a few names, on UDP and TCP, that
// truncates over UDP as a real one does and counts each transport.
type fakeUpstream struct {
	addr     string
	udp, tcp atomic.Int32
}

const bigAnswer = 40 // A records in big.example., well over 512 bytes

func startUpstream(t testing.TB) *fakeUpstream {
	t.Helper()
	ls, err := listen([]string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	u := &fakeUpstream{addr: ls.addrs()[0]}
	srv := ls.serve(mdns.HandlerFunc(u.serve), testLogger())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		srv.stop()
	})
	if err := srv.waitStarted(ctx); err != nil {
		t.Fatal(err)
	}
	return u
}

func (u *fakeUpstream) serve(w mdns.ResponseWriter, r *mdns.Msg) {
	m := new(mdns.Msg).SetReply(r)
	q := r.Question[0]
	hdr := func(t uint16) mdns.RR_Header {
		return mdns.RR_Header{Name: q.Name, Rrtype: t, Class: mdns.ClassINET, Ttl: 300}
	}
	switch {
	case q.Name == "example.com." && q.Qtype == mdns.TypeA:
		m.Answer = []mdns.RR{&mdns.A{Hdr: hdr(mdns.TypeA), A: net.IPv4(93, 184, 215, 14)}}
	case q.Name == "big.example.":
		for i := range bigAnswer {
			m.Answer = append(m.Answer, &mdns.A{Hdr: hdr(mdns.TypeA), A: net.IPv4(10, 9, 0, byte(i+1))})
		}
	case q.Name == "4.3.2.1.in-addr.arpa.":
		m.Answer = []mdns.RR{&mdns.PTR{Hdr: hdr(mdns.TypePTR), Ptr: "one.example."}}
	default:
		m.Rcode = mdns.RcodeNameError
	}
	if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
		u.udp.Add(1)
		size := mdns.MinMsgSize
		if opt := r.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	} else {
		u.tcp.Add(1)
	}
	_ = w.WriteMsg(m)
}

// deadAddr is a UDP address nothing listens on: queries to it fail at
// once with "connection refused".
func deadAddr(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	_ = pc.Close()
	return addr
}

func TestForward(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	objs := []runtime.Object{svc("prod", "outside", "", func(s *corev1.Service) {
		s.Spec.Type, s.Spec.ExternalName = corev1.ServiceTypeExternalName, "example.com"
	})}
	// The dead upstream first: it must be skipped, not fail the query.
	s, _ := testServer(t, objs, func(c *Config) { c.Upstreams = []string{deadAddr(t), up.addr} })
	addr := s.Addrs()[0]
	cases := []struct {
		name    string
		net     string
		size    uint16 // client's EDNS0 size; 0: none
		qname   string
		qtype   uint16
		rcode   int
		answers int
		first   string // first answer, if checked
		tc      bool   // truncated for the client
		tcp     bool   // upstream asked over TCP
	}{
		{name: "passed back", net: "udp", qname: "example.com.", qtype: mdns.TypeA, answers: 1,
			first: "example.com. 300 IN A 93.184.215.14"},
		{name: "NXDOMAIN passed back", net: "udp", qname: "missing.example.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError},
		{name: "PTR of an unknown address", net: "udp", qname: "4.3.2.1.in-addr.arpa.", qtype: mdns.TypePTR, answers: 1,
			first: "4.3.2.1.in-addr.arpa. 300 IN PTR one.example."},
		{name: "truncated upstream answer fetched over TCP", net: "tcp", qname: "big.example.", qtype: mdns.TypeA,
			answers: bigAnswer, tcp: true},
		{name: "too big for the UDP client: TC", net: "udp", qname: "big.example.", qtype: mdns.TypeA, tc: true, tcp: true},
		{name: "fits the client's EDNS0 size", net: "udp", size: 4096, qname: "big.example.", qtype: mdns.TypeA,
			answers: bigAnswer},
		{name: "ExternalName chased upstream", net: "udp", qname: "outside.prod.svc.cluster.local.", qtype: mdns.TypeA,
			answers: 2, first: "outside.prod.svc.cluster.local. 30 IN CNAME example.com."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Serial: the upstream's TCP counter is shared.
			tcpBefore := up.tcp.Load()
			r := exchange(t, c.net, addr, c.qname, c.qtype, c.size)
			if r.Rcode != c.rcode {
				t.Errorf("rcode %s, want %s", mdns.RcodeToString[r.Rcode], mdns.RcodeToString[c.rcode])
			}
			if r.Truncated != c.tc {
				t.Errorf("TC %v, want %v", r.Truncated, c.tc)
			}
			if !c.tc && len(r.Answer) != c.answers {
				t.Errorf("%d answers, want %d: %v", len(r.Answer), c.answers, r.Answer)
			}
			if c.first != "" && (len(r.Answer) == 0 || rrs(r.Answer[:1], true)[0] != c.first) {
				t.Errorf("answer %v, want first %q", r.Answer, c.first)
			}
			if asked := up.tcp.Load() > tcpBefore; asked != c.tcp {
				t.Errorf("upstream asked over TCP: %v, want %v", asked, c.tcp)
			}
		})
	}
}

func TestForwardWithoutUpstreams(t *testing.T) {
	t.Parallel()
	s, _ := testServer(t, nil)
	if r := exchange(t, "udp", s.Addrs()[0], "example.com.", mdns.TypeA, 0); r.Rcode != mdns.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL", mdns.RcodeToString[r.Rcode])
	}
}

func TestUpstreams(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		resolvConf string // "" : no file
		upstreams  []string
		listen     []string
		want       []string
	}{
		{name: "resolv.conf", resolvConf: "search example\nnameserver 10.0.0.2\nnameserver fd00::53\n",
			listen: []string{"0.0.0.0:10053"}, want: []string{"10.0.0.2:53", "[fd00::53]:53"}},
		{name: "host stub kept when we are elsewhere", resolvConf: "nameserver 127.0.0.53\n",
			listen: []string{"0.0.0.0:10053"}, want: []string{"127.0.0.53:53"}},
		{name: "loopback skipped when we hold its port", resolvConf: "nameserver 127.0.0.53\nnameserver 10.0.0.2\n",
			listen: []string{"0.0.0.0:53"}, want: []string{"10.0.0.2:53"}},
		{name: "our own address skipped", resolvConf: "nameserver 10.0.0.7\nnameserver 10.0.0.2\n",
			listen: []string{"10.0.0.7:53"}, want: []string{"10.0.0.2:53"}},
		{name: "no resolv.conf", listen: []string{"0.0.0.0:10053"}},
		{name: "configured win", resolvConf: "nameserver 10.0.0.2\n", upstreams: []string{"1.1.1.1", "9.9.9.9:5353", "[2606:4700::1111]"},
			listen: []string{"0.0.0.0:10053"}, want: []string{"1.1.1.1:53", "9.9.9.9:5353", "[2606:4700::1111]:53"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "resolv.conf")
			if c.resolvConf != "" {
				if err := os.WriteFile(path, []byte(c.resolvConf), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := upstreams(Config{ResolvConf: path, Upstreams: c.upstreams, Listen: c.listen})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
	if _, err := upstreams(Config{Upstreams: []string{"dns.example"}}); err == nil {
		t.Error("a host name as upstream was accepted")
	}
}

// TestListenSamePort checks that port 0 gives UDP and TCP the same port,
// which the DNS Service's endpoint names once for both.
func TestListenSamePort(t *testing.T) {
	t.Parallel()
	for i := range 5 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			ls, err := listen([]string{"127.0.0.1:0"})
			if err != nil {
				t.Fatal(err)
			}
			defer ls.close()
			if u, l := ls.udp[0].LocalAddr().String(), ls.tcp[0].Addr().String(); u != l {
				t.Errorf("udp %s, tcp %s", u, l)
			}
		})
	}
}
