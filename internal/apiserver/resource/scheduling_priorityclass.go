package resource

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// Upstream's priority bands: user classes stay at or below one billion so
// that the system classes always outrank them.
const (
	priorityHighestUser    int32 = 1000000000
	prioritySystemPrefix         = "system-"
	priorityClusterCrit          = "system-cluster-critical"
	priorityNodeCrit             = "system-node-critical"
	priorityClusterCritVal int32 = 2 * priorityHighestUser
	priorityNodeCritVal    int32 = priorityClusterCritVal + 1000
)

// PriorityClasses describes scheduling.k8s.io/v1 PriorityClasses.
func PriorityClasses() *Resource {
	return &Resource{
		Kind:       schedulingv1.SchemeGroupVersion.WithKind("PriorityClass"),
		Plural:     "priorityclasses",
		ShortNames: []string{"pc"},
		New:        func() runtime.Object { return &schedulingv1.PriorityClass{} },
		NewList:    func() runtime.Object { return &schedulingv1.PriorityClassList{} },
		Default: func(obj runtime.Object) {
			if pc := obj.(*schedulingv1.PriorityClass); pc.PreemptionPolicy == nil {
				pc.PreemptionPolicy = ptr.To(corev1.PreemptLowerPriority)
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validatePriorityClass(obj.(*schedulingv1.PriorityClass))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			pc, o := obj.(*schedulingv1.PriorityClass), old.(*schedulingv1.PriorityClass)
			errs := validatePriorityClass(pc)
			// Pods carry the value resolved at admission; changing it would
			// silently split pods of one class into two priorities.
			if pc.Value != o.Value {
				errs = append(errs, field.Forbidden(field.NewPath("value"), "may not be changed in an update."))
			}
			return append(errs, apivalidation.ValidateImmutableField(pc.PreemptionPolicy, o.PreemptionPolicy, field.NewPath("preemptionPolicy"))...)
		},
		Columns: []metav1.TableColumnDefinition{
			NameColumn,
			{Name: "Value", Type: "integer", Description: schedulingv1.PriorityClass{}.SwaggerDoc()["value"]},
			{Name: "Global-Default", Type: "boolean", Description: schedulingv1.PriorityClass{}.SwaggerDoc()["globalDefault"]},
			AgeColumn,
			{Name: "PreemptionPolicy", Type: "string", Description: schedulingv1.PriorityClass{}.SwaggerDoc()["preemptionPolicy"]},
		},
		Row: func(obj runtime.Object) []any {
			pc := obj.(*schedulingv1.PriorityClass)
			policy := "<unset>"
			if pc.PreemptionPolicy != nil {
				policy = string(*pc.PreemptionPolicy)
			}
			return []any{pc.Name, int64(pc.Value), pc.GlobalDefault, Age(pc.CreationTimestamp), policy}
		},
	}
}

// validatePriorityClass keeps the "system-" names for the two classes the
// server creates itself, with exactly their values, so no user class can
// pose as node- or cluster-critical.
func validatePriorityClass(pc *schedulingv1.PriorityClass) field.ErrorList {
	var errs field.ErrorList
	if strings.HasPrefix(pc.Name, prioritySystemPrefix) {
		if err := checkSystemPriorityClass(pc); err != nil {
			errs = append(errs, field.Forbidden(field.NewPath("metadata", "name"), "priority class names with '"+prioritySystemPrefix+"' prefix are reserved for system use only. error: "+err.Error()))
		}
	} else if pc.Value > priorityHighestUser {
		errs = append(errs, field.Forbidden(field.NewPath("value"), fmt.Sprintf("maximum allowed value of a user defined priority is %d", priorityHighestUser)))
	}
	if pc.PreemptionPolicy != nil {
		switch *pc.PreemptionPolicy {
		case corev1.PreemptLowerPriority, corev1.PreemptNever:
		default:
			errs = append(errs, field.NotSupported(field.NewPath("preemptionPolicy"), *pc.PreemptionPolicy, []string{string(corev1.PreemptLowerPriority), string(corev1.PreemptNever)}))
		}
	}
	return errs
}

func checkSystemPriorityClass(pc *schedulingv1.PriorityClass) error {
	want := map[string]int32{priorityClusterCrit: priorityClusterCritVal, priorityNodeCrit: priorityNodeCritVal}
	v, ok := want[pc.Name]
	switch {
	case !ok:
		return fmt.Errorf("%v is not a known system priority class", pc.Name)
	case pc.Value != v:
		return fmt.Errorf("value of %v PriorityClass must be %v", pc.Name, v)
	case pc.GlobalDefault:
		return fmt.Errorf("globalDefault of %v PriorityClass must be false", pc.Name)
	}
	return nil
}
