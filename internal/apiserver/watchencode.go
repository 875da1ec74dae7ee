package apiserver

import (
	"encoding/json"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
)

// encodingCacheSize bounds the shared encodings. Watchers of one kind see
// each change within a short window of each other (the watch cache closes
// a watcher more than its buffer behind), so a window of recent objects is
// enough for every watcher of a change to find its encoding.
const encodingCacheSize = 2048

// encodingCache shares the encodings of watch event objects between the
// watch streams sending them: the watch cache hands the same object to
// every watcher of a change, and encoding it once per media type rather
// than once per watcher (the scheduler, the controllers' informers,
// kubectl -w…) is most of a watch's cost.
//
// Entries are keyed by the object itself. That is sound because objects
// from the watch cache are never modified, and an entry holds its object,
// so its address cannot be reused by another object while the entry lives.
type encodingCache struct {
	mu      sync.Mutex
	entries map[runtime.Object]*encodings
	ring    []runtime.Object // insertion order, for eviction
	next    int
}

// encodings are one object's encodings, each computed by whichever watcher
// asks for it first: a media type nobody watches in costs nothing.
type encodings struct {
	json, protobuf encoding
}

// encoding is one object's encoding in one media type.
type encoding struct {
	once sync.Once
	raw  []byte
	err  error
}

func newEncodingCache(size int) *encodingCache {
	return &encodingCache{entries: make(map[runtime.Object]*encodings, size), ring: make([]runtime.Object, size)}
}

// encode returns obj in media (mediaJSON or mediaProtobuf), shared with
// every other caller for obj. The result must not be modified.
func (c *encodingCache) encode(obj runtime.Object, media string) ([]byte, error) {
	c.mu.Lock()
	e, ok := c.entries[obj]
	if !ok {
		e = &encodings{}
		if old := c.ring[c.next]; old != nil {
			delete(c.entries, old)
		}
		c.ring[c.next] = obj
		c.next = (c.next + 1) % len(c.ring)
		c.entries[obj] = e
	}
	c.mu.Unlock()
	enc := &e.json
	if media == mediaProtobuf {
		enc = &e.protobuf
	}
	// Encoding outside the lock: watchers of different objects do not wait
	// for each other, and those of the same object wait only for it.
	enc.once.Do(func() { enc.raw, enc.err = encodeAs(media, obj) })
	return enc.raw, enc.err
}

// encodeAs encodes obj in media: mediaProtobuf, or JSON for anything else.
func encodeAs(media string, obj runtime.Object) ([]byte, error) {
	if media == mediaProtobuf {
		return encodeProtobuf(obj)
	}
	return json.Marshal(obj)
}

// appendWatchEvent appends the JSON line of a watch event whose object is
// already encoded: what encoding metav1.WatchEvent gives, without encoding
// /json re-validating and compacting the (already compact) object.
func appendWatchEvent(buf []byte, typ string, raw []byte) []byte {
	buf = append(buf, `{"type":`...)
	q, _ := json.Marshal(typ) // a string always encodes
	buf = append(buf, q...)
	buf = append(buf, `,"object":`...)
	buf = append(buf, raw...)
	return append(buf, "}\n"...)
}
