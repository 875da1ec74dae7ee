// Package storage keeps API objects in etcd and serves lists and watches of them.
//
// Keys are "/registry/<group>/<resource>/<namespace>/<name>" (cluster-scoped
// objects have no namespace part); values are the object's JSON. An object's
// metadata.resourceVersion is the etcd revision that last modified it, so
// optimistic concurrency is one etcd compare, and lists and watches are
// consistent with each other by revision.
package storage

import (
	"context"
	"errors"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

// Sentinel errors the API server maps to upstream status codes.
var (
	// ErrNotFound: no object at the key (404).
	ErrNotFound = errors.New("storage: key not found")
	// ErrExists: Create found an object at the key (409 AlreadyExists).
	ErrExists = errors.New("storage: key exists")
	// ErrConflict: the object changed since the caller read it (409 Conflict).
	ErrConflict = errors.New("storage: resource version conflict")
	// ErrExpired: the requested revision has been compacted (410 Gone).
	ErrExpired = errors.New("storage: resource version too old")
	// ErrTooLarge: the requested revision is in the future (504 Timeout upstream).
	ErrTooLarge = errors.New("storage: resource version too large")
	// ErrInvalidContinue: a continue token that cannot be decoded (400).
	ErrInvalidContinue = errors.New("storage: invalid continue token")
)

// Preconditions must hold on the stored object for a write to proceed.
type Preconditions struct {
	UID             *types.UID
	ResourceVersion *string
}

// Predicate selects objects by label and field.
type Predicate struct {
	Label labels.Selector
	Field fields.Selector
	// Attrs returns the labels and selectable fields of an object.
	Attrs func(obj runtime.Object) (labels.Set, fields.Set, error)
}

// Empty reports whether the predicate matches everything.
func (p Predicate) Empty() bool {
	return (p.Label == nil || p.Label.Empty()) && (p.Field == nil || p.Field.Empty())
}

// Matches reports whether obj satisfies the predicate.
func (p Predicate) Matches(obj runtime.Object) (bool, error) {
	if p.Empty() {
		return true, nil
	}
	if p.Attrs == nil {
		return false, errors.New("storage: predicate has selectors but no Attrs")
	}
	ls, fs, err := p.Attrs(obj)
	if err != nil {
		return false, err
	}
	if p.Label != nil && !p.Label.Matches(ls) {
		return false, nil
	}
	if p.Field != nil && !p.Field.Matches(fs) {
		return false, nil
	}
	return true, nil
}

// ListOptions shape a list.
type ListOptions struct {
	// ResourceVersion: "" reads the latest state from etcd (consistent);
	// "0" may be served from the watch cache; any other value with
	// Match "NotOlderThan" (or "" without Limit) reads at least that fresh
	// (ErrTooLarge if the store is not there yet), and with Match "Exact"
	// (or "" with Limit, as upstream keeps for old pagers) reads at exactly
	// that revision (ErrExpired once compacted).
	ResourceVersion      string
	ResourceVersionMatch string
	Predicate            Predicate
	// Limit > 0 pages the list; Continue resumes a paged list at the
	// revision of its first page (ResourceVersion is then ignored). With a
	// predicate, a page is filled by reading on until Limit items match.
	Limit    int64
	Continue string
}

// ListResult is one page of a list.
type ListResult struct {
	Items []runtime.Object
	// ResourceVersion is the store revision the list reflects.
	ResourceVersion int64
	// Continue is set when more items remain.
	Continue string
	// RemainingItemCount estimates the items left after this page, when known.
	RemainingItemCount *int64
}

// WatchOptions shape a watch.
type WatchOptions struct {
	// ResourceVersion: events after this revision are sent; "" or "0"
	// starts with synthetic ADDED events for the current state.
	ResourceVersion string
	Predicate       Predicate
	// ProgressNotify asks for BOOKMARK events carrying the current revision.
	ProgressNotify bool
	// SendInitialEvents with ResourceVersionMatch=NotOlderThan: start with
	// the state, then a BOOKMARK annotated as the end of initial events.
	SendInitialEvents bool
}

// UpdateFunc computes the new object from the current one. It must not
// modify cur. Returning an error aborts the update with that error
// (unwrapped); an fn that finds the caller's resourceVersion stale should
// return ErrConflict, since a retry after a concurrent write calls fn again.
type UpdateFunc func(cur runtime.Object) (runtime.Object, error)

// Interface is what the API server needs of a resource's storage. Keys are
// full etcd keys; prefixes end in "/" (a List or Watch "prefix" without
// the trailing "/" means that one key). Objects returned may be shared
// with a watch cache: callers must DeepCopy before modifying them.
type Interface interface {
	// Create stores obj at key if nothing is there, and returns it with its
	// resourceVersion set.
	Create(ctx context.Context, key string, obj runtime.Object) (runtime.Object, error)
	// Get returns the object at key.
	Get(ctx context.Context, key string) (runtime.Object, error)
	// List returns the objects under prefix that match opts.Predicate.
	List(ctx context.Context, prefix string, opts ListOptions) (*ListResult, error)
	// GuaranteedUpdate reads the object at key, applies fn and writes the
	// result if the object did not change meanwhile, retrying fn on a
	// concurrent change. If fn returns an object with the same content, no
	// write happens. Preconditions are checked against each read.
	GuaranteedUpdate(ctx context.Context, key string, pre *Preconditions, fn UpdateFunc) (runtime.Object, error)
	// Delete removes the object at key if the preconditions hold and
	// validate (if given) accepts the current object; it returns the
	// object as it was last stored.
	Delete(ctx context.Context, key string, pre *Preconditions, validate func(cur runtime.Object) error) (runtime.Object, error)
	// Watch streams changes under prefix (or to the key itself).
	Watch(ctx context.Context, prefix string, opts WatchOptions) (watch.Interface, error)
}
