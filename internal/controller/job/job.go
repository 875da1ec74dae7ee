// Package job runs batch/v1 Jobs: it creates pods from a Job's template
// until enough of them succeed, retries failures with exponential
// back-off up to the back-off limit, applies the pod failure policy,
// deadlines and suspension, counts finished pods through the
// batch.kubernetes.io/job-tracking finalizer as upstream does, and deletes
// finished Jobs once their ttlSecondsAfterFinished has passed.
package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/skiffhq/skiff/internal/controller"
)

// Name is the controller's name in logs and the controller registry.
const Name = "job"

// Descriptor registers the controller with the manager.
var Descriptor = controller.Descriptor{Name: Name, New: func(c *controller.Context) (controller.Interface, error) { return New(c) }}

// Upstream's back-off between retries: 10 s doubling per consecutive
// failure, capped at six minutes.
const (
	DefaultBackoff    = 10 * time.Second
	DefaultMaxBackoff = 6 * time.Minute
)

// Controller reconciles Jobs with their pods.
type Controller struct {
	client     kubernetes.Interface
	recorder   record.EventRecorder
	log        *slog.Logger
	clock      clock.WithTicker
	backoff    time.Duration
	maxBackoff time.Duration

	jobs       batchlisters.JobLister
	pods       corelisters.PodLister
	synced     []cache.InformerSynced
	queue      workqueue.TypedRateLimitingInterface[string]
	expect     *expectations
	removals   *removals
	failures   *backoffStore
	workerSize int
}

// Option adjusts a Controller; tests use them to shorten time.
type Option func(*Controller)

// WithClock makes the controller read time from clk and schedule its
// timed re-syncs (back-off, deadlines, TTLs) on it.
func WithClock(clk clock.WithTicker) Option { return func(c *Controller) { c.clock = clk } }

// WithBackoff replaces the retry back-off's base and cap.
func WithBackoff(base, limit time.Duration) Option {
	return func(c *Controller) { c.backoff, c.maxBackoff = base, limit }
}

// New returns a controller; Run starts it.
func New(cc *controller.Context, opts ...Option) (*Controller, error) {
	if cc.Client == nil || cc.Informers == nil || cc.Recorder == nil {
		return nil, errors.New("job controller: Client, Informers and Recorder are required")
	}
	logger := cc.Logger
	if logger == nil {
		logger = slog.Default()
	}
	c := &Controller{
		client:     cc.Client,
		recorder:   cc.Recorder("job-controller"),
		log:        logger.With("controller", Name),
		clock:      controller.Clock(cc.Now),
		backoff:    DefaultBackoff,
		maxBackoff: DefaultMaxBackoff,
		workerSize: 4,
	}
	for _, o := range opts {
		o(c)
	}
	c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](20*time.Millisecond, 30*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: Name, Clock: c.clock})
	c.expect = newExpectations(c.clock)
	c.removals = newRemovals()
	c.failures = newBackoffStore()

	jobInf := cc.Informers.Batch().V1().Jobs()
	podInf := cc.Informers.Core().V1().Pods()
	c.jobs, c.pods = jobInf.Lister(), podInf.Lister()
	c.synced = []cache.InformerSynced{jobInf.Informer().HasSynced, podInf.Informer().HasSynced}

	if _, err := jobInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueJob,
		UpdateFunc: func(_, obj any) { c.enqueueJob(obj) },
		DeleteFunc: c.enqueueJob,
	}); err != nil {
		return nil, fmt.Errorf("job controller: %w", err)
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.addPod,
		UpdateFunc: c.updatePod,
		DeleteFunc: c.deletePod,
	}); err != nil {
		return nil, fmt.Errorf("job controller: %w", err)
	}
	return c, nil
}

// Run processes Jobs until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	return controller.RunWorkers(ctx, c.queue, c.workerSize, c.synced, c.sync, c.log)
}

func (c *Controller) enqueueJob(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if j, ok := obj.(*batchv1.Job); ok {
		c.queue.Add(j.Namespace + "/" + j.Name)
	}
}

// jobKeyOf returns the key of the Job controlling pod, if any.
func jobKeyOf(pod *corev1.Pod) (string, bool) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil || ref.Kind != "Job" || ref.APIVersion != batchv1.SchemeGroupVersion.String() {
		return "", false
	}
	return pod.Namespace + "/" + ref.Name, true
}

func (c *Controller) addPod(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if key, ok := jobKeyOf(pod); ok {
		c.expect.observed(key, 1, 0)
		c.queue.Add(key)
	}
}

func (c *Controller) updatePod(oldObj, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if old, ok := oldObj.(*corev1.Pod); ok {
		if key, ok := jobKeyOf(old); ok {
			c.queue.Add(key)
		}
	}
	if key, ok := jobKeyOf(pod); ok {
		c.queue.Add(key)
	}
}

func (c *Controller) deletePod(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if key, ok := jobKeyOf(pod); ok {
		c.expect.observed(key, 0, 1)
		c.queue.Add(key)
	}
}
