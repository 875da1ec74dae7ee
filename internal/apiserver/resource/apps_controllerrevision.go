package resource

import (
	appsv1 "k8s.io/api/apps/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ControllerRevisions describes apps/v1 ControllerRevisions, the snapshots
// of templates that DaemonSets and StatefulSets roll back to.
func ControllerRevisions() *Resource {
	return &Resource{
		Kind:       appsv1.SchemeGroupVersion.WithKind("ControllerRevision"),
		Plural:     "controllerrevisions",
		Namespaced: true,
		New:        func() runtime.Object { return &appsv1.ControllerRevision{} },
		NewList:    func() runtime.Object { return &appsv1.ControllerRevisionList{} },
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateControllerRevision(obj.(*appsv1.ControllerRevision))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			cr, o := obj.(*appsv1.ControllerRevision), old.(*appsv1.ControllerRevision)
			errs := validateControllerRevision(cr)
			// A revision is a snapshot: changing its data would rewrite
			// history a rollback relies on. The number may change, as
			// controllers renumber a revision they reuse.
			return append(errs, apivalidation.ValidateImmutableField(cr.Data, o.Data, field.NewPath("data"))...)
		},
		Columns: []metav1.TableColumnDefinition{
			NameColumn,
			{Name: "Controller", Type: "string", Description: "Controller of the object."},
			{Name: "Revision", Type: "integer", Description: appsv1.ControllerRevision{}.SwaggerDoc()["revision"]},
			AgeColumn,
		},
		Row: func(obj runtime.Object) []any {
			cr := obj.(*appsv1.ControllerRevision)
			return []any{cr.Name, wlControllerName(&cr.ObjectMeta), cr.Revision, Age(cr.CreationTimestamp)}
		},
	}
}

func validateControllerRevision(cr *appsv1.ControllerRevision) field.ErrorList {
	var errs field.ErrorList
	if cr.Data.Raw == nil && cr.Data.Object == nil {
		errs = append(errs, field.Required(field.NewPath("data"), "data is mandatory"))
	}
	return append(errs, apivalidation.ValidateNonnegativeField(cr.Revision, field.NewPath("revision"))...)
}
