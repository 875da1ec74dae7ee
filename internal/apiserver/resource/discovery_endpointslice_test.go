package resource

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func testSlice(mut func(*discoveryv1.EndpointSlice)) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-abc", Namespace: "default"},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.42.0.5"}, NodeName: ptr.To("node-1")}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](80)}},
	}
	mut(s)
	return s
}

func TestEndpointSliceDefaults(t *testing.T) {
	t.Parallel()
	s := testSlice(func(s *discoveryv1.EndpointSlice) {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Port: ptr.To[int32](53), Protocol: ptr.To(corev1.ProtocolUDP)})
	})
	EndpointSlices().Default(s)
	tests := []struct {
		name            string
		port            discoveryv1.EndpointPort
		protocol, name2 string
	}{
		{"unset protocol is TCP", s.Ports[0], "TCP", "http"},
		{"set protocol kept, name filled", s.Ports[1], "UDP", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if string(ptr.Deref(tt.port.Protocol, "")) != tt.protocol || tt.port.Name == nil || *tt.port.Name != tt.name2 {
				t.Errorf("port = %+v", tt.port)
			}
		})
	}
}

func TestEndpointSliceValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mut  func(*discoveryv1.EndpointSlice)
		want []string
	}{
		{"valid", func(*discoveryv1.EndpointSlice) {}, nil},
		{"ipv6", func(s *discoveryv1.EndpointSlice) {
			s.AddressType = discoveryv1.AddressTypeIPv6
			s.Endpoints[0].Addresses = []string{"fd00::5"}
		}, nil},
		{"fqdn", func(s *discoveryv1.EndpointSlice) {
			s.AddressType = discoveryv1.AddressTypeFQDN
			s.Endpoints[0].Addresses = []string{"db.example.com"}
		}, nil},
		{"no address type", func(s *discoveryv1.EndpointSlice) { s.AddressType = "" }, []string{"addressType"}},
		{"bad address type", func(s *discoveryv1.EndpointSlice) { s.AddressType = "IP" }, []string{"addressType"}},
		{"wrong family", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Addresses = []string{"fd00::5"} }, []string{"endpoints[0].addresses[0]"}},
		{"not an ip", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Addresses = []string{"10.42.0"} }, []string{"endpoints[0].addresses[0]"}},
		{"loopback", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Addresses = []string{"127.0.0.1"} }, []string{"endpoints[0].addresses[0]"}},
		{"link local", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Addresses = []string{"169.254.1.1"} }, []string{"endpoints[0].addresses[0]"}},
		{"no addresses", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Addresses = nil }, []string{"endpoints[0].addresses"}},
		{"bad hostname", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Hostname = ptr.To("Web_1") }, []string{"endpoints[0].hostname"}},
		{"too many zone hints", func(s *discoveryv1.EndpointSlice) {
			s.Endpoints[0].Hints = &discoveryv1.EndpointHints{ForZones: make([]discoveryv1.ForZone, 9)}
		}, []string{"endpoints[0].hints.forZones", "endpoints[0].hints.forZones[0].name", "endpoints[0].hints.forZones[1].name",
			"endpoints[0].hints.forZones[2].name", "endpoints[0].hints.forZones[3].name", "endpoints[0].hints.forZones[4].name",
			"endpoints[0].hints.forZones[5].name", "endpoints[0].hints.forZones[6].name", "endpoints[0].hints.forZones[7].name",
			"endpoints[0].hints.forZones[8].name"}},
		{"duplicate port name", func(s *discoveryv1.EndpointSlice) { s.Ports = append(s.Ports, s.Ports[0]) }, []string{"ports[1].name"}},
		{"bad protocol", func(s *discoveryv1.EndpointSlice) { s.Ports[0].Protocol = ptr.To(corev1.Protocol("ICMP")) }, []string{"ports[0].protocol"}},
		{"bad port", func(s *discoveryv1.EndpointSlice) { s.Ports[0].Port = ptr.To[int32](70000) }, []string{"ports[0].port"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wlAssertFields(t, wlCreate(EndpointSlices(), testSlice(tt.mut)), tt.want...)
		})
	}
}

func TestEndpointSliceUpdate(t *testing.T) {
	t.Parallel()
	old := testSlice(func(*discoveryv1.EndpointSlice) {})
	tests := []struct {
		name string
		mut  func(*discoveryv1.EndpointSlice)
		want []string
	}{
		{"new endpoint", func(s *discoveryv1.EndpointSlice) {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.42.1.9"}})
		}, nil},
		{"family change", func(s *discoveryv1.EndpointSlice) {
			s.AddressType = discoveryv1.AddressTypeIPv6
			s.Endpoints[0].Addresses = []string{"fd00::5"}
		}, []string{"addressType"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			obj := old.DeepCopy()
			tt.mut(obj)
			wlAssertFields(t, wlUpdate(EndpointSlices(), obj, old), tt.want...)
		})
	}
}

func TestEndpointSliceRow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		mut              func(*discoveryv1.EndpointSlice)
		ports, endpoints string
	}{
		{"one", func(*discoveryv1.EndpointSlice) {}, "80", "10.42.0.5"},
		{"empty", func(s *discoveryv1.EndpointSlice) { s.Ports, s.Endpoints = nil, nil }, "<unset>", "<unset>"},
		{"all ports and many addresses", func(s *discoveryv1.EndpointSlice) {
			s.Ports = []discoveryv1.EndpointPort{{}}
			s.Endpoints = []discoveryv1.Endpoint{
				{Addresses: []string{"10.0.0.1", "10.0.0.2"}},
				{Addresses: []string{"10.0.0.3", "10.0.0.4", "10.0.0.5"}},
			}
		}, "*", "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wlAssertRow(t, EndpointSlices(), testSlice(tt.mut), []any{"web-abc", "IPv4", tt.ports, tt.endpoints, "<unknown>"})
		})
	}
}
