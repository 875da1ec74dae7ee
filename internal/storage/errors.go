package storage

import (
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ErrInvalidResourceVersion: a resourceVersion that is not a revision (400).
var ErrInvalidResourceVersion = errors.New("storage: invalid resource version")

// PreconditionError says which precondition did not hold. It unwraps to
// ErrConflict, so callers that only map errors to 409 need not know it.
type PreconditionError struct {
	// Field is "UID" or "ResourceVersion".
	Field string
	// Want is the precondition, Got the stored object's value.
	Want, Got string
}

// Error implements error.
func (e *PreconditionError) Error() string {
	// Matches upstream's wording, which clients and tests sometimes match on.
	return fmt.Sprintf("Precondition failed: %s in precondition: %s, %s in object meta: %s", e.Field, e.Want, e.Field, e.Got)
}

// Unwrap lets errors.Is(err, ErrConflict) hold.
func (e *PreconditionError) Unwrap() error { return ErrConflict }

// ExpiredError carries the revisions of a too-old request, so the API
// server can word its 410 like upstream. It unwraps to ErrExpired.
type ExpiredError struct {
	// Requested is the revision asked for; Oldest the oldest still served.
	Requested, Oldest int64
}

// Error implements error.
func (e *ExpiredError) Error() string {
	return fmt.Sprintf("too old resource version: %d (%d)", e.Requested, e.Oldest)
}

// Unwrap lets errors.Is(err, ErrExpired) hold.
func (e *ExpiredError) Unwrap() error { return ErrExpired }

// expiredStatus is the watch.Error payload for a watch that started too
// far back: the 410 Gone, reason Expired, that informers answer by relisting.
func expiredStatus(requested, oldest int64) *metav1.Status {
	st := apierrors.NewResourceExpired((&ExpiredError{Requested: requested, Oldest: oldest}).Error()).ErrStatus
	return &st
}

// errorStatus wraps any other watch failure as a 500 for the watch stream.
func errorStatus(err error) *metav1.Status {
	st := apierrors.NewInternalError(err).ErrStatus
	return &st
}

// errCacherStopped: a watch asked of a cache whose context has ended.
var errCacherStopped = errors.New("storage: watch cache stopped")
