package resource

import (
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// Leases describes coordination.k8s.io/v1 Leases, used for node heartbeats
// and for leader election among scheduler and controller replicas.
func Leases() *Resource {
	validate := func(obj runtime.Object) field.ErrorList {
		return validateLeaseSpec(&obj.(*coordinationv1.Lease).Spec, field.NewPath("spec"))
	}
	return &Resource{
		Kind:           coordinationv1.SchemeGroupVersion.WithKind("Lease"),
		Plural:         "leases",
		Namespaced:     true,
		New:            func() runtime.Object { return &coordinationv1.Lease{} },
		NewList:        func() runtime.Object { return &coordinationv1.LeaseList{} },
		Validate:       validate,
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList { return validate(obj) },
		Columns: []metav1.TableColumnDefinition{
			NameColumn,
			{Name: "Holder", Type: "string", Description: coordinationv1.LeaseSpec{}.SwaggerDoc()["holderIdentity"]},
			AgeColumn,
		},
		Row: func(obj runtime.Object) []any {
			l := obj.(*coordinationv1.Lease)
			return []any{l.Name, ptr.Deref(l.Spec.HolderIdentity, ""), Age(l.CreationTimestamp)}
		},
	}
}

func validateLeaseSpec(s *coordinationv1.LeaseSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	// A zero or negative duration would make every holder expired at once.
	if s.LeaseDurationSeconds != nil && *s.LeaseDurationSeconds <= 0 {
		errs = append(errs, field.Invalid(path.Child("leaseDurationSeconds"), *s.LeaseDurationSeconds, "must be greater than 0"))
	}
	if s.LeaseTransitions != nil && *s.LeaseTransitions < 0 {
		errs = append(errs, field.Invalid(path.Child("leaseTransitions"), *s.LeaseTransitions, "must be greater than or equal to 0"))
	}
	if s.Strategy != nil {
		sp := path.Child("strategy")
		switch st := string(*s.Strategy); {
		case strings.Contains(st, "/"):
			// Domain-prefixed names are left to third-party coordinators.
			errs = append(errs, metav1validation.ValidateLabelName(st, sp)...)
		case *s.Strategy != coordinationv1.OldestEmulationVersion:
			errs = append(errs, field.NotSupported(sp, *s.Strategy, []string{string(coordinationv1.OldestEmulationVersion)}))
		}
	}
	if ptr.Deref(s.PreferredHolder, "") != "" && ptr.Deref(s.Strategy, "") == "" {
		errs = append(errs, field.Forbidden(path.Child("preferredHolder"), "may only be specified if `strategy` is defined"))
	}
	return errs
}
