package resource

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// endpointsShown is how many addresses kubectl lists before "+ N more...".
const endpointsShown = 3

// Endpoints describes core/v1 endpoints, still written by the endpoints
// controller for clients that predate EndpointSlices.
func Endpoints() *Resource {
	return &Resource{
		Kind:       corev1.SchemeGroupVersion.WithKind("Endpoints"),
		Plural:     "endpoints",
		Singular:   "endpoints",
		Namespaced: true,
		ShortNames: []string{"ep"},
		New:        func() runtime.Object { return &corev1.Endpoints{} },
		NewList:    func() runtime.Object { return &corev1.EndpointsList{} },
		Default: func(obj runtime.Object) {
			ep := obj.(*corev1.Endpoints)
			for i := range ep.Subsets {
				for j := range ep.Subsets[i].Ports {
					if ep.Subsets[i].Ports[j].Protocol == "" {
						ep.Subsets[i].Ports[j].Protocol = corev1.ProtocolTCP
					}
				}
			}
		},
		Validate:       func(obj runtime.Object) field.ErrorList { return validateEndpoints(obj.(*corev1.Endpoints)) },
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList { return validateEndpoints(obj.(*corev1.Endpoints)) },
		Columns: []metav1.TableColumnDefinition{
			NameColumn,
			{Name: "Endpoints", Type: "string", Description: "Endpoints of the service"},
			AgeColumn,
		},
		Row: func(obj runtime.Object) []any {
			ep := obj.(*corev1.Endpoints)
			return []any{ep.Name, formatEndpoints(ep), Age(ep.CreationTimestamp)}
		},
	}
}

func validateEndpoints(ep *corev1.Endpoints) field.ErrorList {
	var errs field.ErrorList
	for i, ss := range ep.Subsets {
		p := field.NewPath("subsets").Index(i)
		for j, a := range ss.Addresses {
			errs = append(errs, validateEndpointAddress(a, p.Child("addresses").Index(j))...)
		}
		for j, a := range ss.NotReadyAddresses {
			errs = append(errs, validateEndpointAddress(a, p.Child("notReadyAddresses").Index(j))...)
		}
		for j, port := range ss.Ports {
			pp := p.Child("ports").Index(j)
			switch {
			case port.Name == "" && len(ss.Ports) > 1:
				errs = append(errs, field.Required(pp.Child("name"), ""))
			case port.Name != "":
				errs = append(errs, coreNamesErrors(pp.Child("name"), port.Name, validation.IsDNS1123Label(port.Name))...)
			}
			errs = append(errs, coreNamesErrors(pp.Child("port"), port.Port, validation.IsValidPortNum(int(port.Port)))...)
			if port.Protocol == "" {
				errs = append(errs, field.Required(pp.Child("protocol"), ""))
			} else if !coreContains(supportedPortProtocols, port.Protocol) {
				errs = append(errs, field.NotSupported(pp.Child("protocol"), port.Protocol, supportedPortProtocols))
			}
		}
	}
	return errs
}

func validateEndpointAddress(a corev1.EndpointAddress, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if net.ParseIP(a.IP) == nil {
		errs = append(errs, field.Invalid(path.Child("ip"), a.IP, "must be a valid IP address"))
	}
	if a.Hostname != "" {
		errs = append(errs, coreNamesErrors(path.Child("hostname"), a.Hostname, validation.IsDNS1123Label(a.Hostname))...)
	}
	return errs
}

// formatEndpoints lists ready "ip:port" pairs as kubectl does, the first
// few and then a count of the rest, so huge services stay one line.
func formatEndpoints(ep *corev1.Endpoints) string {
	var list []string
	total := 0
	add := func(s string) {
		total++
		if len(list) < endpointsShown {
			list = append(list, s)
		}
	}
	for _, ss := range ep.Subsets {
		if len(ss.Ports) == 0 {
			// Headless services without ports still have addresses.
			for _, a := range ss.Addresses {
				add(a.IP)
			}
			continue
		}
		for _, port := range ss.Ports {
			for _, a := range ss.Addresses {
				add(net.JoinHostPort(a.IP, strconv.Itoa(int(port.Port))))
			}
		}
	}
	if total == 0 {
		return "<none>"
	}
	s := strings.Join(list, ",")
	if total > len(list) {
		s = fmt.Sprintf("%s + %d more...", s, total-len(list))
	}
	return s
}
