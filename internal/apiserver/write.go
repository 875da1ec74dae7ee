package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiffhq/skiff/internal/apiserver/resource"
	"github.com/skiffhq/skiff/internal/storage"
)

// dryRun reads the dryRun parameter: "All" is the only value upstream knows.
func dryRun(r *http.Request) (bool, error) {
	vals := r.URL.Query()["dryRun"]
	for _, v := range vals {
		if v != "All" {
			return false, apierrors.NewBadRequest(fmt.Sprintf("Invalid dryRun value %q: supported values are \"All\"", v))
		}
	}
	return len(vals) > 0, nil
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, info *requestInfo) error {
	if info.subresource == "binding" {
		return s.bind(w, r, info)
	}
	if info.subresource != "" || info.name != "" {
		return apierrors.NewMethodNotSupported(info.res.Resource().GroupResource(), "create")
	}
	out, ok := s.negotiate(r, info)
	if !ok {
		return notAcceptable()
	}
	dry, err := dryRun(r)
	if err != nil {
		return err
	}
	mode, err := parseFieldValidation(r)
	if err != nil {
		return err
	}
	data, err := readBody(w, r)
	if err != nil {
		return err
	}
	obj := newObject(info.res)
	warnings, err := decodeBody(r, data, obj, info.res.Kind, mode)
	if err != nil {
		return err
	}
	if err := s.prepareCreate(r.Context(), info.res, obj, info.namespace); err != nil {
		return err
	}
	m, _ := meta.Accessor(obj)
	if m.GetName() == "" {
		return invalid(info.res, "", field.ErrorList{field.Required(field.NewPath("metadata", "name"), "name or generateName is required")})
	}
	created, err := s.createObject(r.Context(), info.res, obj, dry)
	if err != nil {
		return err
	}
	addWarnings(w, warnings)
	writeObject(w, http.StatusCreated, out.media, created)
	return nil
}

// createObject admits and stores a prepared object.
func (s *Server) createObject(ctx context.Context, res *resource.Resource, obj runtime.Object, dry bool) (runtime.Object, error) {
	m, _ := meta.Accessor(obj)
	a := &Attributes{Operation: Create, Resource: res, Namespace: m.GetNamespace(), Name: m.GetName(), Object: obj, DryRun: dry}
	if err := s.admit(ctx, a); err != nil {
		return nil, err
	}
	if dry {
		s.release(ctx, a, nil)
		return obj, nil
	}
	created, err := s.store(res).Create(ctx, key(res, m.GetNamespace(), m.GetName()), obj)
	if err != nil {
		s.release(ctx, a, nil)
		return nil, storageError(err, res.Resource().GroupResource(), m.GetName())
	}
	a.Object = created
	s.committed(ctx, a)
	created.GetObjectKind().SetGroupVersionKind(res.Kind)
	return created, nil
}

func (s *Server) update(w http.ResponseWriter, r *http.Request, info *requestInfo) error {
	if !subresourceAllows(info.res, info.subresource, "update") {
		return apierrors.NewMethodNotSupported(info.res.Resource().GroupResource(), "update")
	}
	out, ok := s.negotiate(r, info)
	if !ok {
		return notAcceptable()
	}
	dry, err := dryRun(r)
	if err != nil {
		return err
	}
	mode, err := parseFieldValidation(r)
	if err != nil {
		return err
	}
	data, err := readBody(w, r)
	if err != nil {
		return err
	}
	if info.subresource == "scale" {
		if data, err = toJSON(r, data); err != nil {
			return err
		}
		return s.updateScale(w, r, info, out, dry, mode, jsonPatcher(data))
	}
	obj := newObject(info.res)
	// decodeBody reads a protobuf body straight into obj: the status
	// updates of kubelets and controllers come that way.
	warnings, err := decodeBody(r, data, obj, info.res.Kind, mode)
	if err != nil {
		return err
	}
	m, _ := meta.Accessor(obj)
	if m.GetName() != info.name {
		return apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", m.GetName(), info.name))
	}
	if info.res.Namespaced && m.GetNamespace() != "" && m.GetNamespace() != info.namespace {
		return apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
	}
	updated, err := s.updateObject(r.Context(), info, dry, func(cur runtime.Object) (runtime.Object, error) {
		return obj.DeepCopyObject(), nil
	})
	if err != nil {
		return err
	}
	addWarnings(w, warnings)
	writeObject(w, http.StatusOK, out.media, updated)
	return nil
}

// updateObject applies an update computed from the stored object, then
// runs the update strategy, admission and the store's compare-and-swap. An
// object whose last finalizer goes while it is marked for deletion is then
// deleted, as upstream does.
func (s *Server) updateObject(ctx context.Context, info *requestInfo, dry bool, fn func(cur runtime.Object) (runtime.Object, error)) (runtime.Object, error) {
	res, k := info.res, key(info.res, info.namespace, info.name)
	gr := res.Resource().GroupResource()
	var admitted *Attributes
	tryUpdate := func(cur runtime.Object) (runtime.Object, error) {
		if admitted != nil {
			s.release(ctx, admitted, nil)
			admitted = nil
		}
		next, err := fn(cur)
		if err != nil {
			return nil, err
		}
		sub := info.subresource
		if sub == "finalize" {
			sub = ""
		}
		next, err = s.prepareUpdate(res, sub, next, cur)
		if err != nil {
			return nil, err
		}
		a := &Attributes{Operation: Update, Resource: res, Subresource: info.subresource, Namespace: info.namespace, Name: info.name, Object: next, Old: cur, DryRun: dry}
		if err := s.admit(ctx, a); err != nil {
			return nil, err
		}
		admitted = a
		if dry {
			return nil, errDryRun{next}
		}
		return next, nil
	}
	updated, err := s.store(res).GuaranteedUpdate(ctx, k, nil, tryUpdate)
	if dr, ok := err.(errDryRun); ok {
		s.release(ctx, admitted, nil)
		return dr.obj, nil
	}
	if err != nil {
		if admitted != nil {
			s.release(ctx, admitted, nil)
		}
		return nil, storageError(err, gr, info.name)
	}
	admitted.Object = updated
	s.committed(ctx, admitted)
	updated.GetObjectKind().SetGroupVersionKind(res.Kind)
	if mayGo(updated) {
		m, _ := meta.Accessor(updated)
		if _, err := s.store(res).Delete(ctx, k, &storage.Preconditions{UID: ptrUID(m.GetUID())}, nil); err != nil && !isNotFound(err) {
			return nil, storageError(err, gr, info.name)
		}
		s.committed(ctx, &Attributes{Operation: Delete, Resource: res, Namespace: info.namespace, Name: info.name, Old: updated})
	}
	return updated, nil
}

// errDryRun carries a dry run's result out of the update function, so
// nothing is written.
type errDryRun struct{ obj runtime.Object }

func (errDryRun) Error() string { return "dry run" }

func isNotFound(err error) bool {
	return err != nil && (apierrors.IsNotFound(err) || errors.Is(err, storage.ErrNotFound))
}

// bind sets a pod's node through pods/binding, refusing to move a pod that
// already has one, as upstream does.
func (s *Server) bind(w http.ResponseWriter, r *http.Request, info *requestInfo) error {
	data, err := readBody(w, r)
	if err != nil {
		return err
	}
	var b corev1.Binding
	gvk := corev1.SchemeGroupVersion.WithKind("Binding")
	if _, err := decodeBody(r, data, &b, gvk, validationStrict); err != nil {
		return err
	}
	if b.Name != "" && b.Name != info.name {
		return apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", b.Name, info.name))
	}
	if b.Target.Kind != "" && b.Target.Kind != "Node" {
		return invalid(info.res, info.name, field.ErrorList{field.NotSupported(field.NewPath("target", "kind"), b.Target.Kind, []string{"Node"})})
	}
	if b.Target.Name == "" {
		return invalid(info.res, info.name, field.ErrorList{field.Required(field.NewPath("target", "name"), "")})
	}
	gr := info.res.Resource().GroupResource()
	var pre *storage.Preconditions
	if b.UID != "" {
		pre = &storage.Preconditions{UID: &b.UID}
	}
	_, err = s.store(info.res).GuaranteedUpdate(r.Context(), key(info.res, info.namespace, info.name), pre, func(cur runtime.Object) (runtime.Object, error) {
		pod := cur.DeepCopyObject().(*corev1.Pod)
		if pod.DeletionTimestamp != nil {
			return nil, apierrors.NewConflict(gr, info.name, fmt.Errorf("pod %s is being deleted, cannot be assigned to a host", info.name))
		}
		if pod.Spec.NodeName != "" {
			return nil, apierrors.NewConflict(gr, info.name, fmt.Errorf("pod %s is already assigned to node %q", info.name, pod.Spec.NodeName))
		}
		pod.Spec.NodeName = b.Target.Name
		setPodScheduled(pod, metav1.NewTime(s.now()))
		for k, v := range b.Annotations {
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations[k] = v
		}
		return pod, nil
	})
	if err != nil {
		return storageError(err, gr, info.name)
	}
	writeObject(w, http.StatusCreated, statusMedia(r), &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Code: http.StatusCreated})
	return nil
}

func ptrUID(u types.UID) *types.UID { return &u }

// Create stores obj through the same defaulting, validation and admission
// as a client's create. The server bootstraps its system objects with it.
func (s *Server) Create(ctx context.Context, obj runtime.Object) (runtime.Object, error) {
	gvk := obj.GetObjectKind().GroupVersionKind()
	res, ok := s.byGVK[gvk]
	if !ok {
		return nil, fmt.Errorf("create: kind %s is not served", gvk)
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", gvk.Kind, err)
	}
	if err := s.prepareCreate(ctx, res, obj, m.GetNamespace()); err != nil {
		return nil, err
	}
	return s.createObject(ctx, res, obj, false)
}

// Get reads one object of a served kind, for in-process callers.
func (s *Server) Get(ctx context.Context, gvk schema.GroupVersionKind, namespace, name string) (runtime.Object, error) {
	res, ok := s.byGVK[gvk]
	if !ok {
		return nil, fmt.Errorf("get: kind %s is not served", gvk)
	}
	obj, err := s.store(res).Get(ctx, key(res, namespace, name))
	return obj, storageError(err, res.Resource().GroupResource(), name)
}

// setPodScheduled records a successful binding in the pod's status, as
// upstream's binding does, so the condition is there before any kubelet
// reports.
func setPodScheduled(pod *corev1.Pod, now metav1.Time) {
	for i := range pod.Status.Conditions {
		c := &pod.Status.Conditions[i]
		if c.Type == corev1.PodScheduled {
			if c.Status != corev1.ConditionTrue {
				c.Status, c.Reason, c.Message, c.LastTransitionTime = corev1.ConditionTrue, "", "", now
			}
			return
		}
	}
	pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{
		Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now,
	})
}
