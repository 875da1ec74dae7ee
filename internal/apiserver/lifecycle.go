package apiserver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiffhq/skiff/internal/apiserver/auth"
	"github.com/skiffhq/skiff/internal/apiserver/resource"
)

// nameChars are the characters generateName appends, as upstream: no
// vowels (no words) and no look-alike digits.
const nameChars = "bcdfghjklmnpqrstvwxz2456789"

// generatedName appends five random characters to base, trimmed so that
// the result stays within 63 characters.
func generatedName(base string) string {
	const maxBase = 63 - 5
	if len(base) > maxBase {
		base = base[:maxBase]
	}
	b := make([]byte, 5)
	for i := range b {
		b[i] = nameChars[rand.IntN(len(nameChars))]
	}
	return base + string(b)
}

// nameValidator returns the rule an object's name must follow: a DNS-1123
// label for namespaces and services (they become DNS names), a DNS-1123
// subdomain otherwise.
func nameValidator(r *resource.Resource) apivalidation.ValidateNameFunc {
	switch r.Kind.Kind {
	case "Namespace", "Service":
		return apivalidation.NameIsDNSLabel
	}
	return apivalidation.NameIsDNSSubdomain
}

// validateMeta checks the metadata every kind shares.
func validateMeta(r *resource.Resource, m metav1.Object) field.ErrorList {
	return apivalidation.ValidateObjectMetaAccessor(m, r.Namespaced, nameValidator(r), field.NewPath("metadata"))
}

// validateMetaUpdate adds the immutability rules for an update.
func validateMetaUpdate(r *resource.Resource, m, old metav1.Object) field.ErrorList {
	errs := apivalidation.ValidateObjectMetaAccessorUpdate(m, old, field.NewPath("metadata"))
	return append(errs, validateMeta(r, m)...)
}

// invalid builds upstream's 422 from a list of field errors.
func invalid(r *resource.Resource, name string, errs field.ErrorList) error {
	return apierrors.NewInvalid(r.Kind.GroupKind(), name, errs)
}

// statusValue returns the Status field of a typed object, if it has one.
func statusValue(obj runtime.Object) (reflect.Value, bool) {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	f := v.Elem().FieldByName("Status")
	return f, f.IsValid() && f.CanSet()
}

// copyStatus sets dst's status to a copy of src's.
func copyStatus(dst, src runtime.Object) {
	d, ok1 := statusValue(dst)
	s, ok2 := statusValue(src)
	if ok1 && ok2 {
		c := reflect.ValueOf(src.DeepCopyObject())
		d.Set(c.Elem().FieldByName("Status"))
		_ = s
	}
}

// specEqual reports whether two objects agree outside metadata and status:
// the part of an object whose change bumps metadata.generation.
func specEqual(a, b runtime.Object) bool {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	t := va.Type()
	for i := 0; i < t.NumField(); i++ {
		switch t.Field(i).Name {
		case "TypeMeta", "ObjectMeta", "Status":
			continue
		}
		if !equality.Semantic.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			return false
		}
	}
	return true
}

// prepareCreate fills server-owned metadata and defaults, then validates.
// ctx carries the requesting user, for kinds that record it.
func (s *Server) prepareCreate(ctx context.Context, r *resource.Resource, obj runtime.Object, namespace string) error {
	m, err := meta.Accessor(obj)
	if err != nil {
		return apierrors.NewBadRequest(err.Error())
	}
	if r.Namespaced {
		switch {
		case m.GetNamespace() == "":
			m.SetNamespace(namespace)
		case namespace != "" && m.GetNamespace() != namespace:
			return apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
		}
	} else {
		m.SetNamespace("")
	}
	if m.GetName() == "" && m.GetGenerateName() != "" {
		m.SetName(generatedName(m.GetGenerateName()))
	}
	m.SetUID(types.UID(uuid.NewUUID()))
	m.SetCreationTimestamp(metav1.NewTime(s.now().Truncate(1e9)))
	m.SetResourceVersion("")
	m.SetDeletionTimestamp(nil)
	m.SetDeletionGracePeriodSeconds(nil)
	m.SetSelfLink("")
	m.SetManagedFields(nil)
	if r.Generation {
		m.SetGeneration(1)
	} else {
		m.SetGeneration(0)
	}
	if r.Default != nil {
		r.Default(obj)
	}
	if r.PrepareCreate != nil {
		r.PrepareCreate(obj)
	}
	if r.SetCreator != nil {
		u, _ := auth.UserFrom(ctx)
		r.SetCreator(obj, u)
	}
	errs := validateMeta(r, m)
	if r.Validate != nil {
		errs = append(errs, r.Validate(obj)...)
	}
	if len(errs) > 0 {
		return invalid(r, m.GetName(), errs)
	}
	return nil
}

// prepareUpdate merges an update into the stored object's server-owned
// state, as upstream's update strategies do, then defaults and validates.
// sub is "" for the main resource, "status" or one of the kind's Parts.
func (s *Server) prepareUpdate(r *resource.Resource, sub string, obj, cur runtime.Object) (runtime.Object, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	cm, _ := meta.Accessor(cur)
	if rv := m.GetResourceVersion(); rv != "" && rv != cm.GetResourceVersion() {
		return nil, apierrors.NewConflict(r.Resource().GroupResource(), cm.GetName(), errModified)
	}
	if merge := r.Parts[sub]; merge != nil {
		obj = merge(obj, cur)
		m, _ = meta.Accessor(obj)
	} else if sub == "status" {
		// Only status changes through /status; everything else stays as stored.
		merged := cur.DeepCopyObject()
		copyStatus(merged, obj)
		obj = merged
		m, _ = meta.Accessor(obj)
	} else if r.Status {
		copyStatus(obj, cur)
	}
	if m.GetNamespace() == "" && r.Namespaced {
		m.SetNamespace(cm.GetNamespace())
	}
	if m.GetUID() == "" {
		m.SetUID(cm.GetUID())
	}
	m.SetCreationTimestamp(cm.GetCreationTimestamp())
	m.SetDeletionTimestamp(cm.GetDeletionTimestamp())
	m.SetDeletionGracePeriodSeconds(cm.GetDeletionGracePeriodSeconds())
	m.SetResourceVersion(cm.GetResourceVersion())
	m.SetGeneration(cm.GetGeneration())
	m.SetSelfLink("")
	m.SetManagedFields(nil)
	if r.PrepareUpdate != nil {
		r.PrepareUpdate(obj, cur)
	}
	if r.Default != nil {
		r.Default(obj)
	}
	if r.Generation && !specEqual(obj, cur) {
		m.SetGeneration(cm.GetGeneration() + 1)
	}
	errs := validateMetaUpdate(r, m, cm)
	if cm.GetDeletionTimestamp() != nil {
		errs = append(errs, validateFinalizersWhileDeleting(m.GetFinalizers(), cm.GetFinalizers())...)
	}
	// ValidateUpdate checks the whole new object as well, as upstream's
	// update validation does; Validate alone serves kinds without one.
	if r.ValidateUpdate != nil {
		errs = append(errs, r.ValidateUpdate(obj, cur)...)
	} else if r.Validate != nil {
		errs = append(errs, r.Validate(obj)...)
	}
	if len(errs) > 0 {
		return nil, invalid(r, m.GetName(), errs)
	}
	return obj, nil
}

// validateFinalizersWhileDeleting forbids new finalizers on an object that
// is being deleted, as upstream does: they could keep it forever.
func validateFinalizersWhileDeleting(now, before []string) field.ErrorList {
	had := map[string]bool{}
	for _, f := range before {
		had[f] = true
	}
	var added []string
	for _, f := range now {
		if !had[f] {
			added = append(added, f)
		}
	}
	if len(added) == 0 {
		return nil
	}
	return field.ErrorList{field.Forbidden(field.NewPath("metadata", "finalizers"),
		fmt.Sprintf("no new finalizers can be added if the object is being deleted, found new finalizers %q", added))}
}

// finished reports whether an object marked for deletion may now go: no
// finalizers left and no grace period still running.
func finished(m metav1.Object) bool {
	if m.GetDeletionTimestamp() == nil || len(m.GetFinalizers()) > 0 {
		return false
	}
	g := m.GetDeletionGracePeriodSeconds()
	return g == nil || *g == 0
}
