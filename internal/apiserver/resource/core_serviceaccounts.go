package resource

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// ServiceAccounts describes core/v1 service accounts. Metadata rules are
// all upstream checks on them, so there is nothing kind-specific to
// validate; tokens are minted elsewhere.
func ServiceAccounts() *Resource {
	return &Resource{
		Kind:       corev1.SchemeGroupVersion.WithKind("ServiceAccount"),
		Plural:     "serviceaccounts",
		Namespaced: true,
		ShortNames: []string{"sa"},
		New:        func() runtime.Object { return &corev1.ServiceAccount{} },
		NewList:    func() runtime.Object { return &corev1.ServiceAccountList{} },
		Columns: []metav1.TableColumnDefinition{
			NameColumn,
			{Name: "Secrets", Type: "string", Description: "The number of secrets the service account holds"},
			AgeColumn,
		},
		Row: func(obj runtime.Object) []any {
			sa := obj.(*corev1.ServiceAccount)
			return []any{sa.Name, int64(len(sa.Secrets)), Age(sa.CreationTimestamp)}
		},
	}
}
