// Package statefulset runs StatefulSets: pods with stable names
// <set>-<ordinal> and DNS identities, created in order (OrderedReady) or
// all at once (Parallel), removed from the highest ordinal down, and
// updated by RollingUpdate with a partition or OnDelete. Each template is
// kept as a ControllerRevision, named in status as the current and the
// update revision.
package statefulset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"

	"github.com/skiffhq/skiff/internal/controller"
	"github.com/skiffhq/skiff/internal/controller/history"
)

// Name is the controller's name in logs and the controller registry.
const Name = "statefulset"

// Descriptor registers the controller with the manager.
var Descriptor = controller.Descriptor{Name: Name, New: func(c *controller.Context) (controller.Interface, error) { return New(c) }}

var kind = appsv1.SchemeGroupVersion.WithKind("StatefulSet")

// Controller reconciles StatefulSets.
type Controller struct {
	client    kubernetes.Interface
	log       *slog.Logger
	recorder  record.EventRecorder
	now       func() time.Time
	setLister appslisters.StatefulSetLister
	podLister corelisters.PodLister
	revisions appslisters.ControllerRevisionLister
	synced    []cache.InformerSynced
	queue     workqueue.TypedRateLimitingInterface[string]
}

// New returns a controller; Run starts it.
func New(cc *controller.Context) (*Controller, error) {
	if cc.Client == nil || cc.Informers == nil {
		return nil, errors.New("statefulset controller: Client and Informers are required")
	}
	now := cc.Now
	if now == nil {
		now = time.Now
	}
	logger := cc.Logger
	if logger == nil {
		logger = slog.Default()
	}
	setInf := cc.Informers.Apps().V1().StatefulSets()
	podInf := cc.Informers.Core().V1().Pods()
	crInf := cc.Informers.Apps().V1().ControllerRevisions()
	c := &Controller{
		client:    cc.Client,
		log:       logger.With("controller", Name),
		now:       now,
		setLister: setInf.Lister(),
		podLister: podInf.Lister(),
		revisions: crInf.Lister(),
		synced:    []cache.InformerSynced{setInf.Informer().HasSynced, podInf.Informer().HasSynced, crInf.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](20*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: Name}),
	}
	if cc.Recorder != nil {
		c.recorder = cc.Recorder("statefulset-controller")
	} else {
		c.recorder = &record.FakeRecorder{}
	}
	if _, err := setInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: c.enqueue,
	}); err != nil {
		return nil, fmt.Errorf("statefulset controller: %w", err)
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueOwner,
		UpdateFunc: func(_, obj any) { c.enqueueOwner(obj) },
		DeleteFunc: c.enqueueOwner,
	}); err != nil {
		return nil, fmt.Errorf("statefulset controller: %w", err)
	}
	if _, err := crInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueOwner,
		DeleteFunc: c.enqueueOwner,
	}); err != nil {
		return nil, fmt.Errorf("statefulset controller: %w", err)
	}
	return c, nil
}

func (c *Controller) enqueue(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

// enqueueOwner queues the StatefulSet controlling a pod or revision.
func (c *Controller) enqueueOwner(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return
	}
	if ref := metav1.GetControllerOf(m); ref != nil && ref.Kind == kind.Kind && strings.HasPrefix(ref.APIVersion, kind.Group+"/") {
		c.queue.Add(m.GetNamespace() + "/" + ref.Name)
	}
}

// workers is how many StatefulSets are synced at once.
const workers = 2

// Run processes StatefulSets until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	return controller.RunWorkers(ctx, c.queue, workers, c.synced, c.sync, c.log)
}

// sync reconciles one StatefulSet. Pod names are fixed, so a stale cache
// cannot make it create a pod twice (the second create is AlreadyExists)
// and it needs no expectations.
func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	sts, err := c.setLister.StatefulSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if sts.DeletionTimestamp != nil {
		return nil
	}
	s, revs, err := c.snapshot(ctx, sts)
	if err != nil {
		return err
	}
	st := s.next()
	actErr := c.act(ctx, s, st)
	if st.recheck > 0 {
		c.queue.AddAfter(key, st.recheck)
	}
	if err := c.truncateHistory(ctx, s, revs); err != nil {
		return errors.Join(actErr, err)
	}
	return errors.Join(actErr, c.updateStatus(ctx, s.sts, s.status()))
}

// snapshot gathers the set's pods and revisions, recording the current
// template as the update revision.
func (c *Controller) snapshot(ctx context.Context, sts *appsv1.StatefulSet) (*state, []*appsv1.ControllerRevision, error) {
	all, err := c.revisions.ControllerRevisions(sts.Namespace).List(labels.Everything())
	if err != nil {
		return nil, nil, err
	}
	revs := history.Controlled(all, sts.UID)
	upd, collisions, err := history.Ensure(ctx, c.client, history.Owner{
		Meta: sts, Kind: kind, Labels: sts.Spec.Template.Labels, Template: &sts.Spec.Template,
	}, revs, ptr.Deref(sts.Status.CollisionCount, 0))
	if err != nil {
		return nil, nil, err
	}
	if collisions != ptr.Deref(sts.Status.CollisionCount, 0) {
		sts = sts.DeepCopy()
		sts.Status.CollisionCount = &collisions
	}
	s := &state{sts: sts, pods: map[int]*corev1.Pod{}, now: c.now()}
	s.updated = revision{name: upd.Name, template: &sts.Spec.Template}
	s.current = s.updated
	for _, r := range revs {
		if r.Name == sts.Status.CurrentRevision && r.Name != upd.Name {
			tpl, err := history.Template(r)
			if err != nil {
				return nil, nil, err
			}
			s.current = revision{name: r.Name, template: tpl}
		}
	}
	sel, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
	if err != nil {
		return nil, nil, fmt.Errorf("selector: %w", err)
	}
	pods, err := c.podLister.Pods(sts.Namespace).List(sel)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range pods {
		ref := metav1.GetControllerOf(p)
		if ref == nil || ref.UID != sts.UID {
			continue
		}
		if ord, ok := ordinalOf(sts.Name, p.Name); ok {
			s.pods[ord] = p
		}
	}
	return s, revs, nil
}

func (c *Controller) act(ctx context.Context, s *state, st *step) error {
	sts := s.sts
	var errs []error
	for _, ord := range st.create {
		pod := newPod(sts, ord, s.revisionFor(ord))
		_, err := c.client.CoreV1().Pods(sts.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			continue // the cache has yet to show it
		}
		if err != nil {
			c.recorder.Event(sts, corev1.EventTypeWarning, "FailedCreate", eventMessage("create", pod.Name, sts.Name, err))
			errs = append(errs, fmt.Errorf("create pod %s: %w", pod.Name, err))
			continue
		}
		c.recorder.Event(sts, corev1.EventTypeNormal, "SuccessfulCreate", eventMessage("create", pod.Name, sts.Name, nil))
	}
	for _, pod := range st.delete {
		if st.failed[pod.Name] {
			c.recorder.Eventf(sts, corev1.EventTypeWarning, "RecreatingFailedPod", "StatefulSet %s/%s is recreating failed Pod %s", sts.Namespace, sts.Name, pod.Name)
		}
		err := c.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			c.recorder.Event(sts, corev1.EventTypeWarning, "FailedDelete", eventMessage("delete", pod.Name, sts.Name, err))
			errs = append(errs, fmt.Errorf("delete pod %s: %w", pod.Name, err))
			continue
		}
		c.recorder.Event(sts, corev1.EventTypeNormal, "SuccessfulDelete", eventMessage("delete", pod.Name, sts.Name, nil))
	}
	return errors.Join(errs...)
}

// metav1ObjectMeta is a member pod's metadata: the template's labels and
// annotations, owned by the set.
func metav1ObjectMeta(sts *appsv1.StatefulSet, name string, tpl *corev1.PodTemplateSpec) metav1.ObjectMeta {
	m := metav1.ObjectMeta{
		Name:            name,
		Namespace:       sts.Namespace,
		Labels:          map[string]string{},
		Annotations:     tpl.Annotations,
		Finalizers:      tpl.Finalizers,
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(sts, kind)},
	}
	for k, v := range tpl.Labels {
		m.Labels[k] = v
	}
	return m
}

// truncateHistory keeps revisionHistoryLimit revisions besides those the
// status names and pods still run.
func (c *Controller) truncateHistory(ctx context.Context, s *state, revs []*appsv1.ControllerRevision) error {
	live := map[string]bool{s.current.name: true, s.updated.name: true}
	for _, p := range s.pods {
		live[revisionOf(p)] = true
	}
	return history.Truncate(ctx, c.client, revs, live, ptr.Deref(s.sts.Spec.RevisionHistoryLimit, 10))
}

func (c *Controller) updateStatus(ctx context.Context, sts *appsv1.StatefulSet, st appsv1.StatefulSetStatus) error {
	st.Conditions = sts.Status.Conditions
	if apiequality.Semantic.DeepEqual(sts.Status, st) {
		return nil
	}
	up := sts.DeepCopy()
	up.Status = st
	_, err := c.client.AppsV1().StatefulSets(sts.Namespace).UpdateStatus(ctx, up, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("update status: %w", err)
	}
	return nil
}
