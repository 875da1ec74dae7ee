package dns

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
)

// view is the cluster's DNS data. Informer callbacks write it; queries
// read it. Each change recomputes only the Service it touches, so a
// query never walks more than one Service's records.
type view struct {
	domain string // lower case, no trailing dot
	zone   string // domain + ".", for suffix checks
	ttl    uint32

	mu       sync.RWMutex
	services map[key]*service
	// perNamespace counts Services per namespace: "<ns>.svc.<domain>"
	// exists (NODATA rather than NXDOMAIN) while it has any.
	perNamespace map[string]int
	// slices holds every EndpointSlice by the Service it names, since
	// slices may arrive before their Service.
	slices map[key]map[string]*slice
	// sliceOwner is the Service each slice was filed under, so a slice
	// relabelled to another Service leaves the first.
	sliceOwner map[key]key
	// ptr maps addresses to the names pointing at them.
	ptr    map[netip.Addr][]ptrRecord
	serial uint32
}

// key names a namespaced object.
type key struct{ ns, name string }

// service is what DNS needs of a Service and its ready endpoints.
type service struct {
	headless  bool
	external  string // ExternalName target, FQDN; "" otherwise
	ips       []netip.Addr
	ports     []port
	notReady  bool // publishNotReadyAddresses
	endpoints []endpoint
	// ptrs are the addresses this Service put in view.ptr.
	ptrs []netip.Addr
}

// port is a named port: SRV records exist for named ports only.
type port struct {
	name, proto string // proto lower case: "tcp", "udp", "sctp"
	port        uint16
}

// endpoint is one ready address of a headless Service.
type endpoint struct {
	addr  netip.Addr
	label string // hostname, else the address with dashes
	ports []port
}

// slice is what DNS needs of an EndpointSlice.
type slice struct {
	endpoints []sliceEndpoint
	ports     []port
}

type sliceEndpoint struct {
	addrs    []netip.Addr
	hostname string
	ready    bool
}

type ptrRecord struct {
	owner  key
	target string // FQDN
}

func newView(domain string, ttl uint32) *view {
	return &view{
		domain: domain, zone: domain + ".", ttl: ttl,
		services: map[key]*service{}, perNamespace: map[string]int{},
		slices: map[key]map[string]*slice{}, sliceOwner: map[key]key{},
		ptr: map[netip.Addr][]ptrRecord{}, serial: uint32(time.Now().Unix()),
	}
}

// trim drops what DNS never reads before objects enter the informer
// cache; managed fields are often most of an object's size.
func trim(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
		m.SetAnnotations(nil)
	}
	return obj, nil
}

func (v *view) setService(s *corev1.Service) {
	k := key{s.Namespace, s.Name}
	rec := &service{notReady: s.Spec.PublishNotReadyAddresses}
	switch {
	case s.Spec.Type == corev1.ServiceTypeExternalName:
		rec.external = strings.ToLower(strings.TrimSuffix(s.Spec.ExternalName, ".")) + "."
	case s.Spec.ClusterIP == corev1.ClusterIPNone:
		rec.headless = true
	default:
		ips := s.Spec.ClusterIPs
		if len(ips) == 0 && s.Spec.ClusterIP != "" {
			ips = []string{s.Spec.ClusterIP}
		}
		for _, ip := range ips {
			if a, err := netip.ParseAddr(ip); err == nil {
				rec.ips = append(rec.ips, a.Unmap())
			}
		}
	}
	for _, p := range s.Spec.Ports {
		if p.Name != "" && p.Port > 0 {
			rec.ports = append(rec.ports, port{name: p.Name, proto: protoName(p.Protocol), port: uint16(p.Port)})
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if old, ok := v.services[k]; ok {
		v.dropPTRs(k, old) // its addresses may be gone: a type change drops the cluster IP
	} else {
		v.perNamespace[k.ns]++
	}
	v.services[k] = rec
	v.rebuild(k)
}

func (v *view) deleteService(s *corev1.Service) {
	k := key{s.Namespace, s.Name}
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.services[k]; !ok {
		return
	}
	v.dropPTRs(k, v.services[k])
	delete(v.services, k)
	if v.perNamespace[k.ns]--; v.perNamespace[k.ns] <= 0 {
		delete(v.perNamespace, k.ns)
	}
	v.serial++
}

func (v *view) setSlice(es *discoveryv1.EndpointSlice) {
	sk := key{es.Namespace, es.Name}
	owner := key{es.Namespace, es.Labels[discoveryv1.LabelServiceName]}
	var rec *slice
	if owner.name != "" && es.AddressType != discoveryv1.AddressTypeFQDN {
		rec = &slice{}
		for _, p := range es.Ports {
			if p.Name != nil && *p.Name != "" && p.Port != nil && *p.Port > 0 {
				proto := corev1.ProtocolTCP
				if p.Protocol != nil {
					proto = *p.Protocol
				}
				rec.ports = append(rec.ports, port{name: *p.Name, proto: protoName(proto), port: uint16(*p.Port)})
			}
		}
		for _, e := range es.Endpoints {
			se := sliceEndpoint{ready: e.Conditions.Ready == nil || *e.Conditions.Ready}
			if e.Hostname != nil {
				se.hostname = strings.ToLower(*e.Hostname)
			}
			for _, a := range e.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					se.addrs = append(se.addrs, ip.Unmap())
				}
			}
			rec.endpoints = append(rec.endpoints, se)
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if old, ok := v.sliceOwner[sk]; ok && (rec == nil || old != owner) {
		v.removeSlice(sk, old)
	}
	if rec == nil {
		return
	}
	if v.slices[owner] == nil {
		v.slices[owner] = map[string]*slice{}
	}
	v.slices[owner][es.Name] = rec
	v.sliceOwner[sk] = owner
	v.rebuild(owner)
}

func (v *view) deleteSlice(es *discoveryv1.EndpointSlice) {
	sk := key{es.Namespace, es.Name}
	v.mu.Lock()
	defer v.mu.Unlock()
	if owner, ok := v.sliceOwner[sk]; ok {
		v.removeSlice(sk, owner)
	}
}

// removeSlice takes a slice out of its Service; v.mu is held.
func (v *view) removeSlice(sk, owner key) {
	delete(v.slices[owner], sk.name)
	if len(v.slices[owner]) == 0 {
		delete(v.slices, owner)
	}
	delete(v.sliceOwner, sk)
	v.rebuild(owner)
}

// rebuild recomputes a Service's endpoints and reverse records from its
// slices; v.mu is held.
func (v *view) rebuild(k key) {
	v.serial++
	s := v.services[k]
	if s == nil {
		return
	}
	v.dropPTRs(k, s)
	s.endpoints = nil
	if s.headless {
		seen := map[netip.Addr]bool{}
		for _, sl := range v.slices[k] {
			for _, e := range sl.endpoints {
				if !e.ready && !s.notReady {
					continue
				}
				for _, a := range e.addrs {
					if seen[a] {
						continue // listed twice while slices hand over
					}
					seen[a] = true
					label := e.hostname
					if label == "" {
						label = dashed(a)
					}
					s.endpoints = append(s.endpoints, endpoint{addr: a, label: label, ports: sl.ports})
				}
			}
		}
		// Slices come from a map: sort, so answers are stable.
		slices.SortFunc(s.endpoints, func(a, b endpoint) int { return a.addr.Compare(b.addr) })
	}
	svcName := k.name + "." + k.ns + ".svc." + v.zone
	for _, ip := range s.ips {
		v.addPTR(k, s, ip, svcName)
	}
	for _, e := range s.endpoints {
		v.addPTR(k, s, e.addr, e.label+"."+svcName)
	}
}

func (v *view) addPTR(k key, s *service, a netip.Addr, target string) {
	v.ptr[a] = append(v.ptr[a], ptrRecord{owner: k, target: target})
	s.ptrs = append(s.ptrs, a)
}

func (v *view) dropPTRs(k key, s *service) {
	for _, a := range s.ptrs {
		recs := slices.DeleteFunc(v.ptr[a], func(r ptrRecord) bool { return r.owner == k })
		if len(recs) == 0 {
			delete(v.ptr, a)
		} else {
			v.ptr[a] = recs
		}
	}
	s.ptrs = nil
}

// protoName is the protocol as SRV names spell it.
func protoName(p corev1.Protocol) string {
	if p == "" {
		return "tcp"
	}
	return strings.ToLower(string(p))
}

// dashed spells an address as one DNS label: 10.1.2.3 → 10-1-2-3,
// fd00::1 → fd00--1.
func dashed(a netip.Addr) string {
	if a.Is4() {
		return strings.ReplaceAll(a.String(), ".", "-")
	}
	return strings.ReplaceAll(a.WithZone("").String(), ":", "-")
}

// undashed parses a dashed label back; ok is false for anything else.
func undashed(label string) (netip.Addr, bool) {
	if strings.ContainsAny(label, ":.%") {
		return netip.Addr{}, false
	}
	if strings.Count(label, "-") == 3 {
		if a, err := netip.ParseAddr(strings.ReplaceAll(label, "-", ".")); err == nil && a.Is4() {
			return a, true
		}
	}
	if a, err := netip.ParseAddr(strings.ReplaceAll(label, "-", ":")); err == nil && a.Is6() && !a.Is4In6() && a.Zone() == "" {
		return a, true
	}
	return netip.Addr{}, false
}
