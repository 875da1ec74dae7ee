package resource

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// Deployments describes apps/v1 Deployments.
func Deployments() *Resource {
	return &Resource{
		Kind:       appsv1.SchemeGroupVersion.WithKind("Deployment"),
		Plural:     "deployments",
		Namespaced: true,
		ShortNames: []string{"deploy"},
		Categories: []string{"all"},
		New:        func() runtime.Object { return &appsv1.Deployment{} },
		NewList:    func() runtime.Object { return &appsv1.DeploymentList{} },
		Default:    func(obj runtime.Object) { defaultDeployment(obj.(*appsv1.Deployment)) },
		PrepareCreate: func(obj runtime.Object) {
			obj.(*appsv1.Deployment).Status = appsv1.DeploymentStatus{}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateDeploymentSpec(&obj.(*appsv1.Deployment).Spec, field.NewPath("spec"))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			d, o := obj.(*appsv1.Deployment), old.(*appsv1.Deployment)
			errs := validateDeploymentSpec(&d.Spec, field.NewPath("spec"))
			return append(errs, wlImmutableSelector(d.Spec.Selector, o.Spec.Selector, field.NewPath("spec"))...)
		},
		Columns: append([]metav1.TableColumnDefinition{
			NameColumn,
			{Name: "Ready", Type: "string", Description: "Ready replicas out of desired replicas."},
			{Name: "Up-to-date", Type: "integer", Description: appsv1.DeploymentStatus{}.SwaggerDoc()["updatedReplicas"]},
			{Name: "Available", Type: "integer", Description: appsv1.DeploymentStatus{}.SwaggerDoc()["availableReplicas"]},
			AgeColumn,
		}, wlWideColumns...),
		Row:        deploymentRow,
		Generation: true,
		Status:     true,
		Scale: &Scale{
			SpecReplicas:   func(obj runtime.Object) int32 { return wlDeref(obj.(*appsv1.Deployment).Spec.Replicas, 1) },
			SetReplicas:    func(obj runtime.Object, n int32) { obj.(*appsv1.Deployment).Spec.Replicas = &n },
			StatusReplicas: func(obj runtime.Object) int32 { return obj.(*appsv1.Deployment).Status.Replicas },
			Selector:       func(obj runtime.Object) string { return wlSelectorString(obj.(*appsv1.Deployment).Spec.Selector) },
		},
	}
}

func defaultDeployment(d *appsv1.Deployment) {
	s := &d.Spec
	if s.Replicas == nil {
		s.Replicas = ptr.To[int32](1)
	}
	if s.Strategy.Type == "" {
		s.Strategy.Type = appsv1.RollingUpdateDeploymentStrategyType
	}
	if s.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType {
		if s.Strategy.RollingUpdate == nil {
			s.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{}
		}
		quarter := intstr.FromString("25%")
		if s.Strategy.RollingUpdate.MaxUnavailable == nil {
			s.Strategy.RollingUpdate.MaxUnavailable = ptr.To(quarter)
		}
		if s.Strategy.RollingUpdate.MaxSurge == nil {
			s.Strategy.RollingUpdate.MaxSurge = ptr.To(quarter)
		}
	}
	if s.RevisionHistoryLimit == nil {
		s.RevisionHistoryLimit = ptr.To[int32](10)
	}
	if s.ProgressDeadlineSeconds == nil {
		s.ProgressDeadlineSeconds = ptr.To[int32](600)
	}
	defaultPodTemplateSpec(&s.Template)
}

func validateDeploymentSpec(s *appsv1.DeploymentSpec, path *field.Path) field.ErrorList {
	errs := wlValidateNonNegative(s.Replicas, path.Child("replicas"))
	errs = append(errs, wlValidateSelector(s.Selector, &s.Template, "deployment", path)...)
	errs = append(errs, wlValidateLongRunningTemplate(&s.Template, "Deployment", path.Child("template"))...)
	errs = append(errs, validateDeploymentStrategy(&s.Strategy, path.Child("strategy"))...)
	errs = append(errs, apivalidation.ValidateNonnegativeField(int64(s.MinReadySeconds), path.Child("minReadySeconds"))...)
	errs = append(errs, wlValidateNonNegative(s.RevisionHistoryLimit, path.Child("revisionHistoryLimit"))...)
	if s.ProgressDeadlineSeconds != nil {
		p := path.Child("progressDeadlineSeconds")
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(*s.ProgressDeadlineSeconds), p)...)
		// A deadline no longer than minReadySeconds would declare every
		// rollout stuck before any new pod could count as available.
		if *s.ProgressDeadlineSeconds <= s.MinReadySeconds {
			errs = append(errs, field.Invalid(p, *s.ProgressDeadlineSeconds, "must be greater than minReadySeconds"))
		}
	}
	return errs
}

func validateDeploymentStrategy(st *appsv1.DeploymentStrategy, path *field.Path) field.ErrorList {
	switch st.Type {
	case appsv1.RecreateDeploymentStrategyType:
		if st.RollingUpdate != nil {
			return field.ErrorList{field.Forbidden(path.Child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'")}
		}
	case appsv1.RollingUpdateDeploymentStrategyType:
		if st.RollingUpdate != nil {
			return wlValidateSurge(st.RollingUpdate.MaxUnavailable, st.RollingUpdate.MaxSurge, path.Child("rollingUpdate"))
		}
	case "":
		return field.ErrorList{field.Required(path.Child("type"), "")}
	default:
		return field.ErrorList{field.NotSupported(path.Child("type"), st.Type, []string{string(appsv1.RecreateDeploymentStrategyType), string(appsv1.RollingUpdateDeploymentStrategyType)})}
	}
	return nil
}

func deploymentRow(obj runtime.Object) []any {
	d := obj.(*appsv1.Deployment)
	names, images := wlContainerCells(d.Spec.Template.Spec.Containers)
	return []any{
		d.Name,
		fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, wlDeref(d.Spec.Replicas, 1)),
		int64(d.Status.UpdatedReplicas),
		int64(d.Status.AvailableReplicas),
		Age(d.CreationTimestamp),
		names, images, wlSelectorString(d.Spec.Selector),
	}
}
