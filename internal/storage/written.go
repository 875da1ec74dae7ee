package storage

import (
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
)

// writtenSize bounds the objects a store keeps for its watch: the watch
// cache's feed sees a write within milliseconds, so a short window covers
// it, and a store nobody watches keeps no more than this.
const writtenSize = 256

// written hands the object a store decoded after its own write to the
// store's watch, which would otherwise decode the same bytes again: one
// JSON decode less per write. The watch gets a private copy.
type written struct {
	mu   sync.Mutex
	objs map[writeID]runtime.Object
	ring []writeID // insertion order, for eviction
	next int
}

// writeID names one stored value: a key as of the revision that wrote it.
type writeID struct {
	key string
	rev int64
}

// put remembers a copy of obj, the decoded value of key at rev.
func (w *written) put(key string, rev int64, obj runtime.Object) {
	cp := obj.DeepCopyObject()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.objs == nil {
		w.objs = make(map[writeID]runtime.Object, writtenSize)
		w.ring = make([]writeID, writtenSize)
	}
	delete(w.objs, w.ring[w.next])
	id := writeID{key, rev}
	w.ring[w.next] = id
	w.next = (w.next + 1) % len(w.ring)
	w.objs[id] = cp
}

// take returns and forgets the object stored at key by revision rev, or
// nil: only the first taker gets it, so no two watches share an object.
func (w *written) take(key string, rev int64) runtime.Object {
	w.mu.Lock()
	defer w.mu.Unlock()
	id := writeID{key, rev}
	obj := w.objs[id]
	delete(w.objs, id)
	return obj
}
