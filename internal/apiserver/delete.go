package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiffhq/skiff/internal/apiserver/resource"
	"github.com/skiffhq/skiff/internal/storage"
)

// deleteOptions reads DeleteOptions from the body, if any, and the query.
func deleteOptions(w http.ResponseWriter, r *http.Request) (*metav1.DeleteOptions, error) {
	opts := &metav1.DeleteOptions{}
	data, err := readBody(w, r)
	if err != nil {
		return nil, err
	}
	if len(data) > 0 {
		if data, err = toJSON(r, data); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(data, opts); err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid DeleteOptions: %v", err))
		}
	}
	q := r.URL.Query()
	if g := q.Get("gracePeriodSeconds"); g != "" {
		n, err := strconv.ParseInt(g, 10, 64)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid gracePeriodSeconds %q", g))
		}
		opts.GracePeriodSeconds = &n
	}
	if p := q.Get("propagationPolicy"); p != "" {
		pp := metav1.DeletionPropagation(p)
		opts.PropagationPolicy = &pp
	}
	if o := q.Get("orphanDependents"); o != "" {
		b := isTrue(o)
		opts.OrphanDependents = &b
	}
	if opts.PropagationPolicy != nil {
		switch *opts.PropagationPolicy {
		case metav1.DeletePropagationOrphan, metav1.DeletePropagationBackground, metav1.DeletePropagationForeground:
		default:
			return nil, apierrors.NewBadRequest(fmt.Sprintf("propagationPolicy: Unsupported value: %q: supported values: \"Foreground\", \"Background\", \"Orphan\"", *opts.PropagationPolicy))
		}
		if opts.OrphanDependents != nil {
			return nil, apierrors.NewBadRequest("orphanDependents and propagationPolicy cannot both be set")
		}
	}
	if opts.GracePeriodSeconds != nil && *opts.GracePeriodSeconds < 0 {
		zero := int64(0)
		opts.GracePeriodSeconds = &zero
	}
	return opts, nil
}

// finalizerFor returns the finalizer a propagation policy asks the garbage
// collector to act on, if any.
func finalizerFor(opts *metav1.DeleteOptions) string {
	if opts.OrphanDependents != nil && *opts.OrphanDependents {
		return metav1.FinalizerOrphanDependents
	}
	if opts.PropagationPolicy != nil {
		switch *opts.PropagationPolicy {
		case metav1.DeletePropagationOrphan:
			return metav1.FinalizerOrphanDependents
		case metav1.DeletePropagationForeground:
			return metav1.FinalizerDeleteDependents
		}
	}
	return ""
}

// specFinalizers returns finalizers that live outside metadata: a
// namespace's spec.finalizers, which the namespace controller clears once
// the namespace is empty.
func specFinalizers(obj runtime.Object) int {
	if ns, ok := obj.(*corev1.Namespace); ok {
		return len(ns.Spec.Finalizers)
	}
	return 0
}

// mayGo reports whether an object marked for deletion can now be removed.
func mayGo(obj runtime.Object) bool {
	m, _ := meta.Accessor(obj)
	return finished(m) && specFinalizers(obj) == 0
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, info *requestInfo) error {
	if info.subresource != "" {
		return apierrors.NewMethodNotSupported(info.res.Resource().GroupResource(), "delete")
	}
	out, ok := s.negotiate(r, info)
	if !ok {
		return notAcceptable()
	}
	dry, err := dryRun(r)
	if err != nil {
		return err
	}
	opts, err := deleteOptions(w, r)
	if err != nil {
		return err
	}
	obj, gone, err := s.deleteObject(r.Context(), info.res, info.namespace, info.name, opts, dry)
	if err != nil {
		return err
	}
	code := http.StatusOK
	if !gone {
		// Upstream answers 202 when the object waits on finalizers or a
		// grace period.
		code = http.StatusAccepted
	}
	writeObject(w, code, out.media, obj)
	return nil
}

// deleteObject deletes an object at once, or marks it for deletion when
// finalizers, a propagation policy or a grace period must run first. gone
// reports whether it was removed.
func (s *Server) deleteObject(ctx context.Context, res *resource.Resource, ns, name string, opts *metav1.DeleteOptions, dry bool) (obj runtime.Object, gone bool, err error) {
	gr := res.Resource().GroupResource()
	k := key(res, ns, name)
	st := s.store(res)
	for attempt := 0; ; attempt++ {
		cur, err := st.Get(ctx, k)
		if err != nil {
			return nil, false, storageError(err, gr, name)
		}
		cm, _ := meta.Accessor(cur)
		if err := checkPreconditions(gr, name, opts.Preconditions, cm); err != nil {
			return nil, false, err
		}
		var grace *int64
		if res.GracefulDelete != nil {
			grace = res.GracefulDelete(cur, opts.GracePeriodSeconds)
		}
		fin := finalizerFor(opts)
		mark := len(cm.GetFinalizers()) > 0 || fin != "" || specFinalizers(cur) > 0 || (grace != nil && *grace > 0)
		if !mark {
			a := &Attributes{Operation: Delete, Resource: res, Namespace: ns, Name: name, Old: cur, DryRun: dry}
			if err := s.admit(ctx, a); err != nil {
				return nil, false, err
			}
			if dry {
				return cur, true, nil
			}
			rv := cm.GetResourceVersion()
			deleted, err := st.Delete(ctx, k, &storage.Preconditions{ResourceVersion: &rv}, nil)
			if err != nil && errors.Is(err, storage.ErrConflict) && attempt < 5 {
				continue // it changed since we read it: decide again
			}
			if err != nil {
				return nil, false, storageError(err, gr, name)
			}
			s.committed(ctx, a)
			deleted.GetObjectKind().SetGroupVersionKind(res.Kind)
			return deleted, true, nil
		}
		// Marking is the start of a delete, so admission may refuse it
		// (a system namespace, say). Nothing is committed yet: admitters
		// learn of the removal when the object finally goes.
		if err := s.admit(ctx, &Attributes{Operation: Delete, Resource: res, Namespace: ns, Name: name, Old: cur, DryRun: dry}); err != nil {
			return nil, false, err
		}
		info := &requestInfo{verb: "delete", res: res, namespace: ns, name: name}
		updated, err := s.markDeleted(ctx, info, grace, fin, dry)
		if err != nil {
			return nil, false, err
		}
		if dry {
			return updated, false, nil
		}
		um, _ := meta.Accessor(updated)
		if mayGo(updated) {
			uid := um.GetUID()
			deleted, err := st.Delete(ctx, k, &storage.Preconditions{UID: &uid}, nil)
			if err != nil && !isNotFound(err) {
				return nil, false, storageError(err, gr, name)
			}
			if deleted != nil {
				s.committed(ctx, &Attributes{Operation: Delete, Resource: res, Namespace: ns, Name: name, Old: deleted})
				return deleted, true, nil
			}
			return updated, true, nil
		}
		return updated, false, nil
	}
}

// markDeleted sets deletionTimestamp (now plus the grace period) and the
// propagation finalizer, shortening a grace period already running if the
// new one ends sooner, as upstream does.
func (s *Server) markDeleted(ctx context.Context, info *requestInfo, grace *int64, fin string, dry bool) (runtime.Object, error) {
	gr := info.res.Resource().GroupResource()
	fn := func(cur runtime.Object) (runtime.Object, error) {
		obj := cur.DeepCopyObject()
		m, _ := meta.Accessor(obj)
		g := int64(0)
		if grace != nil {
			g = *grace
		}
		now := s.now()
		deadline := metav1.NewTime(now.Add(time.Duration(g) * time.Second).Truncate(time.Second))
		if ts := m.GetDeletionTimestamp(); ts == nil || (grace != nil && deadline.Before(ts)) {
			m.SetDeletionTimestamp(&deadline)
			m.SetDeletionGracePeriodSeconds(&g)
		}
		if fin != "" && !hasString(m.GetFinalizers(), fin) {
			m.SetFinalizers(append(m.GetFinalizers(), fin))
		}
		if ns, ok := obj.(*corev1.Namespace); ok {
			ns.Status.Phase = corev1.NamespaceTerminating
		}
		if dry {
			return nil, errDryRun{obj}
		}
		return obj, nil
	}
	updated, err := s.store(info.res).GuaranteedUpdate(ctx, key(info.res, info.namespace, info.name), nil, fn)
	if dr, ok := err.(errDryRun); ok {
		return dr.obj, nil
	}
	if err != nil {
		return nil, storageError(err, gr, info.name)
	}
	updated.GetObjectKind().SetGroupVersionKind(info.res.Kind)
	return updated, nil
}

// checkPreconditions applies DeleteOptions.Preconditions with upstream's
// conflict messages.
func checkPreconditions(gr schema.GroupResource, name string, p *metav1.Preconditions, m metav1.Object) error {
	if p == nil {
		return nil
	}
	if p.UID != nil && *p.UID != m.GetUID() {
		//lint:ignore ST1005 upstream's wording, which clients match on
		return apierrors.NewConflict(gr, name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, m.GetUID()))
	}
	if p.ResourceVersion != nil && *p.ResourceVersion != m.GetResourceVersion() {
		//lint:ignore ST1005 upstream's wording, which clients match on
		return apierrors.NewConflict(gr, name, fmt.Errorf("Precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, m.GetResourceVersion()))
	}
	return nil
}

func (s *Server) deleteCollection(w http.ResponseWriter, r *http.Request, info *requestInfo) error {
	if info.subresource != "" {
		return apierrors.NewMethodNotSupported(info.res.Resource().GroupResource(), "deletecollection")
	}
	out, ok := s.negotiate(r, info)
	if !ok {
		return notAcceptable()
	}
	dry, err := dryRun(r)
	if err != nil {
		return err
	}
	opts, err := deleteOptions(w, r)
	if err != nil {
		return err
	}
	pred, err := s.predicate(r, info.res, "")
	if err != nil {
		return err
	}
	res, err := s.store(info.res).List(r.Context(), key(info.res, info.namespace, ""), storage.ListOptions{Predicate: pred})
	if err != nil {
		return storageError(err, info.res.Resource().GroupResource(), "")
	}
	var items []runtime.Object
	for _, obj := range res.Items {
		m, _ := meta.Accessor(obj)
		deleted, _, err := s.deleteObject(r.Context(), info.res, m.GetNamespace(), m.GetName(), opts, dry)
		if isNotFound(err) {
			continue // deleted meanwhile
		}
		if err != nil {
			return err
		}
		items = append(items, deleted)
	}
	list := info.res.NewList()
	list.GetObjectKind().SetGroupVersionKind(info.res.Kind.GroupVersion().WithKind(info.res.Kind.Kind + "List"))
	if err := meta.SetList(list, items); err != nil {
		return apierrors.NewInternalError(err)
	}
	writeObject(w, http.StatusOK, out.media, list)
	return nil
}

func hasString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
