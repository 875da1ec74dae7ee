package pki

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// inClusterNames are the names pods use for the API server through the
// default/kubernetes Service, as upstream's serving certificate lists them.
var inClusterNames = []string{
	"kubernetes",
	"kubernetes.default",
	"kubernetes.default.svc",
	"kubernetes.default.svc.cluster.local",
}

// sanSet is a normalised set of subject alternative names, so that the
// stored certificate and the requested set compare equal regardless of
// order, case or IPv4-in-IPv6 form.
type sanSet struct {
	dns []string
	ips []net.IP
}

func newSANSet(dns []string, ips []net.IP) sanSet {
	var s sanSet
	for _, d := range dns {
		s.dns = append(s.dns, strings.ToLower(d))
	}
	slices.Sort(s.dns)
	s.dns = slices.Compact(s.dns)

	addrs := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		if a, ok := netip.AddrFromSlice(ip); ok {
			addrs = append(addrs, a.Unmap())
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	addrs = slices.Compact(addrs)
	for _, a := range addrs {
		s.ips = append(s.ips, net.IP(a.AsSlice()))
	}
	return s
}

func (s sanSet) equal(o sanSet) bool {
	return slices.Equal(s.dns, o.dns) && slices.Equal(s.ipStrings(), o.ipStrings())
}

func (s sanSet) ipStrings() []string {
	out := make([]string, len(s.ips))
	for i, ip := range s.ips {
		out[i] = ip.String()
	}
	return out
}

func sansOf(c *x509.Certificate) sanSet { return newSANSet(c.DNSNames, c.IPAddresses) }

// servingSANs is every name the API server is reached by: loopback, this
// host, the in-cluster Service, and the operator's --tls-san values.
func servingSANs(cfg Config) (sanSet, error) {
	dns := append([]string{"localhost"}, inClusterNames...)
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, cfg.ServiceIP}
	host, err := cfg.hostSANs()
	if err != nil {
		return sanSet{}, err
	}
	for _, name := range host {
		// A host name that is not a valid DNS name (an underscore, say)
		// cannot be used in a certificate; skip it rather than refuse to
		// start, since the operator did not ask for it.
		if ip, d, err := parseSAN(name); err == nil {
			ips, dns = appendSAN(ips, dns, ip, d)
		}
	}
	for _, name := range cfg.SANs {
		ip, d, err := parseSAN(name)
		if err != nil {
			return sanSet{}, err
		}
		ips, dns = appendSAN(ips, dns, ip, d)
	}
	return newSANSet(dns, ips), nil
}

func appendSAN(ips []net.IP, dns []string, ip net.IP, d string) ([]net.IP, []string) {
	if ip != nil {
		return append(ips, ip), dns
	}
	if d != "" {
		return ips, append(dns, d)
	}
	return ips, dns
}

// parseSAN classifies one SAN as an IP or a DNS name. Blank input yields
// neither. Wildcards are allowed: *.example.com is a reasonable --tls-san
// behind a load balancer.
func parseSAN(name string) (net.IP, string, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		return nil, "", nil
	}
	if ip := net.ParseIP(name); ip != nil {
		return ip, "", nil
	}
	var errs []string
	if strings.HasPrefix(name, "*.") {
		errs = validation.IsWildcardDNS1123Subdomain(name)
	} else {
		errs = validation.IsDNS1123Subdomain(name)
	}
	if len(errs) > 0 {
		return nil, "", fmt.Errorf("pki: SAN %q is neither an IP address nor a DNS name: %s", name, strings.Join(errs, "; "))
	}
	return nil, name, nil
}

// hostSANs returns the host's name and the addresses of its interfaces.
// Link-local addresses are left out: every pod's veth gets an fe80::
// address, so including them would bloat the certificate and reissue it on
// every restart without any client being able to use them.
func hostSANs() ([]string, error) {
	var out []string
	if name, err := os.Hostname(); err == nil && name != "" {
		out = append(out, name)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("pki: list interface addresses: %w", err)
	}
	for _, a := range addrs {
		ipnet, ok := a.(*net.IPNet)
		if !ok || ipnet.IP.IsLinkLocalUnicast() || ipnet.IP.IsLinkLocalMulticast() {
			continue
		}
		out = append(out, ipnet.IP.String())
	}
	return out, nil
}
