package resource

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// ReplicaSets describes apps/v1 ReplicaSets.
func ReplicaSets() *Resource {
	return &Resource{
		Kind:       appsv1.SchemeGroupVersion.WithKind("ReplicaSet"),
		Plural:     "replicasets",
		Namespaced: true,
		ShortNames: []string{"rs"},
		Categories: []string{"all"},
		New:        func() runtime.Object { return &appsv1.ReplicaSet{} },
		NewList:    func() runtime.Object { return &appsv1.ReplicaSetList{} },
		Default: func(obj runtime.Object) {
			rs := obj.(*appsv1.ReplicaSet)
			if rs.Spec.Replicas == nil {
				rs.Spec.Replicas = ptr.To[int32](1)
			}
			defaultPodTemplateSpec(&rs.Spec.Template)
		},
		PrepareCreate: func(obj runtime.Object) {
			obj.(*appsv1.ReplicaSet).Status = appsv1.ReplicaSetStatus{}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateReplicaSetSpec(&obj.(*appsv1.ReplicaSet).Spec, field.NewPath("spec"))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			rs, o := obj.(*appsv1.ReplicaSet), old.(*appsv1.ReplicaSet)
			errs := validateReplicaSetSpec(&rs.Spec, field.NewPath("spec"))
			return append(errs, wlImmutableSelector(rs.Spec.Selector, o.Spec.Selector, field.NewPath("spec"))...)
		},
		Columns: append([]metav1.TableColumnDefinition{
			NameColumn,
			{Name: "Desired", Type: "integer", Description: appsv1.ReplicaSetSpec{}.SwaggerDoc()["replicas"]},
			{Name: "Current", Type: "integer", Description: appsv1.ReplicaSetStatus{}.SwaggerDoc()["replicas"]},
			{Name: "Ready", Type: "integer", Description: appsv1.ReplicaSetStatus{}.SwaggerDoc()["readyReplicas"]},
			AgeColumn,
		}, wlWideColumns...),
		Row: func(obj runtime.Object) []any {
			rs := obj.(*appsv1.ReplicaSet)
			names, images := wlContainerCells(rs.Spec.Template.Spec.Containers)
			return []any{
				rs.Name,
				int64(wlDeref(rs.Spec.Replicas, 1)),
				int64(rs.Status.Replicas),
				int64(rs.Status.ReadyReplicas),
				Age(rs.CreationTimestamp),
				names, images, metav1.FormatLabelSelector(rs.Spec.Selector),
			}
		},
		// Upstream lets clients select ReplicaSets by observed size, which
		// tools use to find the empty ones left behind by old rollouts.
		Fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"status.replicas": strconv.Itoa(int(obj.(*appsv1.ReplicaSet).Status.Replicas))}
		},
		Generation: true,
		Status:     true,
		Scale: &Scale{
			SpecReplicas:   func(obj runtime.Object) int32 { return wlDeref(obj.(*appsv1.ReplicaSet).Spec.Replicas, 1) },
			SetReplicas:    func(obj runtime.Object, n int32) { obj.(*appsv1.ReplicaSet).Spec.Replicas = &n },
			StatusReplicas: func(obj runtime.Object) int32 { return obj.(*appsv1.ReplicaSet).Status.Replicas },
			Selector:       func(obj runtime.Object) string { return wlSelectorString(obj.(*appsv1.ReplicaSet).Spec.Selector) },
		},
	}
}

func validateReplicaSetSpec(s *appsv1.ReplicaSetSpec, path *field.Path) field.ErrorList {
	errs := wlValidateNonNegative(s.Replicas, path.Child("replicas"))
	errs = append(errs, apivalidation.ValidateNonnegativeField(int64(s.MinReadySeconds), path.Child("minReadySeconds"))...)
	errs = append(errs, wlValidateSelector(s.Selector, &s.Template, "replicaset", path)...)
	errs = append(errs, wlValidateLongRunningTemplate(&s.Template, "ReplicaSet", path.Child("template"))...)
	return errs
}
