// Package daemonset runs one pod of each DaemonSet on every node it
// belongs on. Pods are created already aimed at their node through a
// required node affinity on the node's name, so the scheduler binds them
// there; template changes roll out by RollingUpdate (maxUnavailable or
// maxSurge) or OnDelete, and each template is kept as a
// ControllerRevision for `kubectl rollout history/undo`.
package daemonset

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
const Name = "daemonset"

// Descriptor registers the controller with the manager.
var Descriptor = controller.Descriptor{Name: Name, New: func(c *controller.Context) (controller.Interface, error) { return New(c) }}

var kind = appsv1.SchemeGroupVersion.WithKind("DaemonSet")

// Controller reconciles DaemonSets.
type Controller struct {
	client    kubernetes.Interface
	log       *slog.Logger
	recorder  record.EventRecorder
	now       func() time.Time
	dsLister  appslisters.DaemonSetLister
	podLister corelisters.PodLister
	nodes     corelisters.NodeLister
	revisions appslisters.ControllerRevisionLister
	synced    []cache.InformerSynced
	queue     workqueue.TypedRateLimitingInterface[string]
	pending   *expectations
}

// New returns a controller; Run starts it.
func New(cc *controller.Context) (*Controller, error) {
	if cc.Client == nil || cc.Informers == nil {
		return nil, errors.New("daemonset controller: Client and Informers are required")
	}
	now := cc.Now
	if now == nil {
		now = time.Now
	}
	logger := cc.Logger
	if logger == nil {
		logger = slog.Default()
	}
	dsInf := cc.Informers.Apps().V1().DaemonSets()
	podInf := cc.Informers.Core().V1().Pods()
	nodeInf := cc.Informers.Core().V1().Nodes()
	crInf := cc.Informers.Apps().V1().ControllerRevisions()
	c := &Controller{
		client:    cc.Client,
		log:       logger.With("controller", Name),
		now:       now,
		dsLister:  dsInf.Lister(),
		podLister: podInf.Lister(),
		nodes:     nodeInf.Lister(),
		revisions: crInf.Lister(),
		synced:    []cache.InformerSynced{dsInf.Informer().HasSynced, podInf.Informer().HasSynced, nodeInf.Informer().HasSynced, crInf.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](20*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: Name}),
	}
	c.pending = newExpectations(now)
	if cc.Recorder != nil {
		c.recorder = cc.Recorder("daemonset-controller")
	} else {
		c.recorder = &record.FakeRecorder{}
	}
	handlers := []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{dsInf.Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc:    c.enqueue,
			UpdateFunc: func(_, obj any) { c.enqueue(obj) },
			DeleteFunc: c.enqueue,
		}},
		{podInf.Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc:    c.enqueueOwner,
			UpdateFunc: func(_, obj any) { c.enqueueOwner(obj) },
			DeleteFunc: c.enqueueOwner,
		}},
		{crInf.Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc:    c.enqueueOwner,
			DeleteFunc: c.enqueueOwner,
		}},
		{nodeInf.Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { c.enqueueAll() },
			UpdateFunc: func(old, cur any) { c.nodeUpdated(old, cur) },
			DeleteFunc: func(any) { c.enqueueAll() },
		}},
	}
	for _, h := range handlers {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return nil, fmt.Errorf("daemonset controller: %w", err)
		}
	}
	return c, nil
}

func (c *Controller) enqueue(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

// enqueueOwner queues the DaemonSet controlling a pod or revision.
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

// enqueueAll queues every DaemonSet: a node change can matter to any.
func (c *Controller) enqueueAll() {
	all, err := c.dsLister.List(labels.Everything())
	if err != nil {
		return
	}
	for _, ds := range all {
		c.enqueue(ds)
	}
}

// nodeUpdated ignores the heartbeat updates nodes make all the time and
// reacts to what changes placement.
func (c *Controller) nodeUpdated(old, cur any) {
	o, ok1 := old.(*corev1.Node)
	n, ok2 := cur.(*corev1.Node)
	if ok1 && ok2 && apiequality.Semantic.DeepEqual(o.Labels, n.Labels) &&
		apiequality.Semantic.DeepEqual(o.Spec.Taints, n.Spec.Taints) &&
		apiequality.Semantic.DeepEqual(o.DeletionTimestamp, n.DeletionTimestamp) {
		return
	}
	c.enqueueAll()
}

// workers is how many DaemonSets are synced at once.
const workers = 2

// Run processes DaemonSets until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	return controller.RunWorkers(ctx, c.queue, workers, c.synced, c.sync, c.log)
}

// sync reconciles one DaemonSet: record its template, then create,
// delete and replace pods node by node, then report status.
func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	ds, err := c.dsLister.DaemonSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.pending.forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	if ds.DeletionTimestamp != nil {
		// The garbage collector removes the pods; creating more would
		// only race it.
		return nil
	}
	all, err := c.revisions.ControllerRevisions(ns).List(labels.Everything())
	if err != nil {
		return err
	}
	revs := history.Controlled(all, ds.UID)
	cur, collisions, err := history.Ensure(ctx, c.client, history.Owner{
		Meta: ds, Kind: kind, Labels: ds.Spec.Template.Labels, Template: &ds.Spec.Template,
	}, revs, ptr.Deref(ds.Status.CollisionCount, 0))
	if err != nil {
		return err
	}
	if collisions != ptr.Deref(ds.Status.CollisionCount, 0) {
		ds = ds.DeepCopy()
		ds.Status.CollisionCount = &collisions
	}
	hash := cur.Labels[history.HashLabel]
	if hash == "" {
		hash = strings.TrimPrefix(cur.Name, ds.Name+"-")
	}
	pods, err := c.pods(ds)
	if err != nil {
		return err
	}
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	s := newState(ds, nodes, pods, hash, c.now())

	if wait, ok := c.pending.satisfied(key, c.podLister); !ok {
		// Our last creates or deletes are not all in the cache yet;
		// acting now could double them. Their events requeue us.
		c.queue.AddAfter(key, wait)
		return c.updateStatus(ctx, ds, s.status())
	}
	p := s.manage()
	if p.empty() && ds.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType {
		p = s.rollingUpdate()
	}
	actErr := c.act(ctx, ds, key, s, p)
	if p.recheck > 0 {
		c.queue.AddAfter(key, p.recheck)
	}
	if err := c.truncateHistory(ctx, ds, revs, cur, pods); err != nil {
		return errors.Join(actErr, err)
	}
	return errors.Join(actErr, c.updateStatus(ctx, ds, s.status()))
}

// pods returns the pods this DaemonSet controls. Pods are found by the
// controller reference, not only the selector, so two DaemonSets with
// overlapping selectors do not fight over pods.
func (c *Controller) pods(ds *appsv1.DaemonSet) ([]*corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("selector: %w", err)
	}
	all, err := c.podLister.Pods(ds.Namespace).List(sel)
	if err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	for _, p := range all {
		if ref := metav1.GetControllerOf(p); ref != nil && ref.UID == ds.UID {
			out = append(out, p)
		}
	}
	return out, nil
}

// act carries out a plan, remembering what it did so the next sync waits
// until the cache shows it.
func (c *Controller) act(ctx context.Context, ds *appsv1.DaemonSet, key string, s *state, p *plan) error {
	var errs []error
	var created []string
	var deleted []*corev1.Pod
	for _, node := range p.create {
		pod := newPod(ds, node, s.hash)
		got, err := c.client.CoreV1().Pods(ds.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			c.recorder.Eventf(ds, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
			errs = append(errs, fmt.Errorf("create pod for node %s: %w", node, err))
			continue
		}
		created = append(created, got.Name)
		c.recorder.Eventf(ds, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", got.Name)
	}
	for _, pod := range p.delete {
		err := c.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			c.recorder.Eventf(ds, corev1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
			errs = append(errs, fmt.Errorf("delete pod %s: %w", pod.Name, err))
			continue
		}
		deleted = append(deleted, pod)
		c.recorder.Eventf(ds, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", pod.Name)
	}
	c.pending.expect(key, ds.Namespace, created, deleted)
	if len(p.create)+len(p.delete) > 0 {
		c.log.Info("synced pods", "daemonset", key, "created", len(created), "deleted", len(deleted))
	}
	return errors.Join(errs...)
}

// newPod is a daemon pod for node from the current template.
func newPod(ds *appsv1.DaemonSet, node, hash string) *corev1.Pod {
	tpl := ds.Spec.Template.DeepCopy()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    ds.Name + "-",
			Namespace:       ds.Namespace,
			Labels:          map[string]string{},
			Annotations:     tpl.Annotations,
			Finalizers:      tpl.Finalizers,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ds, kind)},
		},
		Spec: tpl.Spec,
	}
	for k, v := range tpl.Labels {
		pod.Labels[k] = v
	}
	pod.Labels[history.HashLabel] = hash
	pod.Spec.Tolerations = withDaemonTolerations(pod.Spec.Tolerations, pod.Spec.HostNetwork)
	pinToNode(&pod.Spec, node)
	return pod
}

// truncateHistory keeps revisionHistoryLimit old revisions besides the
// current one and those pods still run.
func (c *Controller) truncateHistory(ctx context.Context, ds *appsv1.DaemonSet, revs []*appsv1.ControllerRevision, cur *appsv1.ControllerRevision, pods []*corev1.Pod) error {
	live := map[string]bool{cur.Name: true}
	for _, p := range pods {
		if h := p.Labels[history.HashLabel]; h != "" {
			live[ds.Name+"-"+h] = true
		}
	}
	var rest []*appsv1.ControllerRevision
	for _, r := range revs {
		if r.Name != cur.Name {
			rest = append(rest, r)
		}
	}
	return history.Truncate(ctx, c.client, rest, live, ptr.Deref(ds.Spec.RevisionHistoryLimit, 10))
}

func (c *Controller) updateStatus(ctx context.Context, ds *appsv1.DaemonSet, st appsv1.DaemonSetStatus) error {
	st.Conditions = ds.Status.Conditions
	if apiequality.Semantic.DeepEqual(ds.Status, st) {
		return nil
	}
	up := ds.DeepCopy()
	up.Status = st
	_, err := c.client.AppsV1().DaemonSets(ds.Namespace).UpdateStatus(ctx, up, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("update status: %w", err)
	}
	return nil
}
