package resource

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// StatefulSets describes apps/v1 StatefulSets.
func StatefulSets() *Resource {
	return &Resource{
		Kind:       appsv1.SchemeGroupVersion.WithKind("StatefulSet"),
		Plural:     "statefulsets",
		Namespaced: true,
		ShortNames: []string{"sts"},
		Categories: []string{"all"},
		New:        func() runtime.Object { return &appsv1.StatefulSet{} },
		NewList:    func() runtime.Object { return &appsv1.StatefulSetList{} },
		Default:    func(obj runtime.Object) { defaultStatefulSet(obj.(*appsv1.StatefulSet)) },
		PrepareCreate: func(obj runtime.Object) {
			obj.(*appsv1.StatefulSet).Status = appsv1.StatefulSetStatus{}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateStatefulSetSpec(&obj.(*appsv1.StatefulSet).Spec, field.NewPath("spec"))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			s, o := obj.(*appsv1.StatefulSet), old.(*appsv1.StatefulSet)
			errs := validateStatefulSetSpec(&s.Spec, field.NewPath("spec"))
			return append(errs, validateStatefulSetSpecUpdate(&s.Spec, &o.Spec)...)
		},
		Columns: []metav1.TableColumnDefinition{
			NameColumn,
			{Name: "Ready", Type: "string", Description: "Ready replicas out of desired replicas."},
			AgeColumn,
			wlWideColumns[0], wlWideColumns[1],
		},
		Row: func(obj runtime.Object) []any {
			s := obj.(*appsv1.StatefulSet)
			names, images := wlContainerCells(s.Spec.Template.Spec.Containers)
			return []any{
				s.Name,
				fmt.Sprintf("%d/%d", s.Status.ReadyReplicas, wlDeref(s.Spec.Replicas, 1)),
				Age(s.CreationTimestamp),
				names, images,
			}
		},
		Generation: true,
		Status:     true,
		Scale: &Scale{
			SpecReplicas:   func(obj runtime.Object) int32 { return wlDeref(obj.(*appsv1.StatefulSet).Spec.Replicas, 1) },
			SetReplicas:    func(obj runtime.Object, n int32) { obj.(*appsv1.StatefulSet).Spec.Replicas = &n },
			StatusReplicas: func(obj runtime.Object) int32 { return obj.(*appsv1.StatefulSet).Status.Replicas },
			Selector:       func(obj runtime.Object) string { return wlSelectorString(obj.(*appsv1.StatefulSet).Spec.Selector) },
		},
	}
}

func defaultStatefulSet(sts *appsv1.StatefulSet) {
	s := &sts.Spec
	if s.PodManagementPolicy == "" {
		s.PodManagementPolicy = appsv1.OrderedReadyPodManagement
	}
	if s.UpdateStrategy.Type == "" {
		s.UpdateStrategy.Type = appsv1.RollingUpdateStatefulSetStrategyType
		if s.UpdateStrategy.RollingUpdate == nil {
			s.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{}
		}
	}
	// Upstream fills the partition only when rollingUpdate is present: an
	// explicit RollingUpdate type without parameters stays that way.
	if ru := s.UpdateStrategy.RollingUpdate; s.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType && ru != nil && ru.Partition == nil {
		ru.Partition = ptr.To[int32](0)
	}
	if s.PersistentVolumeClaimRetentionPolicy == nil {
		s.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{}
	}
	if p := s.PersistentVolumeClaimRetentionPolicy; p.WhenDeleted == "" {
		p.WhenDeleted = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	}
	if p := s.PersistentVolumeClaimRetentionPolicy; p.WhenScaled == "" {
		p.WhenScaled = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	}
	if s.Replicas == nil {
		s.Replicas = ptr.To[int32](1)
	}
	if s.RevisionHistoryLimit == nil {
		s.RevisionHistoryLimit = ptr.To[int32](10)
	}
	for i := range s.VolumeClaimTemplates {
		if pvc := &s.VolumeClaimTemplates[i]; pvc.Spec.VolumeMode == nil {
			pvc.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeFilesystem)
		}
	}
	defaultPodTemplateSpec(&s.Template)
}

func validateStatefulSetSpec(s *appsv1.StatefulSetSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch s.PodManagementPolicy {
	case appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement:
	case "":
		errs = append(errs, field.Required(path.Child("podManagementPolicy"), ""))
	default:
		errs = append(errs, field.NotSupported(path.Child("podManagementPolicy"), s.PodManagementPolicy, []string{string(appsv1.OrderedReadyPodManagement), string(appsv1.ParallelPodManagement)}))
	}

	us, usPath := &s.UpdateStrategy, path.Child("updateStrategy")
	switch us.Type {
	case appsv1.OnDeleteStatefulSetStrategyType:
		if us.RollingUpdate != nil {
			errs = append(errs, field.Invalid(usPath.Child("rollingUpdate"), us.RollingUpdate, "only allowed for updateStrategy '"+string(appsv1.RollingUpdateStatefulSetStrategyType)+"'"))
		}
	case appsv1.RollingUpdateStatefulSetStrategyType:
		if ru := us.RollingUpdate; ru != nil {
			errs = append(errs, wlValidateNonNegative(ru.Partition, usPath.Child("rollingUpdate", "partition"))...)
			if ru.MaxUnavailable != nil {
				p := usPath.Child("rollingUpdate", "maxUnavailable")
				errs = append(errs, wlValidateIntOrPercent(ru.MaxUnavailable, p)...)
				// Zero would stop a rolling update from ever replacing a pod.
				if wlIsZero(ru.MaxUnavailable) {
					errs = append(errs, field.Invalid(p, wlIntOrPercentValue(ru.MaxUnavailable), "must be greater than 0"))
				}
			}
		}
	case "":
		errs = append(errs, field.Required(usPath, ""))
	default:
		errs = append(errs, field.NotSupported(usPath.Child("type"), us.Type, []string{string(appsv1.RollingUpdateStatefulSetStrategyType), string(appsv1.OnDeleteStatefulSetStrategyType)}))
	}

	if p := s.PersistentVolumeClaimRetentionPolicy; p != nil {
		policies := []string{string(appsv1.RetainPersistentVolumeClaimRetentionPolicyType), string(appsv1.DeletePersistentVolumeClaimRetentionPolicyType)}
		pPath := path.Child("persistentVolumeClaimRetentionPolicy")
		for _, f := range []struct {
			name string
			v    appsv1.PersistentVolumeClaimRetentionPolicyType
		}{{"whenDeleted", p.WhenDeleted}, {"whenScaled", p.WhenScaled}} {
			if f.v != appsv1.RetainPersistentVolumeClaimRetentionPolicyType && f.v != appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
				errs = append(errs, field.NotSupported(pPath.Child(f.name), f.v, policies))
			}
		}
	}

	errs = append(errs, wlValidateNonNegative(s.Replicas, path.Child("replicas"))...)
	errs = append(errs, apivalidation.ValidateNonnegativeField(int64(s.MinReadySeconds), path.Child("minReadySeconds"))...)
	errs = append(errs, wlValidateNonNegative(s.RevisionHistoryLimit, path.Child("revisionHistoryLimit"))...)
	if s.Ordinals != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(s.Ordinals.Start), path.Child("ordinals", "start"))...)
	}
	if s.ServiceName != "" {
		for _, msg := range validation.IsDNS1123Label(s.ServiceName) {
			errs = append(errs, field.Invalid(path.Child("serviceName"), s.ServiceName, msg))
		}
	}
	seen := map[string]bool{}
	for i, pvc := range s.VolumeClaimTemplates {
		p := path.Child("volumeClaimTemplates").Index(i).Child("metadata", "name")
		switch {
		case pvc.Name == "":
			errs = append(errs, field.Required(p, ""))
		case seen[pvc.Name]:
			errs = append(errs, field.Duplicate(p, pvc.Name))
		default:
			for _, msg := range validation.IsDNS1123Subdomain(pvc.Name) {
				errs = append(errs, field.Invalid(p, pvc.Name, msg))
			}
		}
		seen[pvc.Name] = true
	}
	// Skiff has no persistent volumes yet: refuse claims rather than
	// create pods that would wait forever for storage.
	if len(s.VolumeClaimTemplates) > 0 {
		errs = append(errs, field.Forbidden(path.Child("volumeClaimTemplates"), "persistent volumes are not supported yet"))
	}

	errs = append(errs, wlValidateSelector(s.Selector, &s.Template, "statefulset", path)...)
	errs = append(errs, wlValidateLongRunningTemplate(&s.Template, "StatefulSet", path.Child("template"))...)
	return errs
}

// validateStatefulSetSpecUpdate allows only the fields upstream lets a
// StatefulSet change: the identity-bearing parts (selector, service name,
// claim templates, pod management) are fixed because existing pods and
// volumes were created from them.
func validateStatefulSetSpecUpdate(s, old *appsv1.StatefulSetSpec) field.ErrorList {
	rest := old.DeepCopy()
	rest.Replicas = s.Replicas
	rest.Ordinals = s.Ordinals
	rest.Template = s.Template
	rest.UpdateStrategy = s.UpdateStrategy
	rest.RevisionHistoryLimit = s.RevisionHistoryLimit
	rest.PersistentVolumeClaimRetentionPolicy = s.PersistentVolumeClaimRetentionPolicy
	rest.MinReadySeconds = s.MinReadySeconds
	if apiequality.Semantic.DeepEqual(rest, s) {
		return nil
	}
	return field.ErrorList{field.Forbidden(field.NewPath("spec"), "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")}
}
