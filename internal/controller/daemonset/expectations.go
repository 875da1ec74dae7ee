package daemonset

import (
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
)

// expectationTTL bounds how long a sync waits for the cache to show its
// own writes. A pod deleted by someone else before the cache saw it
// would otherwise block its DaemonSet forever.
const expectationTTL = 30 * time.Second

// expectations remember, per DaemonSet, the pods the last sync created
// and deleted. Until the informer cache shows all of them the controller
// must not act again: a stale cache still missing a new pod would make it
// create a second one on the same node.
type expectations struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*pending
}

type pending struct {
	namespace string
	created   []string
	deleted   map[types.UID]string // uid → name
	since     time.Time
}

func newExpectations(now func() time.Time) *expectations {
	return &expectations{now: now, m: map[string]*pending{}}
}

// expect records what one sync did.
func (e *expectations) expect(key, namespace string, created []string, deleted []*corev1.Pod) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(created) == 0 && len(deleted) == 0 {
		delete(e.m, key)
		return
	}
	p := &pending{namespace: namespace, created: created, deleted: map[types.UID]string{}, since: e.now()}
	for _, d := range deleted {
		p.deleted[d.UID] = d.Name
	}
	e.m[key] = p
}

// satisfied says whether the cache shows everything the last sync did;
// if not, wait is when to look again regardless of events.
func (e *expectations) satisfied(key string, pods corelisters.PodLister) (wait time.Duration, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.m[key]
	if p == nil {
		return 0, true
	}
	if age := e.now().Sub(p.since); age >= expectationTTL {
		delete(e.m, key)
		return 0, true
	}
	left := expectationTTL - e.now().Sub(p.since)
	for _, name := range p.created {
		if _, err := pods.Pods(p.namespace).Get(name); apierrors.IsNotFound(err) {
			return left, false
		}
	}
	for uid, name := range p.deleted {
		pod, err := pods.Pods(p.namespace).Get(name)
		// Gone, replaced by a new pod of that name, or terminating: the
		// cache has seen the delete.
		if err == nil && pod.UID == uid && pod.DeletionTimestamp == nil {
			return left, false
		}
	}
	delete(e.m, key)
	return 0, true
}

// forget drops a deleted DaemonSet's record.
func (e *expectations) forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}
