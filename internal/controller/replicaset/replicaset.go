// Package replicaset keeps a ReplicaSet's number of pods equal to
// spec.replicas: it creates pods from the template, deletes the least
// valuable ones when there are too many, adopts matching orphans, releases
// pods that stop matching and reports counts in the ReplicaSet's status.
package replicaset

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
const Name = "replicaset"

// Descriptor registers the controller with the manager.
var Descriptor = controller.Descriptor{Name: Name, New: func(c *controller.Context) (controller.Interface, error) { return New(c) }}

// controllerKind is what pods' ownerReferences name.
var controllerKind = appsv1.SchemeGroupVersion.WithKind("ReplicaSet")

// burstReplicas caps the pods created or deleted in one sync, as upstream
// does, so one huge ReplicaSet cannot monopolise the API server.
const burstReplicas = 500

// workers is how many ReplicaSets sync at once.
const workers = 5

// Controller is the ReplicaSet controller.
type Controller struct {
	client   kubernetes.Interface
	rsLister appslisters.ReplicaSetLister
	pods     corelisters.PodLister
	synced   []cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]
	exp      *expectations
	recorder record.EventRecorder
	now      func() time.Time
	log      *slog.Logger
}

// New returns a controller fed by cc's shared informers; Run starts it.
func New(cc *controller.Context) (*Controller, error) {
	if cc.Client == nil || cc.Informers == nil || cc.Recorder == nil {
		return nil, errors.New("replicaset controller: Client, Informers and Recorder are required")
	}
	now := cc.Now
	if now == nil {
		now = time.Now
	}
	log := cc.Logger
	if log == nil {
		log = slog.Default()
	}
	rsInf := cc.Informers.Apps().V1().ReplicaSets()
	podInf := cc.Informers.Core().V1().Pods()
	c := &Controller{
		client:   cc.Client,
		rsLister: rsInf.Lister(),
		pods:     podInf.Lister(),
		synced:   []cache.InformerSynced{rsInf.Informer().HasSynced, podInf.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](20*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: Name}),
		exp:      newExpectations(now),
		recorder: cc.Recorder("replicaset-controller"),
		now:      now,
		log:      log.With("controller", Name),
	}
	if _, err := rsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: c.deleteRS,
	}); err != nil {
		return nil, fmt.Errorf("replicaset controller: %w", err)
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.addPod,
		UpdateFunc: c.updatePod,
		DeleteFunc: c.deletePod,
	}); err != nil {
		return nil, fmt.Errorf("replicaset controller: %w", err)
	}
	return c, nil
}

// Run syncs ReplicaSets until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	return controller.RunWorkers(ctx, c.queue, workers, c.synced, c.sync, c.log)
}

func (c *Controller) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err == nil {
		c.queue.Add(key)
	}
}

func (c *Controller) deleteRS(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	c.exp.Delete(key)
	c.queue.Add(key)
}

// resolveOwner returns the key of the ReplicaSet ref names, if it is one
// that still exists with the same UID; a pod pointing at a deleted and
// recreated namesake must not count for the new one.
func (c *Controller) resolveOwner(ns string, ref *metav1.OwnerReference) (string, bool) {
	if ref == nil || ref.Kind != controllerKind.Kind || ref.APIVersion != controllerKind.GroupVersion().String() {
		return "", false
	}
	rs, err := c.rsLister.ReplicaSets(ns).Get(ref.Name)
	if err != nil || rs.UID != ref.UID {
		return "", false
	}
	return ns + "/" + rs.Name, true
}

// enqueueMatching queues every ReplicaSet whose selector matches an
// orphan pod, so one of them can adopt it.
func (c *Controller) enqueueMatching(pod *corev1.Pod) {
	list, err := c.rsLister.ReplicaSets(pod.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, rs := range list {
		sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		c.queue.Add(pod.Namespace + "/" + rs.Name)
	}
}

func (c *Controller) addPod(obj any) {
	pod := obj.(*corev1.Pod)
	if pod.DeletionTimestamp != nil {
		// Seen first while already going (a relist after a restart).
		c.deletePod(pod)
		return
	}
	if key, ok := c.resolveOwner(pod.Namespace, metav1.GetControllerOfNoCopy(pod)); ok {
		c.exp.CreationObserved(key)
		c.queue.Add(key)
		return
	}
	if metav1.GetControllerOfNoCopy(pod) == nil {
		c.enqueueMatching(pod)
	}
}

func (c *Controller) updatePod(oldObj, newObj any) {
	old, pod := oldObj.(*corev1.Pod), newObj.(*corev1.Pod)
	if old.ResourceVersion == pod.ResourceVersion {
		return
	}
	if pod.DeletionTimestamp != nil && old.DeletionTimestamp == nil {
		// A terminating pod no longer counts: treat the mark as the
		// deletion so a replacement starts without waiting for the grace
		// period to run out.
		c.deletePod(pod)
		if !labels.Equals(old.Labels, pod.Labels) {
			c.deletePod(old)
		}
		return
	}
	oldRef, newRef := metav1.GetControllerOfNoCopy(old), metav1.GetControllerOfNoCopy(pod)
	if oldRef != nil && (newRef == nil || oldRef.UID != newRef.UID) {
		if key, ok := c.resolveOwner(old.Namespace, oldRef); ok {
			c.queue.Add(key)
		}
	}
	if key, ok := c.resolveOwner(pod.Namespace, newRef); ok {
		c.queue.Add(key)
		// Availability needs minReadySeconds of readiness: look again
		// once that has passed.
		if !podReady(old) && podReady(pod) {
			if rs, err := c.rsLister.ReplicaSets(pod.Namespace).Get(newRef.Name); err == nil && rs.Spec.MinReadySeconds > 0 {
				c.queue.AddAfter(key, time.Duration(rs.Spec.MinReadySeconds)*time.Second+time.Second)
			}
		}
		return
	}
	if newRef == nil && (!labels.Equals(old.Labels, pod.Labels) || oldRef != nil) {
		c.enqueueMatching(pod)
	}
}

func (c *Controller) deletePod(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		tomb, ok := obj.(cache.DeletedFinalStateUnknown)
		if !ok {
			return
		}
		if pod, ok = tomb.Obj.(*corev1.Pod); !ok {
			return
		}
	}
	key, ok := c.resolveOwner(pod.Namespace, metav1.GetControllerOfNoCopy(pod))
	if !ok {
		return
	}
	c.exp.DeletionObserved(key, pod.Namespace+"/"+pod.Name)
	c.queue.Add(key)
}
