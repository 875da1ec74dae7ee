package resource

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// coreMaxDataSize caps configmap and secret payloads at 1 MiB, upstream's
// limit, which keeps every object well inside etcd's request size.
const coreMaxDataSize = 1 << 20

// ConfigMaps describes core/v1 configmaps.
func ConfigMaps() *Resource {
	return &Resource{
		Kind:       corev1.SchemeGroupVersion.WithKind("ConfigMap"),
		Plural:     "configmaps",
		Namespaced: true,
		ShortNames: []string{"cm"},
		New:        func() runtime.Object { return &corev1.ConfigMap{} },
		NewList:    func() runtime.Object { return &corev1.ConfigMapList{} },
		Validate:   func(obj runtime.Object) field.ErrorList { return validateConfigMap(obj.(*corev1.ConfigMap)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			cm, o := obj.(*corev1.ConfigMap), old.(*corev1.ConfigMap)
			errs := validateConfigMap(cm)
			return append(errs, validateImmutableData(cm.Immutable, o.Immutable,
				apiequality.Semantic.DeepEqual(cm.Data, o.Data) && apiequality.Semantic.DeepEqual(cm.BinaryData, o.BinaryData))...)
		},
		Columns: []metav1.TableColumnDefinition{
			NameColumn,
			{Name: "Data", Type: "integer", Description: "Number of keys in the configmap"},
			AgeColumn,
		},
		Row: func(obj runtime.Object) []any {
			cm := obj.(*corev1.ConfigMap)
			return []any{cm.Name, int64(len(cm.Data) + len(cm.BinaryData)), Age(cm.CreationTimestamp)}
		},
	}
}

// validateConfigMap: keys become file names when mounted, hence the key
// rules; a key in both maps would make one file from two values.
func validateConfigMap(cm *corev1.ConfigMap) field.ErrorList {
	var errs field.ErrorList
	size := 0
	for k, v := range cm.Data {
		errs = append(errs, coreNamesErrors(field.NewPath("data").Key(k), k, validation.IsConfigMapKey(k))...)
		size += len(k) + len(v)
	}
	for k, v := range cm.BinaryData {
		p := field.NewPath("binaryData").Key(k)
		errs = append(errs, coreNamesErrors(p, k, validation.IsConfigMapKey(k))...)
		if _, dup := cm.Data[k]; dup {
			errs = append(errs, field.Invalid(p, k, fmt.Sprintf("duplicate of key %q present in data", k)))
		}
		size += len(k) + len(v)
	}
	if size > coreMaxDataSize {
		errs = append(errs, field.TooLong(field.NewPath("data"), "", coreMaxDataSize))
	}
	return errs
}

// validateImmutableData enforces `immutable: true`: consumers stop
// watching such objects, so neither the data nor the flag may change.
func validateImmutableData(immutable, oldImmutable *bool, sameData bool) field.ErrorList {
	if oldImmutable == nil || !*oldImmutable {
		return nil
	}
	var errs field.ErrorList
	if immutable == nil || !*immutable {
		errs = append(errs, field.Forbidden(field.NewPath("immutable"), "field is immutable when `immutable` is set"))
	}
	if !sameData {
		errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
	}
	return errs
}
