// Package deployment rolls Deployments out through ReplicaSets: one
// ReplicaSet per pod template, named after the template's hash, scaled up
// and down within maxSurge and maxUnavailable (or all at once for the
// Recreate strategy), with the revision annotations, conditions and
// events kubectl's rollout commands read.
package deployment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiffhq/skiff/internal/controller"
)

// Name is the controller's name in logs and the controller registry.
const Name = "deployment"

// Descriptor registers the controller with the manager.
var Descriptor = controller.Descriptor{Name: Name, New: func(c *controller.Context) (controller.Interface, error) { return New(c) }}

// controllerKind is what ReplicaSets' ownerReferences name.
var controllerKind = appsv1.SchemeGroupVersion.WithKind("Deployment")

// workers is how many Deployments sync at once.
const workers = 5

// Controller is the Deployment controller.
type Controller struct {
	client   kubernetes.Interface
	dLister  appslisters.DeploymentLister
	rsLister appslisters.ReplicaSetLister
	pods     corelisters.PodLister
	synced   []cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder
	now      func() time.Time
	log      *slog.Logger
}

// New returns a controller fed by cc's shared informers; Run starts it.
func New(cc *controller.Context) (*Controller, error) {
	if cc.Client == nil || cc.Informers == nil || cc.Recorder == nil {
		return nil, errors.New("deployment controller: Client, Informers and Recorder are required")
	}
	now := cc.Now
	if now == nil {
		now = time.Now
	}
	log := cc.Logger
	if log == nil {
		log = slog.Default()
	}
	dInf := cc.Informers.Apps().V1().Deployments()
	rsInf := cc.Informers.Apps().V1().ReplicaSets()
	podInf := cc.Informers.Core().V1().Pods()
	c := &Controller{
		client:   cc.Client,
		dLister:  dInf.Lister(),
		rsLister: rsInf.Lister(),
		pods:     podInf.Lister(),
		synced:   []cache.InformerSynced{dInf.Informer().HasSynced, rsInf.Informer().HasSynced, podInf.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](20*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: Name}),
		recorder: cc.Recorder("deployment-controller"),
		now:      now,
		log:      log.With("controller", Name),
	}
	if _, err := dInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: c.enqueue,
	}); err != nil {
		return nil, fmt.Errorf("deployment controller: %w", err)
	}
	if _, err := rsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.rsChanged(nil, obj.(*appsv1.ReplicaSet)) },
		UpdateFunc: func(old, obj any) {
			c.rsChanged(old.(*appsv1.ReplicaSet), obj.(*appsv1.ReplicaSet))
		},
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if rs, ok := obj.(*appsv1.ReplicaSet); ok {
				c.enqueueOwner(rs.Namespace, metav1.GetControllerOfNoCopy(rs))
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("deployment controller: %w", err)
	}
	// Recreate waits for the old pods to be gone, which only pod
	// deletions report.
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: c.podDeleted,
	}); err != nil {
		return nil, fmt.Errorf("deployment controller: %w", err)
	}
	return c, nil
}

// Run syncs Deployments until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	return controller.RunWorkers(ctx, c.queue, workers, c.synced, c.sync, c.log)
}

func (c *Controller) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err == nil {
		c.queue.Add(key)
	}
}

// enqueueOwner queues the Deployment ref names, if it is one.
func (c *Controller) enqueueOwner(ns string, ref *metav1.OwnerReference) {
	if ref == nil || ref.Kind != controllerKind.Kind || ref.APIVersion != controllerKind.GroupVersion().String() {
		return
	}
	d, err := c.dLister.Deployments(ns).Get(ref.Name)
	if err != nil || d.UID != ref.UID {
		return
	}
	c.queue.Add(ns + "/" + d.Name)
}

// rsChanged queues the Deployments an added or changed ReplicaSet
// concerns: its old and new controller, or, for an orphan, every
// Deployment that could adopt it.
func (c *Controller) rsChanged(old, rs *appsv1.ReplicaSet) {
	if old != nil && old.ResourceVersion == rs.ResourceVersion {
		return
	}
	ref := metav1.GetControllerOfNoCopy(rs)
	if old != nil {
		if oldRef := metav1.GetControllerOfNoCopy(old); oldRef != nil && (ref == nil || oldRef.UID != ref.UID) {
			c.enqueueOwner(old.Namespace, oldRef)
		}
	}
	if ref != nil {
		c.enqueueOwner(rs.Namespace, ref)
		return
	}
	if rs.DeletionTimestamp != nil {
		return
	}
	list, err := c.dLister.Deployments(rs.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, d := range list {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(rs.Labels)) {
			c.queue.Add(rs.Namespace + "/" + d.Name)
		}
	}
}

func (c *Controller) podDeleted(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil || ref.Kind != "ReplicaSet" {
		return
	}
	rs, err := c.rsLister.ReplicaSets(pod.Namespace).Get(ref.Name)
	if err != nil || rs.UID != ref.UID {
		return
	}
	c.enqueueOwner(rs.Namespace, metav1.GetControllerOfNoCopy(rs))
}
