package garbagecollector

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// ownerState is what an owner reference points at right now.
type ownerState int

const (
	// solid: the owner exists and is not deleting its dependents.
	solid ownerState = iota
	// dangling: no object with that UID exists.
	dangling
	// waiting: the owner is being deleted in the foreground and waits
	// for its dependents to go.
	waiting
)

// classify resolves one owner reference of a dependent. The cache is
// asked first; an owner missing from it is confirmed against the API
// server before being called dangling, since the dependent may have been
// seen before its owner.
func (c *Controller) classify(ctx context.Context, dep objRef, or metav1.OwnerReference) (ownerState, error) {
	gv, err := schema.ParseGroupVersion(or.APIVersion)
	if err != nil {
		return solid, nil // unparseable: never delete on a guess
	}
	r, ok := c.kinds[schema.GroupKind{Group: gv.Group, Kind: or.Kind}]
	if !ok {
		return solid, nil // a kind this server does not serve
	}
	ref := objRef{GVR: r.GVR, Name: or.Name, UID: or.UID}
	if r.Namespaced {
		if dep.Namespace == "" {
			return solid, nil // invalid reference: leave it to a person
		}
		ref.Namespace = dep.Namespace
	}
	m := c.cached(ref)
	if m == nil {
		live, err := c.client(ref).Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && live.UID != or.UID) {
			return dangling, nil
		}
		if err != nil {
			return solid, fmt.Errorf("get owner %s %s: %w", or.Kind, or.Name, err)
		}
		m = live
	}
	if m.DeletionTimestamp != nil && slices.Contains(m.Finalizers, metav1.FinalizerDeleteDependents) {
		return waiting, nil
	}
	return solid, nil
}

// attemptToDelete deletes a dependent none of whose owners remain, or
// drops the references to owners that are gone while others remain.
func (c *Controller) attemptToDelete(ctx context.Context, ref objRef) error {
	m := c.cached(ref)
	if m == nil || m.DeletionTimestamp != nil || len(m.OwnerReferences) == 0 {
		return nil
	}
	var solids, drop []metav1.OwnerReference
	anyWaiting := false
	for _, or := range m.OwnerReferences {
		st, err := c.classify(ctx, ref, or)
		if err != nil {
			return err
		}
		switch st {
		case solid:
			solids = append(solids, or)
		case dangling:
			drop = append(drop, or)
		case waiting:
			drop = append(drop, or)
			anyWaiting = true
		}
	}
	switch {
	case len(drop) == 0:
		return nil
	case len(solids) > 0:
		// Another owner keeps it alive; only the dead references go.
		return c.setOwners(ctx, ref, m, solids)
	}
	policy := metav1.DeletePropagationBackground
	switch {
	case anyWaiting && len(c.graph.dependentsOf(ref.UID)) > 0:
		// Its own dependents must go before it so the waiting owner
		// waits for the whole subtree, as upstream.
		policy = metav1.DeletePropagationForeground
	case slices.Contains(m.Finalizers, metav1.FinalizerOrphanDependents):
		policy = metav1.DeletePropagationOrphan
	case slices.Contains(m.Finalizers, metav1.FinalizerDeleteDependents):
		policy = metav1.DeletePropagationForeground
	}
	uid := ref.UID
	err := c.client(ref).Delete(ctx, ref.Name, metav1.DeleteOptions{PropagationPolicy: &policy, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete %s %s/%s: %w", ref.GVR.Resource, ref.Namespace, ref.Name, err)
	}
	c.log.Info("deleted object whose owners are gone", "resource", ref.GVR.Resource, "namespace", ref.Namespace, "name", ref.Name, "propagation", policy)
	return nil
}

// processOwner finishes an owner's Orphan or Foreground deletion.
func (c *Controller) processOwner(ctx context.Context, ref objRef) error {
	m := c.cached(ref)
	if m == nil || m.DeletionTimestamp == nil {
		return nil
	}
	if slices.Contains(m.Finalizers, metav1.FinalizerOrphanDependents) {
		for _, d := range c.graph.dependentsOf(ref.UID) {
			dm := c.cached(d)
			if dm == nil {
				continue
			}
			keep := slices.DeleteFunc(slices.Clone(dm.OwnerReferences), func(o metav1.OwnerReference) bool { return o.UID == ref.UID })
			if len(keep) == len(dm.OwnerReferences) {
				continue
			}
			if err := c.setOwners(ctx, d, dm, keep); err != nil {
				return err
			}
		}
		return c.removeFinalizer(ctx, ref, m, metav1.FinalizerOrphanDependents)
	}
	if !slices.Contains(m.Finalizers, metav1.FinalizerDeleteDependents) {
		return nil
	}
	blocking := 0
	for _, d := range c.graph.dependentsOf(ref.UID) {
		dm := c.cached(d)
		if dm == nil {
			continue
		}
		for _, o := range dm.OwnerReferences {
			if o.UID == ref.UID && boolOf(o.BlockOwnerDeletion) {
				blocking++
			}
		}
		// Every dependent goes; only blocking ones hold the owner back.
		if dm.DeletionTimestamp == nil {
			c.queue.Add(item{ref: d})
		}
	}
	if blocking > 0 {
		return errWaiting
	}
	return c.removeFinalizer(ctx, ref, m, metav1.FinalizerDeleteDependents)
}

// setOwners replaces an object's owner references, guarded by its
// resourceVersion so a concurrent change is re-read rather than lost.
func (c *Controller) setOwners(ctx context.Context, ref objRef, m *metav1.PartialObjectMetadata, owners []metav1.OwnerReference) error {
	if owners == nil {
		owners = []metav1.OwnerReference{}
	}
	return c.patchMeta(ctx, ref, m, map[string]any{"ownerReferences": owners})
}

// removeFinalizer drops one finalizer; the API server deletes the object
// when the last one goes.
func (c *Controller) removeFinalizer(ctx context.Context, ref objRef, m *metav1.PartialObjectMetadata, f string) error {
	keep := slices.DeleteFunc(slices.Clone(m.Finalizers), func(s string) bool { return s == f })
	if keep == nil {
		keep = []string{}
	}
	return c.patchMeta(ctx, ref, m, map[string]any{"finalizers": keep})
}

func (c *Controller) patchMeta(ctx context.Context, ref objRef, m *metav1.PartialObjectMetadata, fields map[string]any) error {
	fields["resourceVersion"] = m.ResourceVersion
	fields["uid"] = m.UID
	data, err := json.Marshal(map[string]any{"metadata": fields})
	if err != nil {
		return err
	}
	_, err = c.client(ref).Patch(ctx, ref.Name, types.MergePatchType, data, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("patch %s %s/%s: %w", ref.GVR.Resource, ref.Namespace, ref.Name, err)
	}
	return nil
}
