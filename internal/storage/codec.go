package storage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	sigsjson "sigs.k8s.io/json"
)

// Codec turns objects into the bytes stored in etcd and back. It is the
// one place the storage format is decided.
//
// Objects are stored as protobuf when their type has a protobuf form
// (every k8s.io/api type does): decoding it is several times cheaper than
// JSON, and decoding is most of what the storage layer spends CPU on.
// Such a value is protobufPrefix followed by a runtime.Unknown holding
// the object's apiVersion and kind and its protobuf bytes. Anything else
// is stored as JSON. Decode reads both, so values written as JSON by
// earlier versions stay readable and are rewritten as protobuf on their
// next update.
type Codec struct{}

// protobufPrefix starts every protobuf value; a JSON value starts with
// '{'. Prefix and envelope are upstream's; the envelope's apiVersion and
// kind are those the object carried, which may be empty.
var protobufPrefix = []byte{'k', '8', 's', 0}

// protobufObject is a type with generated protobuf code, as every
// k8s.io/api type has. (Their ProtoMessage methods are behind a build
// tag since Kubernetes 1.35, so only these two can be asked for; a type
// of our own that embedded an API type would pass, and must not be
// stored.)
type protobufObject interface {
	Marshal() ([]byte, error)
	Unmarshal([]byte) error
}

// Current reports whether data is in the format Encode writes today:
// protobuf. A JSON value is current only for types without protobuf
// code, which Encode also writes as JSON; callers that cannot tell
// re-encode, which is right for both.
func (Codec) Current(data []byte) bool { return bytes.HasPrefix(data, protobufPrefix) }

// Encode returns obj's stored form. resourceVersion is left out: it is the
// key's ModRevision, known only after the write, and storing a stale copy
// would make identical content compare unequal.
func (Codec) Encode(obj runtime.Object) ([]byte, error) {
	acc, err := meta.Accessor(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", obj, err)
	}
	if acc.GetResourceVersion() != "" {
		obj = obj.DeepCopyObject()
		acc, _ = meta.Accessor(obj)
		acc.SetResourceVersion("")
	}
	if pb, ok := obj.(protobufObject); ok {
		raw, err := pb.Marshal()
		if err != nil {
			return nil, fmt.Errorf("encode %T: %w", obj, err)
		}
		apiVersion, kind := obj.GetObjectKind().GroupVersionKind().ToAPIVersionAndKind()
		u := runtime.Unknown{TypeMeta: runtime.TypeMeta{APIVersion: apiVersion, Kind: kind}, Raw: raw}
		out := make([]byte, len(protobufPrefix), len(protobufPrefix)+u.Size())
		copy(out, protobufPrefix)
		n, err := u.MarshalToSizedBuffer(out[len(protobufPrefix):cap(out)])
		if err != nil {
			return nil, fmt.Errorf("encode %T: %w", obj, err)
		}
		return out[:len(protobufPrefix)+n], nil
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", obj, err)
	}
	return data, nil
}

// Decode fills into from data and sets its resourceVersion to rev. JSON is
// decoded as upstream's storage does: field names match exactly (Encode
// wrote them), which is also faster than encoding/json's case-insensitive
// matching, and numbers in untyped fields stay integers where they are.
func (Codec) Decode(data []byte, rev int64, into runtime.Object) error {
	if rest, ok := bytes.CutPrefix(data, protobufPrefix); ok {
		pb, ok := into.(protobufObject)
		if !ok {
			return fmt.Errorf("decode %T: stored as protobuf, which the type cannot read", into)
		}
		var u runtime.Unknown
		if err := u.Unmarshal(rest); err != nil {
			return fmt.Errorf("decode %T: %w", into, err)
		}
		if err := pb.Unmarshal(u.Raw); err != nil {
			return fmt.Errorf("decode %T: %w", into, err)
		}
		// As a JSON value would: the type it was written with, if any.
		if u.APIVersion != "" || u.Kind != "" {
			into.GetObjectKind().SetGroupVersionKind(schema.FromAPIVersionAndKind(u.APIVersion, u.Kind))
		}
	} else if err := sigsjson.UnmarshalCaseSensitivePreserveInts(data, into); err != nil {
		return fmt.Errorf("decode %T: %w", into, err)
	}
	return setResourceVersion(into, rev)
}

// setResourceVersion stamps rev on obj as its metadata.resourceVersion.
func setResourceVersion(obj runtime.Object, rev int64) error {
	acc, err := meta.Accessor(obj)
	if err != nil {
		return fmt.Errorf("set resourceVersion on %T: %w", obj, err)
	}
	acc.SetResourceVersion(strconv.FormatInt(rev, 10))
	return nil
}

// ParseResourceVersion turns an API resourceVersion into a revision; ""
// is 0. Anything else that is not a non-negative integer is an error the
// API server reports as 400.
func ParseResourceVersion(rv string) (int64, error) {
	if rv == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(rv, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %q", ErrInvalidResourceVersion, rv)
	}
	return n, nil
}
