package resource

import (
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Secrets describes core/v1 secrets.
func Secrets() *Resource {
	return &Resource{
		Kind:       corev1.SchemeGroupVersion.WithKind("Secret"),
		Plural:     "secrets",
		Namespaced: true,
		New:        func() runtime.Object { return &corev1.Secret{} },
		NewList:    func() runtime.Object { return &corev1.SecretList{} },
		Default:    func(obj runtime.Object) { defaultSecret(obj.(*corev1.Secret)) },
		Validate:   func(obj runtime.Object) field.ErrorList { return validateSecret(obj.(*corev1.Secret)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			s, o := obj.(*corev1.Secret), old.(*corev1.Secret)
			errs := validateSecret(s)
			if s.Type != o.Type {
				errs = append(errs, field.Invalid(field.NewPath("type"), s.Type, "field is immutable"))
			}
			return append(errs, validateImmutableData(s.Immutable, o.Immutable, apiequality.Semantic.DeepEqual(s.Data, o.Data))...)
		},
		Columns: []metav1.TableColumnDefinition{
			NameColumn,
			{Name: "Type", Type: "string", Description: "The type of the secret"},
			{Name: "Data", Type: "string", Description: "The number of keys in the secret"},
			AgeColumn,
		},
		Row: func(obj runtime.Object) []any {
			s := obj.(*corev1.Secret)
			return []any{s.Name, string(s.Type), int64(len(s.Data)), Age(s.CreationTimestamp)}
		},
		Fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"type": string(obj.(*corev1.Secret).Type)}
		},
	}
}

// defaultSecret folds the write-only stringData into data, as upstream's
// conversion does, so stored secrets have one place for their values.
func defaultSecret(s *corev1.Secret) {
	if s.Type == "" {
		s.Type = corev1.SecretTypeOpaque
	}
	if len(s.StringData) > 0 {
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		for k, v := range s.StringData {
			s.Data[k] = []byte(v)
		}
		s.StringData = nil
	}
}

// secretRequiredKeys are the keys each well-known type promises its
// consumers (the kubelet, ingress controllers, image pulls).
var secretRequiredKeys = map[corev1.SecretType][]string{
	corev1.SecretTypeDockercfg:        {corev1.DockerConfigKey},
	corev1.SecretTypeDockerConfigJson: {corev1.DockerConfigJsonKey},
	corev1.SecretTypeSSHAuth:          {corev1.SSHAuthPrivateKey},
	corev1.SecretTypeTLS:              {corev1.TLSCertKey, corev1.TLSPrivateKeyKey},
}

func validateSecret(s *corev1.Secret) field.ErrorList {
	var errs field.ErrorList
	data := field.NewPath("data")
	size := 0
	for k, v := range s.Data {
		errs = append(errs, coreNamesErrors(data.Key(k), k, validation.IsConfigMapKey(k))...)
		size += len(v)
	}
	if size > coreMaxDataSize {
		errs = append(errs, field.TooLong(data, "", coreMaxDataSize))
	}
	for _, k := range secretRequiredKeys[s.Type] {
		if _, ok := s.Data[k]; !ok {
			errs = append(errs, field.Required(data.Key(k), ""))
		}
	}
	switch s.Type {
	case corev1.SecretTypeServiceAccountToken:
		if s.Annotations[corev1.ServiceAccountNameKey] == "" {
			errs = append(errs, field.Required(field.NewPath("metadata", "annotations").Key(corev1.ServiceAccountNameKey), ""))
		}
	case corev1.SecretTypeBasicAuth:
		_, user := s.Data[corev1.BasicAuthUsernameKey]
		_, pass := s.Data[corev1.BasicAuthPasswordKey]
		if !user && !pass {
			errs = append(errs, field.Required(data.Key(corev1.BasicAuthUsernameKey), ""))
			errs = append(errs, field.Required(data.Key(corev1.BasicAuthPasswordKey), ""))
		}
	}
	return errs
}
