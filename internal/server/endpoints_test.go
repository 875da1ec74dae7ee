package server

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
)

func TestAPIServerSubsets(t *testing.T) {
	t.Parallel()
	subset := func(port int32, ips ...string) corev1.EndpointSubset {
		s := corev1.EndpointSubset{Ports: []corev1.EndpointPort{{Name: "https", Port: port, Protocol: corev1.ProtocolTCP}}}
		for _, ip := range ips {
			s.Addresses = append(s.Addresses, corev1.EndpointAddress{IP: ip})
		}
		return s
	}
	cases := []struct {
		name string
		ids  []string
		want []corev1.EndpointSubset
	}{
		{"none", nil, nil},
		{"sorted whatever the lease order", []string{"10.0.0.3:6443", "10.0.0.1:6443", "10.0.0.2:6443"},
			[]corev1.EndpointSubset{subset(6443, "10.0.0.1", "10.0.0.2", "10.0.0.3")}},
		{"one subset per port", []string{"10.0.0.2:7443", "10.0.0.1:6443"},
			[]corev1.EndpointSubset{subset(6443, "10.0.0.1"), subset(7443, "10.0.0.2")}},
		{"duplicates once", []string{"10.0.0.1:6443", "10.0.0.1:6443"}, []corev1.EndpointSubset{subset(6443, "10.0.0.1")}},
		{"garbage skipped", []string{"not-an-ip:6443", "10.0.0.1", "10.0.0.1:x", "[fd00::1]:6443"},
			[]corev1.EndpointSubset{subset(6443, "fd00::1")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if got := apiServerSubsets(c.ids); !apiequality.Semantic.DeepEqual(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}
