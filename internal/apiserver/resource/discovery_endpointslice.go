package resource

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// Upstream's size limits: a slice is meant to stay small enough that the
// proxies watching every slice can afford to receive each change.
const (
	sliceMaxEndpoints = 1000
	sliceMaxAddresses = 100
	sliceMaxPorts     = 20000
	sliceMaxTopology  = 16
	sliceMaxHints     = 8
	sliceShown        = 3
)

// EndpointSlices describes discovery.k8s.io/v1 EndpointSlices.
func EndpointSlices() *Resource {
	return &Resource{
		Kind:       discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice"),
		Plural:     "endpointslices",
		Namespaced: true,
		New:        func() runtime.Object { return &discoveryv1.EndpointSlice{} },
		NewList:    func() runtime.Object { return &discoveryv1.EndpointSliceList{} },
		Default: func(obj runtime.Object) {
			ports := obj.(*discoveryv1.EndpointSlice).Ports
			for i := range ports {
				p := &ports[i]
				if p.Name == nil {
					p.Name = ptr.To("")
				}
				if p.Protocol == nil {
					p.Protocol = ptr.To(corev1.ProtocolTCP)
				}
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateEndpointSlice(obj.(*discoveryv1.EndpointSlice))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			s, o := obj.(*discoveryv1.EndpointSlice), old.(*discoveryv1.EndpointSlice)
			// Consumers index slices by family; a slice changing family
			// would leave stale entries in their per-family state.
			errs := validateEndpointSlice(s)
			return append(errs, apivalidation.ValidateImmutableField(s.AddressType, o.AddressType, field.NewPath("addressType"))...)
		},
		Columns: []metav1.TableColumnDefinition{
			NameColumn,
			{Name: "AddressType", Type: "string", Description: discoveryv1.EndpointSlice{}.SwaggerDoc()["addressType"]},
			{Name: "Ports", Type: "string", Description: discoveryv1.EndpointSlice{}.SwaggerDoc()["ports"]},
			{Name: "Endpoints", Type: "string", Description: discoveryv1.EndpointSlice{}.SwaggerDoc()["endpoints"]},
			AgeColumn,
		},
		Row: func(obj runtime.Object) []any {
			s := obj.(*discoveryv1.EndpointSlice)
			return []any{s.Name, string(s.AddressType), slicePortsCell(s.Ports), sliceEndpointsCell(s.Endpoints), Age(s.CreationTimestamp)}
		},
		// Upstream bumps generation on any change, so the endpointslice
		// controller can tell its own writes from others' in its cache.
		Generation: true,
	}
}

func validateEndpointSlice(s *discoveryv1.EndpointSlice) field.ErrorList {
	var errs field.ErrorList
	switch s.AddressType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN:
	case "":
		errs = append(errs, field.Required(field.NewPath("addressType"), ""))
	default:
		errs = append(errs, field.NotSupported(field.NewPath("addressType"), s.AddressType, []string{string(discoveryv1.AddressTypeIPv4), string(discoveryv1.AddressTypeIPv6), string(discoveryv1.AddressTypeFQDN)}))
	}

	ep := field.NewPath("endpoints")
	if len(s.Endpoints) > sliceMaxEndpoints {
		errs = append(errs, field.TooMany(ep, len(s.Endpoints), sliceMaxEndpoints))
	}
	for i := range s.Endpoints {
		errs = append(errs, validateSliceEndpoint(&s.Endpoints[i], s.AddressType, ep.Index(i))...)
	}

	pp := field.NewPath("ports")
	if len(s.Ports) > sliceMaxPorts {
		errs = append(errs, field.TooMany(pp, len(s.Ports), sliceMaxPorts))
	}
	names := map[string]bool{}
	for i, p := range s.Ports {
		ip := pp.Index(i)
		// Ports are told apart by name, so names must be unique; the
		// empty name is allowed once, for a slice's single unnamed port.
		if name := ptr.Deref(p.Name, ""); name != "" || p.Name != nil {
			if name != "" {
				for _, msg := range validation.IsDNS1123Label(name) {
					errs = append(errs, field.Invalid(ip.Child("name"), name, msg))
				}
			}
			if names[name] {
				errs = append(errs, field.Duplicate(ip.Child("name"), name))
			}
			names[name] = true
		}
		switch ptr.Deref(p.Protocol, "") {
		case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		case "":
			errs = append(errs, field.Required(ip.Child("protocol"), ""))
		default:
			errs = append(errs, field.NotSupported(ip.Child("protocol"), *p.Protocol, []string{string(corev1.ProtocolTCP), string(corev1.ProtocolUDP), string(corev1.ProtocolSCTP)}))
		}
		if p.Port != nil {
			for _, msg := range validation.IsValidPortNum(int(*p.Port)) {
				errs = append(errs, field.Invalid(ip.Child("port"), *p.Port, msg))
			}
		}
		if p.AppProtocol != nil {
			for _, msg := range validation.IsQualifiedName(*p.AppProtocol) {
				errs = append(errs, field.Invalid(ip.Child("appProtocol"), *p.AppProtocol, msg))
			}
		}
	}
	return errs
}

func validateSliceEndpoint(e *discoveryv1.Endpoint, family discoveryv1.AddressType, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	ap := path.Child("addresses")
	switch n := len(e.Addresses); {
	case n == 0:
		errs = append(errs, field.Required(ap, "must contain at least 1 address"))
	case n > sliceMaxAddresses:
		errs = append(errs, field.TooMany(ap, n, sliceMaxAddresses))
	}
	for i, a := range e.Addresses {
		errs = append(errs, validateSliceAddress(a, family, ap.Index(i))...)
	}
	if e.Hostname != nil {
		for _, msg := range validation.IsDNS1123Label(*e.Hostname) {
			errs = append(errs, field.Invalid(path.Child("hostname"), *e.Hostname, msg))
		}
	}
	if e.NodeName != nil {
		for _, msg := range validation.IsDNS1123Subdomain(*e.NodeName) {
			errs = append(errs, field.Invalid(path.Child("nodeName"), *e.NodeName, msg))
		}
	}
	tp := path.Child("deprecatedTopology")
	if len(e.DeprecatedTopology) > sliceMaxTopology {
		errs = append(errs, field.TooMany(tp, len(e.DeprecatedTopology), sliceMaxTopology))
	}
	errs = append(errs, metav1validation.ValidateLabels(e.DeprecatedTopology, tp)...)
	if h := e.Hints; h != nil {
		hp := path.Child("hints")
		if len(h.ForZones) > sliceMaxHints {
			errs = append(errs, field.TooMany(hp.Child("forZones"), len(h.ForZones), sliceMaxHints))
		}
		for i, z := range h.ForZones {
			if z.Name == "" {
				errs = append(errs, field.Required(hp.Child("forZones").Index(i).Child("name"), ""))
			}
		}
		if len(h.ForNodes) > sliceMaxHints {
			errs = append(errs, field.TooMany(hp.Child("forNodes"), len(h.ForNodes), sliceMaxHints))
		}
		for i, n := range h.ForNodes {
			for _, msg := range validation.IsDNS1123Subdomain(n.Name) {
				errs = append(errs, field.Invalid(hp.Child("forNodes").Index(i).Child("name"), n.Name, msg))
			}
		}
	}
	return errs
}

// validateSliceAddress checks one address against the slice's family. IPs
// that can never reach a pod (unspecified, loopback, link-local) are
// refused: a proxy would otherwise send Service traffic to itself.
func validateSliceAddress(a string, family discoveryv1.AddressType, path *field.Path) field.ErrorList {
	switch family {
	case discoveryv1.AddressTypeFQDN:
		return validation.IsFullyQualifiedDomainName(path, a)
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
	default:
		return nil // addressType itself is reported
	}
	if errs := validation.IsValidIPForLegacyField(path, a, false, nil); len(errs) > 0 {
		return errs
	}
	ip := net.ParseIP(a)
	if (ip.To4() != nil) != (family == discoveryv1.AddressTypeIPv4) {
		return field.ErrorList{field.Invalid(path, a, fmt.Sprintf("must be an %s address", family))}
	}
	switch {
	case ip.IsUnspecified():
		return field.ErrorList{field.Invalid(path, a, "may not be unspecified (0.0.0.0 or ::)")}
	case ip.IsLoopback():
		return field.ErrorList{field.Invalid(path, a, "may not be in the loopback range (127.0.0.0/8, ::1/128)")}
	case ip.IsLinkLocalUnicast():
		return field.ErrorList{field.Invalid(path, a, "may not be in the link-local range (169.254.0.0/16, fe80::/10)")}
	case ip.IsLinkLocalMulticast():
		return field.ErrorList{field.Invalid(path, a, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/16)")}
	}
	return nil
}

// slicePortsCell lists up to three ports ("*" for all ports), then how
// many more, as kubectl does.
func slicePortsCell(ports []discoveryv1.EndpointPort) string {
	list := make([]string, len(ports))
	for i, p := range ports {
		list[i] = "*"
		if p.Port != nil {
			list[i] = strconv.Itoa(int(*p.Port))
		}
	}
	return sliceListCell(list)
}

// sliceEndpointsCell lists up to three addresses across all endpoints.
func sliceEndpointsCell(endpoints []discoveryv1.Endpoint) string {
	var list []string
	for _, e := range endpoints {
		list = append(list, e.Addresses...)
	}
	return sliceListCell(list)
}

func sliceListCell(list []string) string {
	switch {
	case len(list) == 0:
		return "<unset>"
	case len(list) > sliceShown:
		return fmt.Sprintf("%s + %d more...", strings.Join(list[:sliceShown], ","), len(list)-sliceShown)
	}
	return strings.Join(list, ",")
}
