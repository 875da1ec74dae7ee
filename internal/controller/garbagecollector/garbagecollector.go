// Package garbagecollector deletes objects whose owners are gone and
// carries out the two deletion modes that need help after the API server
// has marked an owner: Orphan (strip the owner from its dependents, then
// let it go) and Foreground (delete the dependents, wait for the ones
// that block, then let it go). It watches every served kind through
// metadata-only informers, since ownership lives in metadata.
package garbagecollector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiffhq/skiff/internal/controller"
)

// Name is the controller's name in logs and the controller registry.
const Name = "garbagecollector"

// Descriptor registers the controller with the manager.
var Descriptor = controller.Descriptor{Name: Name, New: func(c *controller.Context) (controller.Interface, error) { return New(c) }}

// item is one unit of work: an object to check for dangling owners, or
// an owner whose deletion waits on this controller.
type item struct {
	ref   objRef
	owner bool
}

// Controller is the garbage collector.
type Controller struct {
	meta    metadata.Interface
	log     *slog.Logger
	kinds   map[schema.GroupKind]controller.Resource
	listers map[schema.GroupVersionResource]cache.GenericLister
	synced  []cache.InformerSynced
	graph   *graph
	queue   workqueue.TypedRateLimitingInterface[item]
}

// New returns a garbage collector over cc.Resources; Run starts it.
func New(cc *controller.Context) (*Controller, error) {
	if cc.Metadata == nil || cc.MetadataInformers == nil {
		return nil, errors.New("garbage collector: Metadata and MetadataInformers are required")
	}
	log := cc.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Controller{
		meta:    cc.Metadata,
		log:     log.With("controller", Name),
		kinds:   map[schema.GroupKind]controller.Resource{},
		listers: map[schema.GroupVersionResource]cache.GenericLister{},
		graph:   newGraph(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[item](20*time.Millisecond, 10*time.Second),
			workqueue.TypedRateLimitingQueueConfig[item]{Name: Name}),
	}
	for _, r := range cc.Resources {
		gk := schema.GroupKind{Group: r.GVR.Group, Kind: r.Kind}
		if _, dup := c.kinds[gk]; dup {
			continue
		}
		c.kinds[gk] = r
		inf := cc.MetadataInformers.ForResource(r.GVR)
		gvr := r.GVR
		_, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { c.observe(gvr, obj) },
			UpdateFunc: func(_, obj any) { c.observe(gvr, obj) },
			DeleteFunc: func(obj any) { c.forget(obj) },
		})
		if err != nil {
			return nil, fmt.Errorf("garbage collector: %s: %w", gvr, err)
		}
		c.listers[gvr] = inf.Lister()
		c.synced = append(c.synced, inf.Informer().HasSynced)
	}
	return c, nil
}

func refOf(gvr schema.GroupVersionResource, m *metav1.PartialObjectMetadata) objRef {
	return objRef{GVR: gvr, Namespace: m.Namespace, Name: m.Name, UID: m.UID}
}

func asMeta(obj any) (*metav1.PartialObjectMetadata, bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	return m, ok
}

// observe indexes an added or updated object and queues what it may need.
func (c *Controller) observe(gvr schema.GroupVersionResource, obj any) {
	m, ok := asMeta(obj)
	if !ok {
		return
	}
	ref := refOf(gvr, m)
	if c.graph.upsert(ref, m.OwnerReferences) && len(m.OwnerReferences) > 0 {
		c.queue.Add(item{ref: ref})
	}
	if m.DeletionTimestamp != nil && (slices.Contains(m.Finalizers, metav1.FinalizerOrphanDependents) ||
		slices.Contains(m.Finalizers, metav1.FinalizerDeleteDependents)) {
		c.queue.Add(item{ref: ref, owner: true})
	}
}

// forget drops a deleted object: its dependents may now be dangling, and
// an owner waiting in the foreground may now be free to go.
func (c *Controller) forget(obj any) {
	m, ok := asMeta(obj)
	if !ok {
		return
	}
	deps, owners := c.graph.remove(m.UID)
	for _, d := range deps {
		c.queue.Add(item{ref: d})
	}
	for _, o := range owners {
		if r, ok := c.graph.lookup(o.UID); ok {
			c.queue.Add(item{ref: r, owner: true})
		}
	}
}

// workers is how many items are processed at once.
const workers = 4

// Run collects garbage until ctx ends. It waits for every kind's cache
// first: acting on a partial graph would orphan or delete wrongly.
func (c *Controller) Run(ctx context.Context) error {
	defer c.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return ctx.Err()
	}
	for i := 0; i < workers; i++ {
		go wait.UntilWithContext(ctx, c.worker, time.Second)
	}
	<-ctx.Done()
	return nil
}

func (c *Controller) worker(ctx context.Context) {
	for {
		it, quit := c.queue.Get()
		if quit {
			return
		}
		var err error
		if it.owner {
			err = c.processOwner(ctx, it.ref)
		} else {
			err = c.attemptToDelete(ctx, it.ref)
		}
		switch {
		case err == nil:
			c.queue.Forget(it)
		case errors.Is(err, errWaiting):
			c.queue.AddRateLimited(it)
		default:
			c.log.Warn("sync failed", "resource", it.ref.GVR.Resource, "namespace", it.ref.Namespace, "name", it.ref.Name, "err", err)
			c.queue.AddRateLimited(it)
		}
		c.queue.Done(it)
	}
}

// errWaiting means dependents are still going away.
var errWaiting = errors.New("waiting for dependents")

// cached returns the object ref names from the informer cache, or nil
// when it is gone or has been replaced by another object of that name.
func (c *Controller) cached(ref objRef) *metav1.PartialObjectMetadata {
	l, ok := c.listers[ref.GVR]
	if !ok {
		return nil
	}
	var obj any
	var err error
	if ref.Namespace != "" {
		obj, err = l.ByNamespace(ref.Namespace).Get(ref.Name)
	} else {
		obj, err = l.Get(ref.Name)
	}
	if err != nil {
		return nil
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok || m.UID != ref.UID {
		return nil
	}
	return m
}

func (c *Controller) client(ref objRef) metadata.ResourceInterface {
	if ref.Namespace != "" {
		return c.meta.Resource(ref.GVR).Namespace(ref.Namespace)
	}
	return c.meta.Resource(ref.GVR)
}
