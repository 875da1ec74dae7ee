package server

import (
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
)

func TestDNSEndpoints(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		ids     []string
		subsets []string // "port: addresses"
		slices  []string // "name: addresses"
	}{
		{name: "none"},
		{name: "servers sorted", ids: []string{"10.0.0.3:10053", "10.0.0.1:10053"},
			subsets: []string{"10053: [10.0.0.1 10.0.0.3]"}, slices: []string{"kube-dns-ipv4-10053: [10.0.0.1 10.0.0.3]"}},
		{name: "one slice per family and port", ids: []string{"10.0.0.1:10053", "10.0.0.2:5353", "[fd00::1]:10053"},
			subsets: []string{"5353: [10.0.0.2]", "10053: [10.0.0.1 fd00::1]"},
			slices:  []string{"kube-dns-ipv4-10053: [10.0.0.1]", "kube-dns-ipv4-5353: [10.0.0.2]", "kube-dns-ipv6-10053: [fd00::1]"}},
		{name: "loopback only in the Endpoints", ids: []string{"127.0.0.1:10053", "10.0.0.1:10053"},
			subsets: []string{"10053: [10.0.0.1 127.0.0.1]"}, slices: []string{"kube-dns-ipv4-10053: [10.0.0.1]"}},
		{name: "garbage skipped", ids: []string{"x:53", "10.0.0.1", "10.0.0.1:0", "10.0.0.2:53"},
			subsets: []string{"53: [10.0.0.2]"}, slices: []string{"kube-dns-ipv4-53: [10.0.0.2]"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var subsets []string
			for _, s := range dnsSubsets(c.ids) {
				var ips []string
				for _, a := range s.Addresses {
					ips = append(ips, a.IP)
				}
				if want := dnsEndpointPorts(s.Ports[0].Port); !apiequality.Semantic.DeepEqual(s.Ports, want) {
					t.Errorf("ports %v, want %v", s.Ports, want)
				}
				subsets = append(subsets, fmt.Sprintf("%d: %v", s.Ports[0].Port, ips))
			}
			if !slices.Equal(subsets, c.subsets) {
				t.Errorf("subsets %q, want %q", subsets, c.subsets)
			}
			var got []string
			for _, s := range dnsSlices(c.ids) {
				var ips []string
				for _, e := range s.Endpoints {
					ips = append(ips, e.Addresses[0])
					if !*e.Conditions.Ready {
						t.Errorf("%s not ready", e.Addresses[0])
					}
				}
				if len(s.Ports) != 2 || *s.Ports[0].Protocol != corev1.ProtocolUDP || *s.Ports[1].Protocol != corev1.ProtocolTCP ||
					s.Labels["kubernetes.io/service-name"] != DNSServiceName || s.Labels["endpointslice.kubernetes.io/managed-by"] != dnsSliceManager {
					t.Errorf("slice %s: ports %v labels %v", s.Name, s.Ports, s.Labels)
				}
				got = append(got, fmt.Sprintf("%s: %v", s.Name, ips))
			}
			if !slices.Equal(got, c.slices) {
				t.Errorf("slices %q, want %q", got, c.slices)
			}
		})
	}
}
