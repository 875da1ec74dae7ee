package resource

import (
	"fmt"
	"net"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var (
	supportedServiceTypes     = []corev1.ServiceType{corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName}
	supportedSessionAffinity  = []corev1.ServiceAffinity{corev1.ServiceAffinityClientIP, corev1.ServiceAffinityNone}
	supportedExternalPolicies = []corev1.ServiceExternalTrafficPolicy{corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal}
	supportedInternalPolicies = []corev1.ServiceInternalTrafficPolicy{corev1.ServiceInternalTrafficPolicyCluster, corev1.ServiceInternalTrafficPolicyLocal}
	supportedIPFamilyPolicies = []corev1.IPFamilyPolicy{corev1.IPFamilyPolicySingleStack, corev1.IPFamilyPolicyPreferDualStack, corev1.IPFamilyPolicyRequireDualStack}
	supportedIPFamilies       = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
)

func validateService(s *corev1.Service) field.ErrorList {
	var errs field.ErrorList
	spec := &s.Spec
	path := field.NewPath("spec")

	switch {
	case spec.Type == "":
		errs = append(errs, field.Required(path.Child("type"), ""))
	case !coreContains(supportedServiceTypes, spec.Type):
		errs = append(errs, field.NotSupported(path.Child("type"), spec.Type, supportedServiceTypes))
	}

	headless := spec.ClusterIP == corev1.ClusterIPNone
	if spec.Type == corev1.ServiceTypeExternalName {
		if spec.ClusterIP != "" {
			errs = append(errs, field.Forbidden(path.Child("clusterIP"), "may not be set for ExternalName services"))
		}
		// A trailing dot marks a fully qualified name; it is still valid.
		name := strings.TrimSuffix(spec.ExternalName, ".")
		if spec.ExternalName == "" {
			errs = append(errs, field.Required(path.Child("externalName"), ""))
		} else {
			errs = append(errs, coreNamesErrors(path.Child("externalName"), spec.ExternalName, validation.IsDNS1123Subdomain(name))...)
		}
	} else {
		errs = append(errs, validateClusterIPs(spec, path)...)
	}
	if headless && (spec.Type == corev1.ServiceTypeNodePort || spec.Type == corev1.ServiceTypeLoadBalancer) {
		errs = append(errs, field.Invalid(path.Child("clusterIP"), spec.ClusterIP, fmt.Sprintf("may not be set to 'None' for %s services", spec.Type)))
	}

	if len(spec.Ports) == 0 && !headless && spec.Type != corev1.ServiceTypeExternalName {
		errs = append(errs, field.Required(path.Child("ports"), ""))
	}
	errs = append(errs, validateServicePorts(spec, path.Child("ports"))...)

	errs = append(errs, metav1validation.ValidateLabels(spec.Selector, path.Child("selector"))...)
	if !coreContains(supportedSessionAffinity, spec.SessionAffinity) {
		errs = append(errs, field.NotSupported(path.Child("sessionAffinity"), spec.SessionAffinity, supportedSessionAffinity))
	}
	if c := spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
		errs = append(errs, coreInRange(path.Child("sessionAffinityConfig", "clientIP", "timeoutSeconds"), int64(*c.ClientIP.TimeoutSeconds), 1, 86400)...)
	}

	external := spec.Type == corev1.ServiceTypeNodePort || spec.Type == corev1.ServiceTypeLoadBalancer
	switch p := path.Child("externalTrafficPolicy"); {
	case spec.ExternalTrafficPolicy == "":
	case !external:
		errs = append(errs, field.Invalid(p, spec.ExternalTrafficPolicy, "may only be set for externally-accessible services"))
	case !coreContains(supportedExternalPolicies, spec.ExternalTrafficPolicy):
		errs = append(errs, field.NotSupported(p, spec.ExternalTrafficPolicy, supportedExternalPolicies))
	}
	if spec.HealthCheckNodePort != 0 && !(spec.Type == corev1.ServiceTypeLoadBalancer && spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal) {
		errs = append(errs, field.Invalid(path.Child("healthCheckNodePort"), spec.HealthCheckNodePort, "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
	}
	if p := spec.InternalTrafficPolicy; p != nil && !coreContains(supportedInternalPolicies, *p) {
		errs = append(errs, field.NotSupported(path.Child("internalTrafficPolicy"), *p, supportedInternalPolicies))
	}
	for i, ip := range spec.ExternalIPs {
		if net.ParseIP(ip) == nil {
			errs = append(errs, field.Invalid(path.Child("externalIPs").Index(i), ip, "must be a valid IP address"))
		}
	}
	for i, r := range spec.LoadBalancerSourceRanges {
		if _, _, err := net.ParseCIDR(strings.TrimSpace(r)); err != nil {
			errs = append(errs, field.Invalid(path.Child("loadBalancerSourceRanges").Index(i), r, "must be a valid CIDR"))
		}
	}
	return errs
}

func validateClusterIPs(spec *corev1.ServiceSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if spec.ClusterIP != "" && len(spec.ClusterIPs) > 0 && spec.ClusterIPs[0] != spec.ClusterIP {
		errs = append(errs, field.Invalid(path.Child("clusterIPs").Index(0), spec.ClusterIPs[0], "must be same as `clusterIP`"))
	}
	for i, ip := range spec.ClusterIPs {
		p := path.Child("clusterIPs").Index(i)
		if i == 0 && ip == corev1.ClusterIPNone {
			if len(spec.ClusterIPs) > 1 {
				errs = append(errs, field.Invalid(p, ip, "'None' must be the first and only value"))
			}
			continue
		}
		if net.ParseIP(ip) == nil {
			errs = append(errs, field.Invalid(p, ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
		}
	}
	if len(spec.ClusterIPs) == 0 && spec.ClusterIP != "" && spec.ClusterIP != corev1.ClusterIPNone && net.ParseIP(spec.ClusterIP) == nil {
		errs = append(errs, field.Invalid(path.Child("clusterIP"), spec.ClusterIP, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
	}
	if p := spec.IPFamilyPolicy; p != nil && !coreContains(supportedIPFamilyPolicies, *p) {
		errs = append(errs, field.NotSupported(path.Child("ipFamilyPolicy"), *p, supportedIPFamilyPolicies))
	}
	for i, f := range spec.IPFamilies {
		p := path.Child("ipFamilies").Index(i)
		switch {
		case !coreContains(supportedIPFamilies, f):
			errs = append(errs, field.NotSupported(p, f, supportedIPFamilies))
		case coreContains(spec.IPFamilies[:i], f):
			errs = append(errs, field.Duplicate(p, f))
		}
	}
	return errs
}

// validateServicePorts: with several ports, endpoints and DNS SRV records
// tell them apart by name, so names become mandatory and unique.
func validateServicePorts(spec *corev1.ServiceSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	portProtos := sets.New[string]()
	nodePorts := sets.New[string]()
	requireName := len(spec.Ports) > 1
	for i, port := range spec.Ports {
		p := path.Index(i)
		switch {
		case port.Name == "" && requireName:
			errs = append(errs, field.Required(p.Child("name"), ""))
		case port.Name != "":
			errs = append(errs, coreNamesErrors(p.Child("name"), port.Name, validation.IsDNS1123Label(port.Name))...)
			if names.Has(port.Name) {
				errs = append(errs, field.Duplicate(p.Child("name"), port.Name))
			}
			names.Insert(port.Name)
		}
		errs = append(errs, coreNamesErrors(p.Child("port"), port.Port, validation.IsValidPortNum(int(port.Port)))...)
		if port.Protocol == "" {
			errs = append(errs, field.Required(p.Child("protocol"), ""))
		} else if !coreContains(supportedPortProtocols, port.Protocol) {
			errs = append(errs, field.NotSupported(p.Child("protocol"), port.Protocol, supportedPortProtocols))
		}
		key := fmt.Sprintf("%d/%s", port.Port, port.Protocol)
		if portProtos.Has(key) {
			errs = append(errs, field.Duplicate(p, key))
		}
		portProtos.Insert(key)
		errs = append(errs, validateProbePort(port.TargetPort.IntValue(), port.TargetPort.String(), port.TargetPort.Type == 0, p.Child("targetPort"))...)
		if port.NodePort != 0 {
			if spec.Type != corev1.ServiceTypeNodePort && spec.Type != corev1.ServiceTypeLoadBalancer {
				errs = append(errs, field.Forbidden(p.Child("nodePort"), fmt.Sprintf("may not be used when `type` is '%s'", spec.Type)))
			}
			errs = append(errs, coreNamesErrors(p.Child("nodePort"), port.NodePort, validation.IsValidPortNum(int(port.NodePort)))...)
			nk := fmt.Sprintf("%d/%s", port.NodePort, port.Protocol)
			if nodePorts.Has(nk) {
				errs = append(errs, field.Duplicate(p.Child("nodePort"), port.NodePort))
			}
			nodePorts.Insert(nk)
		}
	}
	return errs
}

// validateServiceUpdate keeps an assigned cluster IP: proxies and DNS
// caches hold it, so it changes only as upstream allows, by moving to or
// from ExternalName (which has none).
func validateServiceUpdate(s, old *corev1.Service) field.ErrorList {
	errs := validateService(s)
	toOrFromExternalName := s.Spec.Type == corev1.ServiceTypeExternalName || old.Spec.Type == corev1.ServiceTypeExternalName
	if !toOrFromExternalName && old.Spec.ClusterIP != "" && s.Spec.ClusterIP != old.Spec.ClusterIP {
		errs = append(errs, field.Invalid(field.NewPath("spec", "clusterIP"), s.Spec.ClusterIP, "field is immutable"))
	}
	if !toOrFromExternalName && len(old.Spec.ClusterIPs) > 0 && len(s.Spec.ClusterIPs) > 0 && s.Spec.ClusterIPs[0] != old.Spec.ClusterIPs[0] {
		errs = append(errs, field.Invalid(field.NewPath("spec", "clusterIPs").Index(0), s.Spec.ClusterIPs[0], "may not change once set"))
	}
	return errs
}
