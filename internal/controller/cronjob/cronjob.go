// Package cronjob runs batch/v1 CronJobs: at each time a CronJob's
// schedule names it creates a Job from the CronJob's template, honouring
// the concurrency policy, the starting deadline and suspension; it keeps
// status.active, lastScheduleTime and lastSuccessfulTime, and prunes
// finished Jobs beyond the history limits. It wakes at the next scheduled
// time rather than polling.
package cronjob

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/skiffhq/skiff/internal/controller"
)

// Name is the controller's name in logs and the controller registry.
const Name = "cronjob"

// Descriptor registers the controller with the manager.
var Descriptor = controller.Descriptor{Name: Name, New: func(c *controller.Context) (controller.Interface, error) { return New(c) }}

// Controller creates Jobs on schedule.
type Controller struct {
	client   kubernetes.Interface
	recorder record.EventRecorder
	log      *slog.Logger
	clock    clock.WithTicker

	cronJobs batchlisters.CronJobLister
	jobs     batchlisters.JobLister
	synced   []cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]
}

// Option adjusts a Controller; tests use it to drive time.
type Option func(*Controller)

// WithClock makes the controller read time from clk and wait for the
// next scheduled time on it, so a test can step a fake clock.
func WithClock(clk clock.WithTicker) Option { return func(c *Controller) { c.clock = clk } }

// New returns a controller; Run starts it.
func New(cc *controller.Context, opts ...Option) (*Controller, error) {
	if cc.Client == nil || cc.Informers == nil || cc.Recorder == nil {
		return nil, errors.New("cronjob controller: Client, Informers and Recorder are required")
	}
	logger := cc.Logger
	if logger == nil {
		logger = slog.Default()
	}
	c := &Controller{
		client:   cc.Client,
		recorder: cc.Recorder("cronjob-controller"),
		log:      logger.With("controller", Name),
		clock:    controller.Clock(cc.Now),
	}
	for _, o := range opts {
		o(c)
	}
	c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 30*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: Name, Clock: c.clock})

	cjInf := cc.Informers.Batch().V1().CronJobs()
	jobInf := cc.Informers.Batch().V1().Jobs()
	c.cronJobs, c.jobs = cjInf.Lister(), jobInf.Lister()
	c.synced = []cache.InformerSynced{cjInf.Informer().HasSynced, jobInf.Informer().HasSynced}

	if _, err := cjInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: c.enqueue,
	}); err != nil {
		return nil, fmt.Errorf("cronjob controller: %w", err)
	}
	if _, err := jobInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueOwner,
		UpdateFunc: func(_, obj any) { c.enqueueOwner(obj) },
		DeleteFunc: c.enqueueOwner,
	}); err != nil {
		return nil, fmt.Errorf("cronjob controller: %w", err)
	}
	return c, nil
}

// Run processes CronJobs until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	return controller.RunWorkers(ctx, c.queue, 2, c.synced, c.sync, c.log)
}

func (c *Controller) enqueue(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if cj, ok := obj.(*batchv1.CronJob); ok {
		c.queue.Add(cj.Namespace + "/" + cj.Name)
	}
}

func (c *Controller) enqueueOwner(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	job, ok := obj.(*batchv1.Job)
	if !ok {
		return
	}
	if ref := metav1.GetControllerOf(job); ref != nil && ref.Kind == "CronJob" && ref.APIVersion == batchv1.SchemeGroupVersion.String() {
		c.queue.Add(job.Namespace + "/" + ref.Name)
	}
}
