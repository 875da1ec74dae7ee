package apiserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	clientscheme "k8s.io/client-go/kubernetes/scheme"
)

// protoCodec reads and writes the built-in kinds in the protobuf
// envelope. It holds no state of its own, so every request shares it.
var protoCodec = protobuf.NewSerializer(clientscheme.Scheme, clientscheme.Scheme)

// hasProtobuf reports whether obj's kind has a protobuf encoding: every
// built-in kind (generated with one) does.
func hasProtobuf(obj runtime.Object) bool {
	_, ok := obj.(interface{ Marshal() ([]byte, error) })
	return ok
}

// encodeProtobuf returns obj in the protobuf envelope, whose runtime.Unknown
// names obj's kind. An object without its kind set (the encoding has no
// other place for it) is given the scheme's.
func encodeProtobuf(obj runtime.Object) ([]byte, error) {
	if obj == nil {
		return nil, errors.New("protobuf: no object")
	}
	if obj.GetObjectKind().GroupVersionKind().Empty() {
		gvks, _, err := clientscheme.Scheme.ObjectKinds(obj)
		if err != nil {
			return nil, fmt.Errorf("protobuf: %w", err)
		}
		// A copy: the object may be the watch cache's, shared by readers.
		obj = obj.DeepCopyObject()
		obj.GetObjectKind().SetGroupVersionKind(gvks[0])
	}
	var e protoEncoding
	if err := protoCodec.EncodeWithAllocator(obj, &e, &e); err != nil {
		return nil, fmt.Errorf("protobuf: %w", err)
	}
	return e.out, nil
}

// protoEncoding is both the allocator the protobuf serializer encodes into
// and the writer it then writes that buffer to. The serializer writes its
// encoding in one piece, which is then kept as it is rather than copied.
type protoEncoding struct {
	buf []byte // the last allocation, ours alone
	out []byte
}

// Allocate implements runtime.MemoryAllocator.
func (e *protoEncoding) Allocate(n uint64) []byte {
	e.buf = make([]byte, n)
	return e.buf
}

// Write implements io.Writer.
func (e *protoEncoding) Write(p []byte) (int, error) {
	if e.out == nil && len(p) > 0 && len(e.buf) > 0 && &p[0] == &e.buf[0] {
		e.out = p // our own allocation: nobody else writes it
		return len(p), nil
	}
	e.out = append(e.out, p...)
	return len(p), nil
}

// appendProtobufWatchEvent appends one frame of a protobuf watch stream
// (what client-go's protobuf stream decoder reads): a 4-byte big-endian
// length, then a metav1.WatchEvent whose object is raw, an object already
// in the protobuf envelope. Watchers of one change share raw.
func appendProtobufWatchEvent(buf []byte, typ string, raw []byte) ([]byte, error) {
	ev := metav1.WatchEvent{Type: typ, Object: runtime.RawExtension{Raw: raw}}
	n := ev.Size()
	start := len(buf)
	buf = slices.Grow(buf, 4+n)[:start+4+n]
	binary.BigEndian.PutUint32(buf[start:], uint32(n))
	if _, err := ev.MarshalToSizedBuffer(buf[start+4:]); err != nil {
		return nil, fmt.Errorf("protobuf watch event: %w", err)
	}
	return buf, nil
}
