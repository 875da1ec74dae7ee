package apiserver

import (
	"errors"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiffhq/skiff/internal/storage"
)

// errModified is upstream's conflict message.
var errModified = errors.New("the object has been modified; please apply your changes to the latest version and try again")

// storageError turns a storage error into the API error upstream returns
// for the same situation.
func storageError(err error, gr schema.GroupResource, name string) error {
	var status apierrors.APIStatus
	switch {
	case err == nil:
		return nil
	case errors.As(err, &status):
		return err
	case errors.Is(err, storage.ErrNotFound):
		return apierrors.NewNotFound(gr, name)
	case errors.Is(err, storage.ErrExists):
		return apierrors.NewAlreadyExists(gr, name)
	case errors.Is(err, storage.ErrConflict):
		msg := err.Error()
		if i := strings.Index(msg, "Precondition failed"); i >= 0 {
			return apierrors.NewConflict(gr, name, errors.New(msg[i:]))
		}
		return apierrors.NewConflict(gr, name, errModified)
	case errors.Is(err, storage.ErrExpired):
		return apierrors.NewResourceExpired(strings.TrimPrefix(err.Error(), "storage: "))
	case errors.Is(err, storage.ErrTooLarge):
		return apierrors.NewTimeoutError("Too large resource version", 1)
	case errors.Is(err, storage.ErrInvalidContinue):
		return apierrors.NewBadRequest(err.Error())
	}
	return apierrors.NewInternalError(err)
}

// statusOf returns the metav1.Status for any error.
func statusOf(err error) *metav1.Status {
	var apiStatus apierrors.APIStatus
	if !errors.As(err, &apiStatus) {
		apiStatus = apierrors.NewInternalError(err)
	}
	st := apiStatus.Status()
	st.Kind, st.APIVersion = "Status", "v1"
	if st.Status == "" {
		st.Status = metav1.StatusFailure
	}
	return &st
}

// writeError renders err as a metav1.Status with upstream's code, in the
// media type the client asked for.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	st := statusOf(err)
	code := int(st.Code)
	if code == 0 {
		code = http.StatusInternalServerError
	}
	writeObject(w, code, statusMedia(r), st)
}

// notFoundPath is upstream's answer for a URL that names no resource.
func notFoundPath(string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusNotFound, Reason: metav1.StatusReasonNotFound,
		Message: "the server could not find the requested resource", Details: &metav1.StatusDetails{},
	}}
}
