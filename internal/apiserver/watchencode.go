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

// encodingCache shares the JSON of watch event objects between the watch
// streams sending them: the watch cache hands the same object to every
// watcher of a change, and encoding it once rather than once per watcher
// (the scheduler, the controllers' informers, kubectl -w…) is most of a
// watch's cost.
//
// Entries are keyed by the object itself. That is sound because objects
// from the watch cache are never modified, and an entry holds its object,
// so its address cannot be reused by another object while the entry lives.
type encodingCache struct {
	mu      sync.Mutex
	entries map[runtime.Object]*encoding
	ring    []runtime.Object // insertion order, for eviction
	next    int
}

// encoding is one object's JSON, computed by whichever watcher asks first.
type encoding struct {
	once sync.Once
	raw  []byte
	err  error
}

func newEncodingCache(size int) *encodingCache {
	return &encodingCache{entries: make(map[runtime.Object]*encoding, size), ring: make([]runtime.Object, size)}
}

// marshal returns obj's JSON, shared with every other caller for obj. The
// result must not be modified.
func (c *encodingCache) marshal(obj runtime.Object) ([]byte, error) {
	c.mu.Lock()
	e, ok := c.entries[obj]
	if !ok {
		e = &encoding{}
		if old := c.ring[c.next]; old != nil {
			delete(c.entries, old)
		}
		c.ring[c.next] = obj
		c.next = (c.next + 1) % len(c.ring)
		c.entries[obj] = e
	}
	c.mu.Unlock()
	// Encoding outside the lock: watchers of different objects do not wait
	// for each other, and those of the same object wait only for it.
	e.once.Do(func() { e.raw, e.err = json.Marshal(obj) })
	return e.raw, e.err
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
