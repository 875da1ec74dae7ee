// Package endpointslice keeps discovery.k8s.io/v1 EndpointSlices for every
// Service with a selector: the addresses of the pods it selects, with
// their readiness, node, zone and per-pod resolved ports, at most
// MaxEndpoints per slice. It also mirrors the API server's own Endpoints
// (default/kubernetes) into the `kubernetes` slice.
package endpointslice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiffhq/skiff/internal/controller"
	"github.com/skiffhq/skiff/internal/controller/podendpoint"
)

// Name is the controller's name in logs and the controller registry.
const Name = "endpointslice"

// component is the event source, upstream's.
const component = "endpoint-slice-controller"

// Descriptor registers the controller with the manager.
var Descriptor = controller.Descriptor{Name: Name, New: func(c *controller.Context) (controller.Interface, error) { return New(c, Config{}) }}

// Config tunes the controller; zero values take defaults.
type Config struct {
	// MaxEndpoints per slice; default DefaultMaxEndpoints.
	MaxEndpoints int
	// Workers syncing Services at once; default 4.
	Workers int
}

// Controller maintains EndpointSlices.
type Controller struct {
	cfg       Config
	client    kubernetes.Interface
	log       *slog.Logger
	recorder  record.EventRecorder
	services  corelisters.ServiceLister
	pods      corelisters.PodLister
	nodes     corelisters.NodeLister
	endpoints corelisters.EndpointsLister
	slices    discoverylisters.EndpointSliceLister
	synced    []cache.InformerSynced
	queue     workqueue.TypedRateLimitingInterface[string]
	tracker   *tracker
}

// New returns a controller; Run starts it.
func New(cc *controller.Context, cfg Config) (*Controller, error) {
	if cc.Client == nil || cc.Informers == nil {
		return nil, errors.New("endpointslice controller: Client and Informers are required")
	}
	if cfg.MaxEndpoints <= 0 {
		cfg.MaxEndpoints = DefaultMaxEndpoints
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	log := cc.Logger
	if log == nil {
		log = slog.Default()
	}
	core := cc.Informers.Core().V1()
	sliceInf := cc.Informers.Discovery().V1().EndpointSlices()
	c := &Controller{
		cfg:       cfg,
		client:    cc.Client,
		log:       log.With("controller", Name),
		services:  core.Services().Lister(),
		pods:      core.Pods().Lister(),
		nodes:     core.Nodes().Lister(),
		endpoints: core.Endpoints().Lister(),
		slices:    sliceInf.Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](20*time.Millisecond, 10*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: Name}),
		tracker: newTracker(),
	}
	if cc.Recorder != nil {
		c.recorder = cc.Recorder(component)
	}
	handlers := []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{core.Services().Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc: c.enqueueObj, UpdateFunc: func(_, o any) { c.enqueueObj(o) }, DeleteFunc: c.enqueueObj}},
		{core.Pods().Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc: c.podChanged, UpdateFunc: func(o, n any) { c.podChanged(o); c.podChanged(n) }, DeleteFunc: c.podChanged}},
		{core.Nodes().Informer(), cache.ResourceEventHandlerFuncs{UpdateFunc: c.nodeChanged}},
		{core.Endpoints().Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc: c.endpointsChanged, UpdateFunc: func(_, o any) { c.endpointsChanged(o) }, DeleteFunc: c.endpointsChanged}},
		{sliceInf.Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc: c.sliceChanged, UpdateFunc: func(_, o any) { c.sliceChanged(o) }, DeleteFunc: c.sliceDeleted}},
	}
	for _, h := range handlers {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return nil, fmt.Errorf("endpointslice controller: %w", err)
		}
		c.synced = append(c.synced, h.inf.HasSynced)
	}
	return c, nil
}

func (c *Controller) enqueueObj(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

func (c *Controller) podChanged(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	for _, key := range podendpoint.ServicesFor(c.services, pod) {
		c.queue.Add(key)
	}
}

// nodeChanged resyncs every Service when a node's zone changes, since any
// endpoint on it may carry the zone.
func (c *Controller) nodeChanged(old, cur any) {
	o, ok1 := old.(*corev1.Node)
	n, ok2 := cur.(*corev1.Node)
	if !ok1 || !ok2 || o.Labels[corev1.LabelTopologyZone] == n.Labels[corev1.LabelTopologyZone] {
		return
	}
	svcs, _ := c.services.List(labels.Everything())
	for _, s := range svcs {
		c.queue.Add(s.Namespace + "/" + s.Name)
	}
}

func (c *Controller) endpointsChanged(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil && key == kubernetesKey {
		c.queue.Add(key)
	}
}

// sliceChanged resyncs the owning Service when anyone touches one of its
// slices: our own writes then find nothing to do, others' are undone.
func (c *Controller) sliceChanged(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	if svc := s.Labels[discoveryv1.LabelServiceName]; svc != "" && (s.Labels[ManagedByLabel] == ManagedBy || s.Namespace+"/"+svc == kubernetesKey) {
		c.queue.Add(s.Namespace + "/" + svc)
	}
}

// sliceDeleted also stops waiting for a write of ours to show up in a
// slice someone else has since deleted.
func (c *Controller) sliceDeleted(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if s, ok := obj.(*discoveryv1.EndpointSlice); ok {
		c.tracker.observedDelete(s.UID)
		c.sliceChanged(s)
	}
}

// Run processes Services until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	return controller.RunWorkers(ctx, c.queue, c.cfg.Workers, c.synced, c.sync, c.log)
}

// errStale means the informer has not yet seen this controller's last
// writes; acting on it could create duplicate slices.
var errStale = fmt.Errorf("endpointslice cache behind own writes: %w", controller.ErrRetry)

// sync brings one Service's slices to what its pods say.
func (c *Controller) sync(ctx context.Context, key string) error {
	if key == kubernetesKey {
		return c.syncKubernetes(ctx)
	}
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	existing, err := c.slices.EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{
		discoveryv1.LabelServiceName: name, ManagedByLabel: ManagedBy}))
	if err != nil {
		return err
	}
	if c.tracker.stale(key, existing) {
		return errStale
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		// The garbage collector would remove them through the owner
		// reference; doing it here keeps this controller correct alone.
		for _, s := range existing {
			if err := c.deleteSlice(ctx, key, s); err != nil {
				return err
			}
		}
		c.tracker.forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	if svc.Spec.Selector == nil || svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil // the user's slices, or none at all
	}
	var mine []*discoveryv1.EndpointSlice
	for _, s := range existing {
		// A slice owned by an earlier Service of the same name is the
		// garbage collector's, not ours to reuse.
		if ref := metav1.GetControllerOf(s); ref == nil || ref.UID == svc.UID {
			mine = append(mine, s)
		}
	}
	pods, err := podendpoint.Selected(c.pods, svc)
	if err != nil {
		return err
	}
	p := reconcile(svc, desiredGroups(svc, pods, c.zoneOf), mine, c.cfg.MaxEndpoints)
	return c.apply(ctx, key, svc, p)
}

func (c *Controller) zoneOf(node string) string {
	n, err := c.nodes.Get(node)
	if err != nil {
		return ""
	}
	return n.Labels[corev1.LabelTopologyZone]
}

// apply writes a plan: creates and updates before deletes, so consumers
// never see an endpoint vanish and come back.
func (c *Controller) apply(ctx context.Context, key string, svc *corev1.Service, p plan) error {
	if p.empty() {
		return nil
	}
	var errs []error
	for _, s := range p.create {
		got, err := c.client.DiscoveryV1().EndpointSlices(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
		if err != nil {
			if apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err) {
				continue // namespace going away, or a name clash: next sync
			}
			errs = append(errs, fmt.Errorf("create slice: %w", err))
			continue
		}
		c.tracker.wrote(key, got)
	}
	for _, s := range p.update {
		got, err := c.client.DiscoveryV1().EndpointSlices(s.Namespace).Update(ctx, s, metav1.UpdateOptions{})
		if err != nil {
			errs = append(errs, fmt.Errorf("update slice %s: %w", s.Name, err))
			continue
		}
		c.tracker.wrote(key, got)
	}
	for _, s := range p.delete {
		if err := c.deleteSlice(ctx, key, s); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		if c.recorder != nil {
			c.recorder.Eventf(svc, corev1.EventTypeWarning, "FailedToUpdateEndpointSlices", "Error updating Endpoint Slices for Service %s: %v", key, err)
		}
		return err
	}
	return nil
}

func (c *Controller) deleteSlice(ctx context.Context, key string, s *discoveryv1.EndpointSlice) error {
	err := c.client.DiscoveryV1().EndpointSlices(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &s.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete slice %s: %w", s.Name, err)
	}
	c.tracker.deleted(key, s.UID)
	return nil
}

// tracker remembers this controller's writes until the informer shows
// them, the way upstream's slice tracker does, so a sync never acts on a
// cache that predates its own last write.
type tracker struct {
	mu      sync.Mutex
	written map[string]map[types.UID]int64 // service → slice → generation
	gone    map[string]map[types.UID]bool
}

func newTracker() *tracker {
	return &tracker{written: map[string]map[types.UID]int64{}, gone: map[string]map[types.UID]bool{}}
}

func (t *tracker) wrote(key string, s *discoveryv1.EndpointSlice) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.written[key] == nil {
		t.written[key] = map[types.UID]int64{}
	}
	t.written[key][s.UID] = s.Generation
}

func (t *tracker) deleted(key string, uid types.UID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gone[key] == nil {
		t.gone[key] = map[types.UID]bool{}
	}
	t.gone[key][uid] = true
	delete(t.written[key], uid)
}

func (t *tracker) observedDelete(uid types.UID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range t.written {
		delete(m, uid)
	}
}

func (t *tracker) forget(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.written, key)
	delete(t.gone, key)
}

// stale reports whether cached misses a write of ours, and forgets the
// writes it has caught up with.
func (t *tracker) stale(key string, cached []*discoveryv1.EndpointSlice) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	byUID := make(map[types.UID]*discoveryv1.EndpointSlice, len(cached))
	for _, s := range cached {
		byUID[s.UID] = s
	}
	stale := false
	for uid, gen := range t.written[key] {
		if s, ok := byUID[uid]; ok && s.Generation >= gen {
			delete(t.written[key], uid)
		} else {
			stale = true
		}
	}
	for uid := range t.gone[key] {
		if _, ok := byUID[uid]; ok {
			stale = true
		} else {
			delete(t.gone[key], uid)
		}
	}
	return stale
}
