package resource

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Upstream's default ClientIP affinity timeout: three hours.
const defaultClientIPTimeout int32 = 10800

// Services describes core/v1 services. ClusterIP and NodePort allocation
// happen in the API server, which owns the allocators; this file only
// defaults and checks what the user wrote.
func Services() *Resource {
	return &Resource{
		Kind:       corev1.SchemeGroupVersion.WithKind("Service"),
		Plural:     "services",
		Namespaced: true,
		ShortNames: []string{"svc"},
		Categories: []string{"all"},
		New:        func() runtime.Object { return &corev1.Service{} },
		NewList:    func() runtime.Object { return &corev1.ServiceList{} },
		Default:    func(obj runtime.Object) { defaultService(obj.(*corev1.Service)) },
		PrepareUpdate: func(obj, old runtime.Object) {
			keepServiceAllocations(obj.(*corev1.Service), old.(*corev1.Service))
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateService(obj.(*corev1.Service)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateServiceUpdate(obj.(*corev1.Service), old.(*corev1.Service))
		},
		Columns: []metav1.TableColumnDefinition{
			NameColumn,
			{Name: "Type", Type: "string", Description: "Type of the service"},
			{Name: "Cluster-IP", Type: "string", Description: "Cluster IP of the service"},
			{Name: "External-IP", Type: "string", Description: "External IPs of the service"},
			{Name: "Port(s)", Type: "string", Description: "Ports the service exposes"},
			AgeColumn,
			{Name: "Selector", Type: "string", Priority: 1, Description: "Label selector of the pods the service routes to"},
		},
		Row: func(obj runtime.Object) []any { return serviceRow(obj.(*corev1.Service)) },
		Fields: func(obj runtime.Object) fields.Set {
			s := obj.(*corev1.Service)
			return fields.Set{"spec.clusterIP": s.Spec.ClusterIP, "spec.type": string(s.Spec.Type)}
		},
		Status: true,
	}
}

// keepServiceAllocations carries the cluster IP and node ports the server
// assigned into an update that leaves them out, as upstream does: re-applying
// a manifest that never named them is not an attempt to change them.
func keepServiceAllocations(s, old *corev1.Service) {
	external := func(x *corev1.Service) bool { return x.Spec.Type == corev1.ServiceTypeExternalName }
	if s.Spec.ClusterIP == "" && len(s.Spec.ClusterIPs) == 0 && !external(s) && !external(old) {
		s.Spec.ClusterIP = old.Spec.ClusterIP
		s.Spec.ClusterIPs = append([]string(nil), old.Spec.ClusterIPs...)
	}
	if s.Spec.IPFamilyPolicy == nil && old.Spec.IPFamilyPolicy != nil && s.Spec.ClusterIP == old.Spec.ClusterIP {
		p := *old.Spec.IPFamilyPolicy
		s.Spec.IPFamilyPolicy = &p
		s.Spec.IPFamilies = append([]corev1.IPFamily(nil), old.Spec.IPFamilies...)
	}
	nodePorts := s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer
	for i := range s.Spec.Ports {
		p := &s.Spec.Ports[i]
		if p.NodePort != 0 || !nodePorts {
			continue
		}
		for _, op := range old.Spec.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			if op.Port == p.Port && op.Protocol == proto {
				p.NodePort = op.NodePort
			}
		}
	}
	if s.Spec.HealthCheckNodePort == 0 {
		s.Spec.HealthCheckNodePort = old.Spec.HealthCheckNodePort
	}
}

func defaultService(s *corev1.Service) {
	spec := &s.Spec
	if spec.Type == "" {
		spec.Type = corev1.ServiceTypeClusterIP
	}
	if spec.SessionAffinity == "" {
		spec.SessionAffinity = corev1.ServiceAffinityNone
	}
	if spec.SessionAffinity == corev1.ServiceAffinityClientIP && spec.SessionAffinityConfig == nil {
		spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: corePtr(defaultClientIPTimeout)}}
	}
	for i := range spec.Ports {
		p := &spec.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort == (intstr.IntOrString{}) {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
	external := spec.Type == corev1.ServiceTypeNodePort || spec.Type == corev1.ServiceTypeLoadBalancer
	if external && spec.ExternalTrafficPolicy == "" {
		spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	}
	if spec.Type != corev1.ServiceTypeExternalName && spec.InternalTrafficPolicy == nil {
		spec.InternalTrafficPolicy = corePtr(corev1.ServiceInternalTrafficPolicyCluster)
	}
	if spec.Type == corev1.ServiceTypeLoadBalancer && spec.AllocateLoadBalancerNodePorts == nil {
		spec.AllocateLoadBalancerNodePorts = corePtr(true)
	}
	// clusterIPs mirrors clusterIP; old clients set only the singular.
	if spec.ClusterIP != "" && len(spec.ClusterIPs) == 0 {
		spec.ClusterIPs = []string{spec.ClusterIP}
	}
	if spec.ClusterIP == "" && len(spec.ClusterIPs) > 0 {
		spec.ClusterIP = spec.ClusterIPs[0]
	}
	// Skiff's service network is single-stack IPv4, so families follow
	// from the address, except that a selectorless headless service has no
	// address and upstream makes it require both families.
	if spec.Type != corev1.ServiceTypeExternalName && spec.ClusterIP != "" && spec.IPFamilyPolicy == nil {
		if spec.ClusterIP == corev1.ClusterIPNone && len(spec.Selector) == 0 {
			spec.IPFamilyPolicy = corePtr(corev1.IPFamilyPolicyRequireDualStack)
			if len(spec.IPFamilies) == 0 {
				spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
			}
		} else {
			spec.IPFamilyPolicy = corePtr(corev1.IPFamilyPolicySingleStack)
		}
	}
	if spec.Type != corev1.ServiceTypeExternalName && spec.ClusterIP != "" && len(spec.IPFamilies) == 0 {
		spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	}
}

func serviceRow(s *corev1.Service) []any {
	clusterIP := coreNoneOr(s.Spec.ClusterIP)
	return []any{
		s.Name, string(s.Spec.Type), clusterIP, serviceExternalIP(s), servicePorts(s.Spec.Ports),
		Age(s.CreationTimestamp), labels.FormatLabels(s.Spec.Selector),
	}
}

// serviceExternalIP mirrors kubectl: an ExternalName service shows its
// name, a load balancer its ingress (or <pending> until it has one).
func serviceExternalIP(s *corev1.Service) string {
	switch s.Spec.Type {
	case corev1.ServiceTypeExternalName:
		return s.Spec.ExternalName
	case corev1.ServiceTypeLoadBalancer:
		var ips []string
		for _, in := range s.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				ips = append(ips, in.IP)
			} else if in.Hostname != "" {
				ips = append(ips, in.Hostname)
			}
		}
		ips = append(ips, s.Spec.ExternalIPs...)
		if len(ips) == 0 {
			return "<pending>"
		}
		return strings.Join(ips, ",")
	}
	if len(s.Spec.ExternalIPs) > 0 {
		return strings.Join(s.Spec.ExternalIPs, ",")
	}
	return "<none>"
}

// servicePorts renders "80/TCP", or "80:30080/TCP" with a node port.
func servicePorts(ports []corev1.ServicePort) string {
	if len(ports) == 0 {
		return "<none>"
	}
	out := make([]string, len(ports))
	for i, p := range ports {
		if p.NodePort > 0 {
			out[i] = fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol)
		} else {
			out[i] = fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		}
	}
	return strings.Join(out, ",")
}
