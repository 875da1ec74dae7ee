package resource

import (
	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Namespaces describes core/v1 namespaces.
func Namespaces() *Resource {
	return &Resource{
		Kind:       corev1.SchemeGroupVersion.WithKind("Namespace"),
		Plural:     "namespaces",
		ShortNames: []string{"ns"},
		New:        func() runtime.Object { return &corev1.Namespace{} },
		NewList:    func() runtime.Object { return &corev1.NamespaceList{} },
		Default: func(obj runtime.Object) {
			ns := obj.(*corev1.Namespace)
			if ns.Status.Phase == "" {
				ns.Status.Phase = corev1.NamespaceActive
			}
			// Upstream labels every namespace with its own name on create
			// and update, so selectors (namespaceSelector in network and
			// affinity rules) can pick namespaces by name.
			if ns.Name != "" {
				if ns.Labels == nil {
					ns.Labels = map[string]string{}
				}
				ns.Labels[corev1.LabelMetadataName] = ns.Name
			}
		},
		PrepareCreate: func(obj runtime.Object) { prepareCreateNamespace(obj.(*corev1.Namespace)) },
		Validate:      func(obj runtime.Object) field.ErrorList { return validateNamespace(obj.(*corev1.Namespace)) },
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList {
			return validateNamespace(obj.(*corev1.Namespace))
		},
		Columns: []metav1.TableColumnDefinition{
			NameColumn,
			{Name: "Status", Type: "string", Description: "The status of the namespace"},
			AgeColumn,
		},
		Row: func(obj runtime.Object) []any {
			ns := obj.(*corev1.Namespace)
			return []any{ns.Name, string(ns.Status.Phase), Age(ns.CreationTimestamp)}
		},
		Fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"status.phase": string(obj.(*corev1.Namespace).Status.Phase)}
		},
		Status: true,
	}
}

// prepareCreateNamespace starts a namespace Active and holding the
// "kubernetes" finalizer, which the namespace controller removes once it
// has emptied the namespace; without it, deleting would orphan contents.
func prepareCreateNamespace(ns *corev1.Namespace) {
	ns.Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
	if !coreContains(ns.Spec.Finalizers, corev1.FinalizerKubernetes) {
		ns.Spec.Finalizers = append(ns.Spec.Finalizers, corev1.FinalizerKubernetes)
	}
}

// validateNamespace: a namespace name becomes a DNS label in service names
// (svc.ns.svc.cluster.local), so it is stricter than most object names.
func validateNamespace(ns *corev1.Namespace) field.ErrorList {
	errs := coreNamesErrors(field.NewPath("metadata", "name"), ns.Name, validation.IsDNS1123Label(ns.Name))
	for i, f := range ns.Spec.Finalizers {
		errs = append(errs, apivalidation.ValidateFinalizerName(string(f), field.NewPath("spec", "finalizers").Index(i))...)
	}
	return errs
}
