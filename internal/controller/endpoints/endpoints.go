// Package endpoints keeps the legacy core/v1 Endpoints object of every
// Service with a selector, for clients that have not moved to
// EndpointSlices: ready pods in addresses, the others in
// notReadyAddresses, grouped by resolved ports, capped at MaxAddresses.
package endpoints

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiffhq/skiff/internal/controller"
	"github.com/skiffhq/skiff/internal/controller/podendpoint"
)

// Name is the controller's name in logs and the controller registry.
const Name = "endpoints"

// Annotations upstream sets on Endpoints.
const (
	// TriggerTimeAnnotation is when the change that led to this version
	// happened, for latency measurements.
	TriggerTimeAnnotation = corev1.EndpointsLastChangeTriggerTime
	// OverCapacityAnnotation says addresses were dropped.
	OverCapacityAnnotation = "endpoints.kubernetes.io/over-capacity"
)

// kubernetesKey is the API server's own Service; the servers write its
// Endpoints themselves.
const kubernetesKey = "default/kubernetes"

// Descriptor registers the controller with the manager.
var Descriptor = controller.Descriptor{Name: Name, New: func(c *controller.Context) (controller.Interface, error) { return New(c) }}

// Controller maintains Endpoints.
type Controller struct {
	client    kubernetes.Interface
	log       *slog.Logger
	now       func() time.Time
	maxAddrs  int
	services  corelisters.ServiceLister
	pods      corelisters.PodLister
	endpoints corelisters.EndpointsLister
	synced    []cache.InformerSynced
	queue     workqueue.TypedRateLimitingInterface[string]

	mu       sync.Mutex
	triggers map[string]time.Time // service → earliest unsynced change
}

// New returns a controller; Run starts it.
func New(cc *controller.Context) (*Controller, error) {
	if cc.Client == nil || cc.Informers == nil {
		return nil, errors.New("endpoints controller: Client and Informers are required")
	}
	log, now := cc.Logger, cc.Now
	if log == nil {
		log = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	core := cc.Informers.Core().V1()
	c := &Controller{
		client:    cc.Client,
		log:       log.With("controller", Name),
		now:       now,
		maxAddrs:  MaxAddresses,
		services:  core.Services().Lister(),
		pods:      core.Pods().Lister(),
		endpoints: core.Endpoints().Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](20*time.Millisecond, 10*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: Name}),
		triggers: map[string]time.Time{},
	}
	podChanged := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if pod, ok := obj.(*corev1.Pod); ok {
			for _, key := range podendpoint.ServicesFor(c.services, pod) {
				c.enqueue(key)
			}
		}
	}
	svcChanged := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.enqueue(key)
		}
	}
	for _, h := range []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{core.Services().Informer(), cache.ResourceEventHandlerFuncs{AddFunc: svcChanged, UpdateFunc: func(_, o any) { svcChanged(o) }, DeleteFunc: svcChanged}},
		{core.Pods().Informer(), cache.ResourceEventHandlerFuncs{AddFunc: podChanged, UpdateFunc: func(o, n any) { podChanged(o); podChanged(n) }, DeleteFunc: podChanged}},
		// Someone else's edit or delete of an Endpoints is undone.
		{core.Endpoints().Informer(), cache.ResourceEventHandlerFuncs{UpdateFunc: func(_, o any) { svcChanged(o) }, DeleteFunc: svcChanged}},
	} {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return nil, fmt.Errorf("endpoints controller: %w", err)
		}
		c.synced = append(c.synced, h.inf.HasSynced)
	}
	return c, nil
}

// enqueue remembers when the first change since the last sync happened,
// the last-change-trigger-time upstream reports.
func (c *Controller) enqueue(key string) {
	if key == kubernetesKey {
		return
	}
	c.mu.Lock()
	if _, ok := c.triggers[key]; !ok {
		c.triggers[key] = c.now()
	}
	c.mu.Unlock()
	c.queue.Add(key)
}

// Run processes Services until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	return controller.RunWorkers(ctx, c.queue, 4, c.synced, c.sync, c.log)
}

// takeTrigger returns and clears the key's pending change time.
func (c *Controller) takeTrigger(key string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.triggers[key]
	delete(c.triggers, key)
	if !ok {
		return c.now()
	}
	return t
}

// sync brings one Service's Endpoints to what its pods say.
func (c *Controller) sync(ctx context.Context, key string) error {
	if key == kubernetesKey {
		return nil
	}
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.takeTrigger(key)
		err := c.client.CoreV1().Endpoints(ns).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete endpoints: %w", err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if svc.Spec.Selector == nil {
		c.takeTrigger(key)
		return nil // the user's Endpoints
	}
	pods, err := podendpoint.Selected(c.pods, svc)
	if err != nil {
		return err
	}
	subs, truncated := subsets(svc, pods, c.maxAddrs)
	cur, err := c.endpoints.Endpoints(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	want := desired(svc, cur, subs, truncated)
	if cur != nil && apiequality.Semantic.DeepEqual(cur.Subsets, want.Subsets) &&
		apiequality.Semantic.DeepEqual(cur.Labels, want.Labels) &&
		cur.Annotations[OverCapacityAnnotation] == want.Annotations[OverCapacityAnnotation] {
		c.takeTrigger(key)
		return nil
	}
	trigger := c.takeTrigger(key)
	if want.Annotations == nil {
		want.Annotations = map[string]string{}
	}
	want.Annotations[TriggerTimeAnnotation] = trigger.UTC().Format(time.RFC3339Nano)
	if cur == nil {
		_, err = c.client.CoreV1().Endpoints(ns).Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			err = nil // the informer is behind; the add event resyncs us
		}
	} else {
		_, err = c.client.CoreV1().Endpoints(ns).Update(ctx, want, metav1.UpdateOptions{})
	}
	if err != nil {
		c.mu.Lock()
		if t, ok := c.triggers[key]; !ok || trigger.Before(t) {
			c.triggers[key] = trigger
		}
		c.mu.Unlock()
		return fmt.Errorf("write endpoints: %w", err)
	}
	return nil
}

// desired is the Endpoints object to write: cur's metadata (if any) with
// the Service's labels and the computed subsets.
func desired(svc *corev1.Service, cur *corev1.Endpoints, subs []corev1.EndpointSubset, truncated bool) *corev1.Endpoints {
	ep := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: svc.Name, Namespace: svc.Namespace}}
	if cur != nil {
		ep = cur.DeepCopy()
	}
	ep.Labels = map[string]string{}
	for k, v := range svc.Labels {
		ep.Labels[k] = v
	}
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		ep.Labels[corev1.IsHeadlessService] = ""
	}
	if len(ep.Labels) == 0 {
		ep.Labels = nil
	}
	if ep.Annotations == nil {
		ep.Annotations = map[string]string{}
	}
	delete(ep.Annotations, OverCapacityAnnotation)
	if truncated {
		ep.Annotations[OverCapacityAnnotation] = "truncated"
	}
	ep.Subsets = subs
	return ep
}
