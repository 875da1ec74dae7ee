package storage

import (
	"encoding/json"
	"fmt"
	"strconv"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	sigsjson "sigs.k8s.io/json"
)

// Codec turns objects into the bytes stored in etcd and back. It is the
// one place the storage format is decided, so changing it (to protobuf or
// CBOR, say) touches only this type.
type Codec struct{}

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
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", obj, err)
	}
	return data, nil
}

// Decode fills into from data and sets its resourceVersion to rev. It
// decodes as upstream's storage does: field names match exactly (Encode
// wrote them), which is also faster than encoding/json's case-insensitive
// matching, and numbers in untyped fields stay integers where they are.
func (Codec) Decode(data []byte, rev int64, into runtime.Object) error {
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(data, into); err != nil {
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
