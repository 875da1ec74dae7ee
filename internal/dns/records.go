package dns

import (
	"net/netip"
	"strconv"
	"strings"

	mdns "github.com/miekg/dns"
)

// answer is the view's reply for one name and type.
type answer struct {
	// exists tells NODATA (the name exists, not with this type) from
	// NXDOMAIN when records is empty.
	exists  bool
	records []mdns.RR
	extra   []mdns.RR
	// chase is an ExternalName target still to resolve for the type
	// asked: the records hold only the CNAME to it.
	chase string
}

// SOA timers other than the minimum (the negative TTL): nobody
// transfers this zone, so they only need to be sane.
const (
	soaRefresh = 7200
	soaRetry   = 1800
	soaExpire  = 86400
)

// soa is the cluster zone's SOA record; v.mu is held.
func (v *view) soa() mdns.RR {
	return &mdns.SOA{
		Hdr: mdns.RR_Header{Name: v.zone, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: v.ttl},
		Ns:  "ns.dns." + v.zone, Mbox: "hostmaster." + v.zone,
		Serial: v.serial, Refresh: soaRefresh, Retry: soaRetry, Expire: soaExpire, Minttl: v.ttl,
	}
}

// SOA returns the zone's SOA record, for negative answers.
func (v *view) SOA() mdns.RR {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.soa()
}

// inZone reports whether a lower-case FQDN is in the cluster domain.
func (v *view) inZone(name string) bool {
	return name == v.zone || (strings.HasSuffix(name, v.zone) && name[len(name)-len(v.zone)-1] == '.')
}

// lookup answers a name in the cluster domain. qname is the name as
// asked, echoed in the records; the lookup itself ignores case.
func (v *view) lookup(qname string, qtype uint16) answer {
	name := strings.ToLower(qname)
	v.mu.RLock()
	defer v.mu.RUnlock()
	if name == v.zone {
		a := answer{exists: true}
		if qtype == mdns.TypeSOA || qtype == mdns.TypeANY {
			soa := v.soa()
			soa.Header().Name = qname
			a.records = []mdns.RR{soa}
		}
		return a
	}
	// Names are read right to left: "<...>.<ns>.svc" or "<...>.<ns>.pod".
	// Anything longer than the forms below, such as a name a search path
	// has already been appended to, falls through to NXDOMAIN at once.
	labels := strings.Split(name[:len(name)-len(v.zone)-1], ".")
	n := len(labels)
	switch labels[n-1] {
	case "svc":
		return v.lookupService(qname, qtype, labels[:n-1])
	case "pod":
		return v.lookupPod(qname, qtype, labels[:n-1])
	}
	return answer{}
}

// lookupService answers "[...].<svc>.<ns>.svc"; l is the labels left of
// "svc".
func (v *view) lookupService(qname string, qtype uint16, l []string) answer {
	switch len(l) {
	case 0:
		return answer{exists: true}
	case 1:
		return answer{exists: v.perNamespace[l[0]] > 0}
	}
	n := len(l)
	s := v.services[key{ns: l[n-1], name: l[n-2]}]
	if s == nil || n > 4 {
		return answer{}
	}
	a := answer{}
	switch n {
	case 2: // <svc>.<ns>.svc
		a.exists = true
		if s.external != "" {
			a.records = []mdns.RR{&mdns.CNAME{Hdr: v.hdr(qname, mdns.TypeCNAME), Target: s.external}}
			if qtype != mdns.TypeCNAME {
				a.chase = s.external
			}
			return a
		}
		for _, ip := range s.ips {
			a.records = v.addAddr(a.records, qname, qtype, ip)
		}
		for _, e := range s.endpoints {
			a.records = v.addAddr(a.records, qname, qtype, e.addr)
		}
	case 3: // <endpoint>.<svc>.<ns>.svc, or the empty "_<proto>.<svc>.<ns>.svc"
		if proto, ok := strings.CutPrefix(l[0], "_"); ok {
			a.exists = s.hasPort("", proto)
			return a
		}
		for _, e := range s.endpoints {
			if e.label == l[0] {
				a.exists = true
				a.records = v.addAddr(a.records, qname, qtype, e.addr)
			}
		}
	case 4: // _<port>._<proto>.<svc>.<ns>.svc
		pname, ok1 := strings.CutPrefix(l[0], "_")
		proto, ok2 := strings.CutPrefix(l[1], "_")
		if !ok1 || !ok2 || s.external != "" {
			return a
		}
		a.exists = s.hasPort(pname, proto)
		if qtype != mdns.TypeSRV && qtype != mdns.TypeANY {
			return a
		}
		v.srv(&a, qname, s, l[n-2]+"."+l[n-1]+".svc."+v.zone, pname, proto)
	}
	return a
}

// srv fills the SRV records of a named port: one to the Service name for
// a cluster IP, one per endpoint for a headless Service, with their
// addresses as extra records.
func (v *view) srv(a *answer, qname string, s *service, svcName, pname, proto string) {
	add := func(target string, p uint16) {
		a.exists = true
		a.records = append(a.records, &mdns.SRV{Hdr: v.hdr(qname, mdns.TypeSRV), Port: p, Target: target})
	}
	if !s.headless {
		for _, p := range s.ports {
			if p.name == pname && p.proto == proto {
				add(svcName, p.port)
				for _, ip := range s.ips {
					a.extra = v.addAddr(a.extra, svcName, mdns.TypeANY, ip)
				}
				break
			}
		}
	} else {
		for _, e := range s.endpoints {
			for _, p := range e.ports {
				if p.name == pname && p.proto == proto {
					target := e.label + "." + svcName
					add(target, p.port)
					a.extra = v.addAddr(a.extra, target, mdns.TypeANY, e.addr)
					break
				}
			}
		}
	}
	// Equal shares, as upstream: clients pick among equal priorities by
	// weight.
	for _, rr := range a.records {
		rr.(*mdns.SRV).Weight = uint16(max(1, 100/len(a.records)))
	}
}

// hasPort reports whether the Service or one of its endpoints has a port
// of that protocol and, unless name is "", that name.
func (s *service) hasPort(name, proto string) bool {
	match := func(ps []port) bool {
		for _, p := range ps {
			if p.proto == proto && (name == "" || p.name == name) {
				return true
			}
		}
		return false
	}
	if match(s.ports) {
		return true
	}
	for _, e := range s.endpoints {
		if match(e.ports) {
			return true
		}
	}
	return false
}

// lookupPod answers "<a-b-c-d>.<ns>.pod" from the name alone, as
// upstream's "pods insecure" mode: the address is not checked against
// any pod.
func (v *view) lookupPod(qname string, qtype uint16, l []string) answer {
	switch len(l) {
	case 0, 1:
		return answer{exists: true}
	case 2:
		ip, ok := undashed(l[0])
		if !ok {
			return answer{}
		}
		return answer{exists: true, records: v.addAddr(nil, qname, qtype, ip)}
	}
	return answer{}
}

// reverse answers a PTR name for an address the view knows; ok is false
// for any other name, which belongs upstream.
func (v *view) reverse(qname string, qtype uint16) (answer, bool) {
	ip, ok := reverseAddr(strings.ToLower(qname))
	if !ok {
		return answer{}, false
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	recs := v.ptr[ip]
	if len(recs) == 0 {
		return answer{}, false
	}
	a := answer{exists: true}
	if qtype == mdns.TypePTR || qtype == mdns.TypeANY {
		for _, r := range recs {
			a.records = append(a.records, &mdns.PTR{Hdr: v.hdr(qname, mdns.TypePTR), Ptr: r.target})
		}
	}
	return a, true
}

func (v *view) hdr(name string, t uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: v.ttl}
}

// addAddr appends ip's A or AAAA record if qtype asks for its family.
func (v *view) addAddr(rrs []mdns.RR, name string, qtype uint16, ip netip.Addr) []mdns.RR {
	switch {
	case ip.Is4() && (qtype == mdns.TypeA || qtype == mdns.TypeANY):
		return append(rrs, &mdns.A{Hdr: v.hdr(name, mdns.TypeA), A: ip.AsSlice()})
	case ip.Is6() && (qtype == mdns.TypeAAAA || qtype == mdns.TypeANY):
		return append(rrs, &mdns.AAAA{Hdr: v.hdr(name, mdns.TypeAAAA), AAAA: ip.AsSlice()})
	}
	return rrs
}

// reverseAddr parses "d.c.b.a.in-addr.arpa." and the 32-nibble
// "….ip6.arpa." form.
func reverseAddr(name string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(name, ".in-addr.arpa."); ok {
		l := strings.Split(rest, ".")
		if len(l) != 4 {
			return netip.Addr{}, false
		}
		var b [4]byte
		for i, s := range l {
			n, err := strconv.ParseUint(s, 10, 8)
			if err != nil || (len(s) > 1 && s[0] == '0') {
				return netip.Addr{}, false
			}
			b[3-i] = byte(n)
		}
		return netip.AddrFrom4(b), true
	}
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa."); ok {
		l := strings.Split(rest, ".")
		if len(l) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, s := range l {
			n, err := strconv.ParseUint(s, 16, 4)
			if err != nil || len(s) != 1 {
				return netip.Addr{}, false
			}
			nib := 31 - i // the last label is the first nibble
			if nib%2 == 0 {
				b[nib/2] |= byte(n) << 4
			} else {
				b[nib/2] |= byte(n)
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}
