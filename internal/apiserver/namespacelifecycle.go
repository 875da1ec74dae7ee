package apiserver

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// immortalNamespaces cannot be deleted, as upstream.
var immortalNamespaces = map[string]bool{"default": true, "kube-system": true, "kube-public": true}

// namespaceLifecycle refuses new objects in a namespace that does not exist
// (404) or is being deleted (403), and refuses deleting the system
// namespaces. It is built in: every server needs it.
type namespaceLifecycle struct{ s *Server }

var _ Admitter = namespaceLifecycle{}

func (n namespaceLifecycle) Admit(ctx context.Context, a *Attributes) error {
	if a.Resource.Kind.Kind == "Namespace" && a.Operation == Delete && immortalNamespaces[a.Name] {
		return apierrors.NewForbidden(a.Resource.Resource().GroupResource(), a.Name, fmt.Errorf("this namespace may not be deleted"))
	}
	if a.Operation != Create || !a.Resource.Namespaced {
		return nil
	}
	nsRes, ok := n.s.byGV[schema.GroupVersion{Version: "v1"}]["namespaces"]
	if !ok {
		return nil
	}
	obj, err := n.s.store(nsRes).Get(ctx, key(nsRes, "", a.Namespace))
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
