package garbagecollector

import (
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// objRef names one object of one served kind.
type objRef struct {
	GVR       schema.GroupVersionResource
	Namespace string
	Name      string
	UID       types.UID
}

// graph indexes ownership across every kind: which objects exist (by
// UID) and which objects name each UID as an owner. Owners are indexed
// by UID alone, so a dependent is found even if its owner was never seen.
type graph struct {
	mu         sync.Mutex
	objects    map[types.UID]objRef
	owners     map[types.UID][]metav1.OwnerReference // object → its owner references
	dependents map[types.UID]map[types.UID]bool      // owner → dependents
}

func newGraph() *graph {
	return &graph{
		objects:    map[types.UID]objRef{},
		owners:     map[types.UID][]metav1.OwnerReference{},
		dependents: map[types.UID]map[types.UID]bool{},
	}
}

// upsert records an object and its owner references, and reports whether
// the references changed.
func (g *graph) upsert(ref objRef, owners []metav1.OwnerReference) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	old, seen := g.owners[ref.UID]
	g.objects[ref.UID] = ref
	changed := !seen || !sameOwners(old, owners)
	for _, o := range old {
		if d := g.dependents[o.UID]; d != nil {
			delete(d, ref.UID)
			if len(d) == 0 {
				delete(g.dependents, o.UID)
			}
		}
	}
	g.owners[ref.UID] = owners
	for _, o := range owners {
		if g.dependents[o.UID] == nil {
			g.dependents[o.UID] = map[types.UID]bool{}
		}
		g.dependents[o.UID][ref.UID] = true
	}
	return changed
}

// remove forgets an object and returns its dependents and owners.
func (g *graph) remove(uid types.UID) (dependents []objRef, owners []metav1.OwnerReference) {
	g.mu.Lock()
	defer g.mu.Unlock()
	owners = g.owners[uid]
	for _, o := range owners {
		if d := g.dependents[o.UID]; d != nil {
			delete(d, uid)
			if len(d) == 0 {
				delete(g.dependents, o.UID)
			}
		}
	}
	delete(g.objects, uid)
	delete(g.owners, uid)
	for d := range g.dependents[uid] {
		if r, ok := g.objects[d]; ok {
			dependents = append(dependents, r)
		}
	}
	return dependents, owners
}

// lookup returns the object with uid, if it is in the caches.
func (g *graph) lookup(uid types.UID) (objRef, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.objects[uid]
	return r, ok
}

// dependentsOf lists the objects that name uid as an owner.
func (g *graph) dependentsOf(uid types.UID) []objRef {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []objRef
	for d := range g.dependents[uid] {
		if r, ok := g.objects[d]; ok {
			out = append(out, r)
		}
	}
	return out
}

func sameOwners(a, b []metav1.OwnerReference) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].UID != b[i].UID || a[i].Name != b[i].Name || a[i].Kind != b[i].Kind ||
			boolOf(a[i].BlockOwnerDeletion) != boolOf(b[i].BlockOwnerDeletion) {
			return false
		}
	}
	return true
}

func boolOf(b *bool) bool { return b != nil && *b }
