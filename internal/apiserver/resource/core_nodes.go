package resource

import (
	"net"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Labels kubectl reads a node's roles from.
const (
	nodeRoleLabelPrefix = "node-role.kubernetes.io/"
	nodeRoleLabelLegacy = "kubernetes.io/role"
)

// Nodes describes core/v1 nodes.
func Nodes() *Resource {
	return &Resource{
		Kind:       corev1.SchemeGroupVersion.WithKind("Node"),
		Plural:     "nodes",
		ShortNames: []string{"no"},
		New:        func() runtime.Object { return &corev1.Node{} },
		NewList:    func() runtime.Object { return &corev1.NodeList{} },
		Default: func(obj runtime.Object) {
			// Upstream: a node that reports no allocatable offers all it has.
			if n := obj.(*corev1.Node); n.Status.Allocatable == nil && n.Status.Capacity != nil {
				n.Status.Allocatable = n.Status.Capacity.DeepCopy()
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateNode(obj.(*corev1.Node)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateNodeUpdate(obj.(*corev1.Node), old.(*corev1.Node))
		},
		Columns: []metav1.TableColumnDefinition{
			NameColumn,
			{Name: "Status", Type: "string", Description: "The status of the node"},
			{Name: "Roles", Type: "string", Description: "The roles of the node"},
			AgeColumn,
			{Name: "Version", Type: "string", Description: "Kubelet Version reported by the node."},
			{Name: "Internal-IP", Type: "string", Priority: 1, Description: "List of addresses reachable to the node."},
			{Name: "External-IP", Type: "string", Priority: 1, Description: "List of addresses reachable to the node."},
			{Name: "OS-Image", Type: "string", Priority: 1, Description: "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."},
			{Name: "Kernel-Version", Type: "string", Priority: 1, Description: "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."},
			{Name: "Container-Runtime", Type: "string", Priority: 1, Description: "Container runtime version reported by the node through runtime remote API (e.g. containerd://1.4.2)."},
		},
		Row: func(obj runtime.Object) []any { return nodeRow(obj.(*corev1.Node)) },
		Fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"spec.unschedulable": strconv.FormatBool(obj.(*corev1.Node).Spec.Unschedulable)}
		},
		Status: true,
	}
}

func validateNode(n *corev1.Node) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	for i, cidr := range n.Spec.PodCIDRs {
		if _, _, err := net.ParseCIDR(cidr); err != nil {
			errs = append(errs, field.Invalid(spec.Child("podCIDRs").Index(i), cidr, "must be a valid CIDR"))
		}
	}
	if len(n.Spec.PodCIDRs) > 0 && n.Spec.PodCIDR != n.Spec.PodCIDRs[0] {
		errs = append(errs, field.Invalid(spec.Child("podCIDR"), n.Spec.PodCIDR, "must match the first element of podCIDRs"))
	}
	if len(n.Spec.PodCIDRs) > 2 {
		errs = append(errs, field.Invalid(spec.Child("podCIDRs"), n.Spec.PodCIDRs, "may specify no more than one CIDR for each IP family"))
	}
	seen := sets.New[string]()
	for i, t := range n.Spec.Taints {
		p := spec.Child("taints").Index(i)
		errs = append(errs, metav1validation.ValidateLabelName(t.Key, p.Child("key"))...)
		errs = append(errs, coreNamesErrors(p.Child("value"), t.Value, validation.IsValidLabelValue(t.Value))...)
		switch {
		case t.Effect == "":
			errs = append(errs, field.Required(p.Child("effect"), ""))
		case !coreContains(supportedTaintEffects, t.Effect):
			errs = append(errs, field.NotSupported(p.Child("effect"), t.Effect, supportedTaintEffects))
		}
		// The scheduler keys taints by key and effect, so a second one
		// with the same pair would be ambiguous.
		if k := t.Key + ":" + string(t.Effect); seen.Has(k) {
			errs = append(errs, field.Duplicate(p, k))
		} else {
			seen.Insert(k)
		}
	}
	return errs
}

// validateNodeUpdate: pod routes and the cloud identity are fixed once
// assigned, as upstream allows them only to go from unset to set.
func validateNodeUpdate(n, old *corev1.Node) field.ErrorList {
	errs := validateNode(n)
	spec := field.NewPath("spec")
	if len(old.Spec.PodCIDRs) > 0 && !coreEqualStrings(old.Spec.PodCIDRs, n.Spec.PodCIDRs) {
		errs = append(errs, field.Forbidden(spec.Child("podCIDRs"), "node updates may not change podCIDR except from \"\" to valid"))
	}
	if old.Spec.ProviderID != "" && old.Spec.ProviderID != n.Spec.ProviderID {
		errs = append(errs, field.Forbidden(spec.Child("providerID"), "node updates may not change providerID except from \"\" to valid"))
	}
	return errs
}

func coreEqualStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func nodeRow(n *corev1.Node) []any {
	status := "Unknown"
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			status = "NotReady"
			if c.Status == corev1.ConditionTrue {
				status = "Ready"
			}
		}
	}
	if n.Spec.Unschedulable {
		status += ",SchedulingDisabled"
	}
	info := n.Status.NodeInfo
	return []any{
		n.Name, status, nodeRoles(n.Labels), Age(n.CreationTimestamp), info.KubeletVersion,
		nodeAddress(n, corev1.NodeInternalIP), nodeAddress(n, corev1.NodeExternalIP),
		coreOrUnknown(info.OSImage), coreOrUnknown(info.KernelVersion), coreOrUnknown(info.ContainerRuntimeVersion),
	}
}

// nodeRoles reads roles as kubectl does: the suffix of each
// node-role.kubernetes.io/<role> label, and the legacy label's value.
func nodeRoles(labels map[string]string) string {
	roles := sets.New[string]()
	for k, v := range labels {
		switch {
		case strings.HasPrefix(k, nodeRoleLabelPrefix):
			if r := strings.TrimPrefix(k, nodeRoleLabelPrefix); r != "" {
				roles.Insert(r)
			}
		case k == nodeRoleLabelLegacy && v != "":
			roles.Insert(v)
		}
	}
	if roles.Len() == 0 {
		return "<none>"
	}
	list := roles.UnsortedList()
	sort.Strings(list)
	return strings.Join(list, ",")
}

func nodeAddress(n *corev1.Node, t corev1.NodeAddressType) string {
	for _, a := range n.Status.Addresses {
		if a.Type == t {
			return a.Address
		}
	}
	return "<none>"
}

func coreOrUnknown(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}
