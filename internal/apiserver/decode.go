package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// fieldValidation is the query parameter's three modes; upstream defaults
// to Warn.
type fieldValidation string

const (
	validationIgnore fieldValidation = "Ignore"
	validationWarn   fieldValidation = "Warn"
	validationStrict fieldValidation = "Strict"
)

func parseFieldValidation(r *http.Request) (fieldValidation, error) {
	switch v := r.URL.Query().Get("fieldValidation"); v {
	case "":
		return validationWarn, nil
	case string(validationIgnore), string(validationWarn), string(validationStrict):
		return fieldValidation(v), nil
	default:
		return "", apierrors.NewBadRequest(fmt.Sprintf("fieldValidation parameter unsupported: %v", v))
	}
}

// readBody reads a request body of at most MaxBodyBytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", MaxBodyBytes))
	}
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("read request body: %v", err))
	}
	return data, nil
}

// toJSON converts a body in the request's media type to JSON.
func toJSON(r *http.Request, data []byte) ([]byte, error) {
	switch m := bodyMedia(r); m {
	case mediaJSON:
		return data, nil
	case mediaProtobuf:
		return protobufToJSON(data)
	case mediaYAML, "application/x-yaml", "text/yaml":
		j, err := yaml.YAMLToJSON(data)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the object provided is unrecognized: %v", err))
		}
		return j, nil
	default:
		return nil, unsupportedMedia(m)
	}
}

// decodeObject decodes JSON into into, checking that the body's apiVersion
// and kind (when given) are gvk's, and reporting unknown or duplicate fields
// as the fieldValidation mode asks: an error (Strict) or warnings (Warn).
func decodeObject(data []byte, into runtime.Object, gvk schema.GroupVersionKind, mode fieldValidation) (warnings []string, err error) {
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, apierrors.NewBadRequest("the body of the request was empty")
	}
	// One pass: the body's apiVersion and kind land in into's TypeMeta, so
	// they are checked after decoding rather than by parsing the body twice.
	// A body that is not JSON fails first; a wrong kind is reported before
	// errors in other fields, as when it was checked first.
	strict, err := sigsjson.UnmarshalStrict(data, into, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if ok, _ := sigsjson.SyntaxErrorOffset(err); ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the object provided is unrecognized: %v", jsonError(err)))
	}
	if tm, terr := meta.TypeAccessor(into); terr == nil {
		if kind := tm.GetKind(); kind != "" && kind != gvk.Kind {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the kind of the object in the body (%s) does not match the expected kind (%s)", kind, gvk.Kind))
		}
		if av := tm.GetAPIVersion(); av != "" && av != gvk.GroupVersion().String() {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the API version in the data (%s) does not match the expected API version (%s)", av, gvk.GroupVersion().String()))
		}
	}
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the object provided is unrecognized: %v", jsonError(err)))
	}
	into.GetObjectKind().SetGroupVersionKind(gvk)
	if len(strict) == 0 || mode == validationIgnore {
		return nil, nil
	}
	msgs := make([]string, len(strict))
	for i, e := range strict {
		msgs[i] = e.Error()
	}
	if mode == validationStrict {
		return nil, apierrors.NewBadRequest("strict decoding error: " + strings.Join(msgs, ", "))
	}
	return msgs, nil
}

// jsonError adds the offset to syntax errors so a user can find the fault.
func jsonError(err error) error {
	if ok, off := sigsjson.SyntaxErrorOffset(err); ok {
		return fmt.Errorf("%w (at byte %s)", err, strconv.FormatInt(off, 10))
	}
	return err
}

// addWarnings sets upstream's Warning headers.
func addWarnings(w http.ResponseWriter, warnings []string) {
	for _, msg := range warnings {
		w.Header().Add("Warning", "299 - "+strconv.Quote(msg))
	}
}

// unsupportedMedia is upstream's 415 for a body type the server cannot read.
func unsupportedMedia(m string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusUnsupportedMediaType, Reason: metav1.StatusReasonUnsupportedMediaType,
		Message: fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf, application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got %s)", m),
	}}
}

// decodeBody decodes a request body in its media type into into, as
// decodeObject does. A protobuf body of into's own type is decoded
// directly: going through JSON would cost an encode and a decode, and
// protobuf cannot carry the unknown fields that pass exists to report.
func decodeBody(r *http.Request, data []byte, into runtime.Object, gvk schema.GroupVersionKind, mode fieldValidation) ([]string, error) {
	if bodyMedia(r) == mediaProtobuf {
		obj, actual, err := protoCodec.Decode(data, nil, nil)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the object provided is unrecognized: %v", err))
		}
		if actual.Kind != gvk.Kind {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the kind of the object in the body (%s) does not match the expected kind (%s)", actual.Kind, gvk.Kind))
		}
		if av := actual.GroupVersion().String(); av != gvk.GroupVersion().String() {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the API version in the data (%s) does not match the expected API version (%s)", av, gvk.GroupVersion().String()))
		}
		dst, src := reflect.ValueOf(into), reflect.ValueOf(obj)
		if dst.Type() == src.Type() && dst.Kind() == reflect.Pointer {
			dst.Elem().Set(src.Elem())
			into.GetObjectKind().SetGroupVersionKind(gvk)
			return nil, nil
		}
		// Another Go type for the kind: convert through JSON.
		j, err := json.Marshal(obj)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		return decodeObject(j, into, gvk, mode)
	}
	j, err := toJSON(r, data)
	if err != nil {
		return nil, err
	}
	return decodeObject(j, into, gvk, mode)
}

// protobufToJSON decodes a protobuf body and re-encodes it as JSON, so the
// rest of the request takes the one JSON path (protobuf cannot carry
// unknown fields, so nothing is lost for field validation).
func protobufToJSON(data []byte) ([]byte, error) {
	obj, _, err := protoCodec.Decode(data, nil, nil)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the object provided is unrecognized: %v", err))
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	return out, nil
}
