// Package proxytest holds what the service proxy's tests share: Service
// and EndpointSlice fixtures, throwaway network namespaces, and reading
// back the kernel's copy of a table.
package proxytest

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Service returns a ClusterIP Service with one TCP port named "http";
// opts adjust it.
func Service(ns, name, clusterIP string, port int32, opts ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeClusterIP,
			ClusterIP:  clusterIP,
			ClusterIPs: []string{clusterIP},
			Ports:      []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: port}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// NodePort makes a Service type NodePort with the given node port.
func NodePort(nodePort int32) func(*corev1.Service) {
	return func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.Ports[0].NodePort = nodePort
	}
}

// ExternalLocal sets externalTrafficPolicy Local.
func ExternalLocal(s *corev1.Service) {
	s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
}

// InternalLocal sets internalTrafficPolicy Local.
func InternalLocal(s *corev1.Service) {
	s.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
}

// Affinity sets ClientIP session affinity lasting seconds.
func Affinity(seconds int32) func(*corev1.Service) {
	return func(s *corev1.Service) {
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{
			ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To(seconds)},
		}
	}
}

// Endpoint describes one endpoint of a slice.
type Endpoint struct {
	IP   string
	Node string
	// NotReady and Terminating set the conditions; a terminating
	// endpoint is still serving unless NotServing.
	NotReady, Terminating, NotServing bool
}

// Slice returns an IPv4 EndpointSlice of Service ns/svc whose port
// "http" (TCP) is port.
func Slice(ns, svc, name string, port int32, eps ...Endpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(port)}},
	}
	for _, e := range eps {
		ep := discoveryv1.Endpoint{
			Addresses: []string{e.IP},
			Conditions: discoveryv1.EndpointConditions{
				Ready:       ptr.To(!e.NotReady),
				Serving:     ptr.To(!e.NotServing && (!e.NotReady || e.Terminating)),
				Terminating: ptr.To(e.Terminating),
			},
		}
		if e.Node != "" {
			ep.NodeName = ptr.To(e.Node)
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}

// Endpoints returns n ready endpoints on node, 10.<a>.<b>.<c> from base.
func Endpoints(n int, base int, node string) []Endpoint {
	out := make([]Endpoint, n)
	for i := range out {
		v := base + i
		out[i] = Endpoint{IP: fmt.Sprintf("10.%d.%d.%d", 100+v>>16&0x7f, v>>8&0xff, v&0xff), Node: node}
	}
	return out
}
