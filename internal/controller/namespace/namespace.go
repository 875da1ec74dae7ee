// Package namespace finishes namespace deletion: once a namespace is marked
// for deletion it deletes everything in it and, when nothing is left,
// removes the "kubernetes" finalizer so the API server can delete the
// namespace itself.
package namespace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiffhq/skiff/internal/controller"
)

// Name is the controller's name in logs and the controller registry.
const Name = "namespace"

// finalizer is the spec finalizer this controller owns.
const finalizer = corev1.FinalizerKubernetes

// Descriptor registers the controller with the manager.
var Descriptor = controller.Descriptor{Name: Name, New: func(c *controller.Context) (controller.Interface, error) { return New(c) }}

// Controller deletes the contents of terminating namespaces.
type Controller struct {
	client    kubernetes.Interface
	dynamic   dynamic.Interface
	resources []schema.GroupVersionResource
	log       *slog.Logger
	lister    corelisters.NamespaceLister
	synced    cache.InformerSynced
	queue     workqueue.TypedRateLimitingInterface[string]
}

// New returns a controller; Run starts it.
func New(cc *controller.Context) (*Controller, error) {
	if cc.Client == nil || cc.Dynamic == nil || cc.Informers == nil {
		return nil, errors.New("namespace controller: Client, Dynamic and Informers are required")
	}
	var namespaced []schema.GroupVersionResource
	for _, r := range cc.Resources {
		if r.Namespaced {
			namespaced = append(namespaced, r.GVR)
		}
	}
	inf := cc.Informers.Core().V1().Namespaces()
	c := &Controller{
		client:    cc.Client,
		dynamic:   cc.Dynamic,
		resources: namespaced,
		log:       cc.Logger.With("controller", Name),
		lister:    inf.Lister(),
		synced:    inf.Informer().HasSynced,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 10*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: Name}),
	}
	enqueue := func(obj any) {
		if ns, ok := obj.(*corev1.Namespace); ok && ns.DeletionTimestamp != nil {
			c.queue.Add(ns.Name)
		}
	}
	_, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	})
	if err != nil {
		return nil, fmt.Errorf("namespace controller: %w", err)
	}
	return c, nil
}

// workers is how many namespaces are emptied at once.
const workers = 2

// Run processes namespaces until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	return controller.RunWorkers(ctx, c.queue, workers, []cache.InformerSynced{c.synced}, c.sync, c.log)
}

// errNotEmpty means contents are still going away (finalizers, grace
// periods): try again later.
var errNotEmpty = fmt.Errorf("namespace not empty yet: %w", controller.ErrRetry)

// sync deletes a terminating namespace's contents and then finalizes it.
func (c *Controller) sync(ctx context.Context, name string) error {
	ns, err := c.lister.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if ns.DeletionTimestamp == nil || !hasFinalizer(ns) {
		return nil
	}
	remaining := 0
	bg := metav1.DeletePropagationBackground
	for _, gvr := range c.resources {
		ri := c.dynamic.Resource(gvr).Namespace(name)
		err := ri.DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: &bg}, metav1.ListOptions{})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsMethodNotSupported(err) {
			return fmt.Errorf("delete %s in %s: %w", gvr.Resource, name, err)
		}
		list, err := ri.List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("list %s in %s: %w", gvr.Resource, name, err)
		}
		if list != nil {
			remaining += len(list.Items)
		}
	}
	if remaining > 0 {
		return errNotEmpty
	}
	fin := ns.DeepCopy()
	fin.Spec.Finalizers = nil
	for _, f := range ns.Spec.Finalizers {
		if f != finalizer {
			fin.Spec.Finalizers = append(fin.Spec.Finalizers, f)
		}
	}
	if _, err := c.client.CoreV1().Namespaces().Finalize(ctx, fin, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("finalize %s: %w", name, err)
	}
	c.log.Info("namespace emptied and finalized", "namespace", name)
	return nil
}

func hasFinalizer(ns *corev1.Namespace) bool {
	for _, f := range ns.Spec.Finalizers {
		if f == finalizer {
			return true
		}
	}
	return false
}
