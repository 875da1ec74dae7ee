package apiserver

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiffhq/skiff/internal/apiserver/resource"
	"github.com/skiffhq/skiff/internal/storage"
)

// immortalNamespaces cannot be deleted, as upstream.
var immortalNamespaces = map[string]bool{"default": true, "kube-system": true, "kube-public": true}

// liveLookupTTL is how long after a namespace's deletion this server reads
// it from etcd rather than the watch cache, as upstream does: the cache may
// not have seen the deletion yet, and a create it let through would land in
// a namespace already being emptied.
const liveLookupTTL = 30 * time.Second

// namespaceLifecycle refuses new objects in a namespace that does not exist
// (404) or is being deleted (403), and refuses deleting the system
// namespaces. It is built in: every server needs it.
type namespaceLifecycle struct {
	s *Server

	mu sync.Mutex
	// deleted: namespaces this server was asked to delete, and when.
	deleted map[string]time.Time
}

var _ Admitter = (*namespaceLifecycle)(nil)

func newNamespaceLifecycle(s *Server) *namespaceLifecycle {
	return &namespaceLifecycle{s: s, deleted: map[string]time.Time{}}
}

// Admit implements Admitter.
func (n *namespaceLifecycle) Admit(ctx context.Context, a *Attributes) error {
	if a.Resource.Kind.Kind == "Namespace" && a.Operation == Delete {
		if immortalNamespaces[a.Name] {
			return apierrors.NewForbidden(a.Resource.Resource().GroupResource(), a.Name, fmt.Errorf("this namespace may not be deleted"))
		}
		n.markDeleted(a.Name)
	}
	if a.Operation != Create || !a.Resource.Namespaced {
		return nil
	}
	nsRes, ok := n.s.byGV[schema.GroupVersion{Version: "v1"}]["namespaces"]
	if !ok {
		return nil
	}
	obj, err := n.namespace(ctx, nsRes, a.Namespace)
	if isNotFound(err) {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, a.Namespace)
	}
	if err != nil {
		return storageError(err, schema.GroupResource{Resource: "namespaces"}, a.Namespace)
	}
	ns := obj.(*corev1.Namespace)
	if ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating {
		// Events may still be written, so that deletion can be explained.
		if a.Resource.Kind.Kind == "Event" {
			return nil
		}
		err := apierrors.NewForbidden(a.Resource.Resource().GroupResource(), a.Name,
			fmt.Errorf("unable to create new content in namespace %s because it is being terminated", a.Namespace))
		err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{
			Type: "NamespaceTerminating", Field: "metadata.namespace", Message: "namespace is being terminated",
		})
		return err
	}
	return nil
}

// namespace returns the named namespace: from the watch cache, which saves
// an etcd read and a decode on every create, unless the cache does not have
// it (it may have been created a moment ago) or it was deleted recently.
func (n *namespaceLifecycle) namespace(ctx context.Context, nsRes *resource.Resource, name string) (runtime.Object, error) {
	st, k := n.s.store(nsRes), key(nsRes, "", name)
	if !n.recentlyDeleted(name) {
		res, err := st.List(ctx, k, storage.ListOptions{ResourceVersion: "0"})
		if err == nil && len(res.Items) == 1 {
			return res.Items[0], nil
		}
	}
	return st.Get(ctx, k)
}

func (n *namespaceLifecycle) markDeleted(name string) {
	now := n.s.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	for ns, at := range n.deleted {
		if now.Sub(at) > liveLookupTTL {
			delete(n.deleted, ns)
		}
	}
	n.deleted[name] = now
}

func (n *namespaceLifecycle) recentlyDeleted(name string) bool {
	n.mu.Lock()
	at, ok := n.deleted[name]
	n.mu.Unlock()
	return ok && n.s.now().Sub(at) <= liveLookupTTL
}
