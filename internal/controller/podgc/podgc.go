// Package podgc deletes pods nobody else will: terminated pods beyond a
// threshold (oldest first), pods bound to nodes that no longer exist (after
// a quarantine, so a node being re-registered is not mistaken for gone),
// and terminating pods that were never scheduled, which no kubelet will
// ever confirm. It matches upstream's pod garbage collector.
package podgc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiffhq/skiff/internal/controller"
)

// Name is the controller's name in logs and the controller registry.
const Name = "podgc"

// Upstream defaults.
const (
	// DefaultTerminatedPodThreshold is upstream's
	// --terminated-pod-gc-threshold.
	DefaultTerminatedPodThreshold = 12500
	// DefaultPeriod is how often the collector looks (upstream's
	// gcCheckPeriod).
	DefaultPeriod = 20 * time.Second
	// DefaultQuarantine is how long a node must have been missing before
	// its pods are deleted (upstream's quarantineTime).
	DefaultQuarantine = 40 * time.Second
)

// Descriptor registers the controller with the manager.
var Descriptor = controller.Descriptor{Name: Name, New: func(c *controller.Context) (controller.Interface, error) {
	return New(c, Config{TerminatedPodThreshold: c.Settings.TerminatedPodGCThreshold})
}}

// Config tunes the collector; zero values take the defaults.
type Config struct {
	// TerminatedPodThreshold is how many Succeeded or Failed pods may
	// exist; negative never deletes them.
	TerminatedPodThreshold int
	// Period between collections.
	Period time.Duration
	// Quarantine before pods of a missing node are deleted.
	Quarantine time.Duration
	// Now overrides the Context's clock.
	Now func() time.Time
}

// gcKey is the queue's only key: each pass looks at every pod, since the
// threshold is a count over the whole cluster.
const gcKey = "gc"

// Controller is the pod garbage collector.
type Controller struct {
	cfg    Config
	client kubernetes.Interface
	log    *slog.Logger
	pods   corelisters.PodLister
	nodes  corelisters.NodeLister
	synced []cache.InformerSynced
	// queue holds gcKey: re-added after Period, or rate-limited after a
	// failed pass.
	queue workqueue.TypedRateLimitingInterface[string]
	// missing records when each absent node was first noticed; only the
	// worker touches it.
	missing map[string]time.Time
}

var _ controller.Interface = (*Controller)(nil)

// New returns a controller; Run starts it.
func New(cc *controller.Context, cfg Config) (*Controller, error) {
	if cc.Client == nil || cc.Informers == nil {
		return nil, errors.New("podgc controller: Client and Informers are required")
	}
	if cfg.TerminatedPodThreshold == 0 {
		cfg.TerminatedPodThreshold = DefaultTerminatedPodThreshold
	}
	if cfg.Period <= 0 {
		cfg.Period = DefaultPeriod
	}
	if cfg.Quarantine <= 0 {
		cfg.Quarantine = DefaultQuarantine
	}
	if cfg.Now == nil {
		cfg.Now = cc.Now
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cc.Logger
	if log == nil {
		log = slog.Default()
	}
	pods, nodes := cc.Informers.Core().V1().Pods(), cc.Informers.Core().V1().Nodes()
	return &Controller{
		cfg:    cfg,
		client: cc.Client,
		log:    log.With("controller", Name),
		pods:   pods.Lister(),
		nodes:  nodes.Lister(),
		synced: []cache.InformerSynced{pods.Informer().HasSynced, nodes.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, cfg.Period),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: Name}),
		missing: map[string]time.Time{},
	}, nil
}

// Run collects every Period until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	defer c.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return ctx.Err()
	}
	c.queue.Add(gcKey)
	go wait.UntilWithContext(ctx, c.worker, time.Second)
	<-ctx.Done()
	return nil
}

func (c *Controller) worker(ctx context.Context) {
	for {
		key, quit := c.queue.Get()
		if quit {
			return
		}
		if err := c.sync(ctx); err != nil {
			c.log.Warn("pod gc", "err", err)
			c.queue.AddRateLimited(key)
		} else {
			c.queue.Forget(key)
			c.queue.AddAfter(key, c.cfg.Period)
		}
		c.queue.Done(key)
	}
}

// sync runs one collection over every pod.
func (c *Controller) sync(ctx context.Context) error {
	pods, err := c.pods.List(labels.Everything())
	if err != nil {
		return err
	}
	return errors.Join(
		c.gcTerminated(ctx, pods),
		c.gcOrphaned(ctx, pods),
		c.gcUnscheduledTerminating(ctx, pods),
	)
}

// terminated reports whether the pod's containers are done for good.
func terminated(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// gcTerminated deletes the oldest terminated pods beyond the threshold.
// Evicted pods go first, as upstream: they are the least interesting.
func (c *Controller) gcTerminated(ctx context.Context, pods []*corev1.Pod) error {
	if c.cfg.TerminatedPodThreshold < 0 {
		return nil
	}
	var done []*corev1.Pod
	for _, p := range pods {
		if terminated(p) && p.DeletionTimestamp == nil {
			done = append(done, p)
		}
	}
	excess := len(done) - c.cfg.TerminatedPodThreshold
	if excess <= 0 {
		return nil
	}
	slices.SortStableFunc(done, func(a, b *corev1.Pod) int {
		if ea, eb := a.Status.Reason == "Evicted", b.Status.Reason == "Evicted"; ea != eb {
			if ea {
				return -1
			}
			return 1
		}
		if d := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); d != 0 {
			return d
		}
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	c.log.Info("garbage collecting terminated pods", "count", excess, "threshold", c.cfg.TerminatedPodThreshold)
	var errs []error
	for _, p := range done[:excess] {
		errs = append(errs, c.delete(ctx, p))
	}
	return errors.Join(errs...)
}

// gcOrphaned deletes pods bound to nodes that have been gone for the
// quarantine. The informer can lag a node's creation, so the node's
// absence is confirmed with the API server before anything is deleted.
func (c *Controller) gcOrphaned(ctx context.Context, pods []*corev1.Pod) error {
	now := c.cfg.Now()
	seen := map[string]bool{}
	var errs []error
	for _, p := range pods {
		node := p.Spec.NodeName
		if node == "" {
			continue
		}
		if _, err := c.nodes.Get(node); err == nil {
			continue
		}
		seen[node] = true
		first, ok := c.missing[node]
		if !ok {
			c.missing[node] = now
			// Look again when the quarantine is over rather than a whole
			// Period later.
			c.queue.AddAfter(gcKey, c.cfg.Quarantine)
			continue
		}
		if now.Sub(first) < c.cfg.Quarantine {
			continue
		}
		_, err := c.client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err == nil {
			delete(c.missing, node) // back again
			continue
		}
		if !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("node %s: %w", node, err))
			continue
		}
		errs = append(errs, c.failAndDelete(ctx, p, "PodGC: node no longer exists"))
	}
	for node := range c.missing {
		if !seen[node] {
			delete(c.missing, node) // no pods left on it, or it came back
		}
	}
	return errors.Join(errs...)
}

// gcUnscheduledTerminating force-deletes pods being deleted that were
// never bound: no kubelet will ever finish their graceful deletion.
func (c *Controller) gcUnscheduledTerminating(ctx context.Context, pods []*corev1.Pod) error {
	var errs []error
	for _, p := range pods {
		if p.DeletionTimestamp != nil && p.Spec.NodeName == "" {
			errs = append(errs, c.delete(ctx, p))
		}
	}
	return errors.Join(errs...)
}

// failAndDelete records why the pod is going, as upstream does since pod
// disruption conditions: phase Failed (unless already terminal) and a
// DisruptionTarget condition; then it deletes the pod.
func (c *Controller) failAndDelete(ctx context.Context, pod *corev1.Pod, msg string) error {
	if !terminated(pod) {
		p := pod.DeepCopy()
		p.Status.Phase = corev1.PodFailed
		cond := corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "DeletionByPodGC",
			Message: msg, LastTransitionTime: metav1.NewTime(c.cfg.Now())}
		if i := slices.IndexFunc(p.Status.Conditions, func(pc corev1.PodCondition) bool { return pc.Type == corev1.DisruptionTarget }); i >= 0 {
			p.Status.Conditions[i] = cond
		} else {
			p.Status.Conditions = append(p.Status.Conditions, cond)
		}
		if _, err := c.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("mark pod %s/%s failed: %w", p.Namespace, p.Name, err)
		}
	}
	return c.delete(ctx, pod)
}

// delete removes the pod at once (grace period 0): nothing is running it
// that could still shut it down gracefully.
func (c *Controller) delete(ctx context.Context, p *corev1.Pod) error {
	uid := p.UID
	err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64), Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	c.log.Info("pod garbage collected", "pod", p.Namespace+"/"+p.Name, "node", p.Spec.NodeName)
	return nil
}
