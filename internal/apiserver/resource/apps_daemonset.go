package resource

import (
	appsv1 "k8s.io/api/apps/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// DaemonSets describes apps/v1 DaemonSets.
func DaemonSets() *Resource {
	return &Resource{
		Kind:       appsv1.SchemeGroupVersion.WithKind("DaemonSet"),
		Plural:     "daemonsets",
		Namespaced: true,
		ShortNames: []string{"ds"},
		Categories: []string{"all"},
		New:        func() runtime.Object { return &appsv1.DaemonSet{} },
		NewList:    func() runtime.Object { return &appsv1.DaemonSetList{} },
		Default:    func(obj runtime.Object) { defaultDaemonSet(obj.(*appsv1.DaemonSet)) },
		PrepareCreate: func(obj runtime.Object) {
			obj.(*appsv1.DaemonSet).Status = appsv1.DaemonSetStatus{}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateDaemonSetSpec(&obj.(*appsv1.DaemonSet).Spec, field.NewPath("spec"))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			ds, o := obj.(*appsv1.DaemonSet), old.(*appsv1.DaemonSet)
			errs := validateDaemonSetSpec(&ds.Spec, field.NewPath("spec"))
			return append(errs, wlImmutableSelector(ds.Spec.Selector, o.Spec.Selector, field.NewPath("spec"))...)
		},
		Columns: append([]metav1.TableColumnDefinition{
			NameColumn,
			{Name: "Desired", Type: "integer", Description: appsv1.DaemonSetStatus{}.SwaggerDoc()["desiredNumberScheduled"]},
			{Name: "Current", Type: "integer", Description: appsv1.DaemonSetStatus{}.SwaggerDoc()["currentNumberScheduled"]},
			{Name: "Ready", Type: "integer", Description: appsv1.DaemonSetStatus{}.SwaggerDoc()["numberReady"]},
			{Name: "Up-to-date", Type: "integer", Description: appsv1.DaemonSetStatus{}.SwaggerDoc()["updatedNumberScheduled"]},
			{Name: "Available", Type: "integer", Description: appsv1.DaemonSetStatus{}.SwaggerDoc()["numberAvailable"]},
			{Name: "Node Selector", Type: "string", Description: "The node selector of the pod template."},
			AgeColumn,
		}, wlWideColumns...),
		Row: func(obj runtime.Object) []any {
			ds := obj.(*appsv1.DaemonSet)
			names, images := wlContainerCells(ds.Spec.Template.Spec.Containers)
			return []any{
				ds.Name,
				int64(ds.Status.DesiredNumberScheduled),
				int64(ds.Status.CurrentNumberScheduled),
				int64(ds.Status.NumberReady),
				int64(ds.Status.UpdatedNumberScheduled),
				int64(ds.Status.NumberAvailable),
				labels.FormatLabels(ds.Spec.Template.Spec.NodeSelector),
				Age(ds.CreationTimestamp),
				names, images, metav1.FormatLabelSelector(ds.Spec.Selector),
			}
		},
		Generation: true,
		Status:     true,
	}
}

func defaultDaemonSet(ds *appsv1.DaemonSet) {
	s := &ds.Spec
	if s.UpdateStrategy.Type == "" {
		s.UpdateStrategy.Type = appsv1.RollingUpdateDaemonSetStrategyType
	}
	if s.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType {
		if s.UpdateStrategy.RollingUpdate == nil {
			s.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{}
		}
		ru := s.UpdateStrategy.RollingUpdate
		if ru.MaxUnavailable == nil {
			ru.MaxUnavailable = ptr.To(intstr.FromInt32(1))
		}
		if ru.MaxSurge == nil {
			ru.MaxSurge = ptr.To(intstr.FromInt32(0))
		}
	}
	if s.RevisionHistoryLimit == nil {
		s.RevisionHistoryLimit = ptr.To[int32](10)
	}
	defaultPodTemplateSpec(&s.Template)
}

func validateDaemonSetSpec(s *appsv1.DaemonSetSpec, path *field.Path) field.ErrorList {
	errs := wlValidateSelector(s.Selector, &s.Template, "daemonset", path)
	errs = append(errs, wlValidateLongRunningTemplate(&s.Template, "DaemonSet", path.Child("template"))...)
	errs = append(errs, apivalidation.ValidateNonnegativeField(int64(s.MinReadySeconds), path.Child("minReadySeconds"))...)
	errs = append(errs, wlValidateNonNegative(s.RevisionHistoryLimit, path.Child("revisionHistoryLimit"))...)

	us, usPath := &s.UpdateStrategy, path.Child("updateStrategy")
	switch us.Type {
	case appsv1.OnDeleteDaemonSetStrategyType:
	case appsv1.RollingUpdateDaemonSetStrategyType:
		// Defaulting always fills rollingUpdate, so nil here means a
		// client explicitly nulled it in a way defaulting could not see.
		if us.RollingUpdate == nil {
			errs = append(errs, field.Required(usPath.Child("rollingUpdate"), ""))
			break
		}
		errs = append(errs, wlValidateSurge(us.RollingUpdate.MaxUnavailable, us.RollingUpdate.MaxSurge, usPath.Child("rollingUpdate"))...)
	case "":
		errs = append(errs, field.Required(usPath.Child("type"), ""))
	default:
		errs = append(errs, field.NotSupported(usPath.Child("type"), us.Type, []string{string(appsv1.RollingUpdateDaemonSetStrategyType), string(appsv1.OnDeleteDaemonSetStrategyType)}))
	}
	return errs
}
