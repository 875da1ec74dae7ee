// Package nodeipam gives every Node a pod subnet (spec.podCIDR and
// spec.podCIDRs) carved from the cluster CIDR, one /24 of 10.42.0.0/16 by
// default. What is taken is rebuilt from the nodes themselves at start, so
// a restarted controller never hands out a subnet twice.
package nodeipam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiffhq/skiff/internal/controller"
)

// Name is the controller's name in logs and the controller registry.
const Name = "nodeipam"

// Defaults, from the architecture's networking table.
const (
	DefaultClusterCIDR  = "10.42.0.0/16"
	DefaultNodeMaskSize = 24
)

// Descriptor registers the controller with the manager.
var Descriptor = controller.Descriptor{Name: Name, New: func(c *controller.Context) (controller.Interface, error) {
	return New(c, Config{ClusterCIDR: c.Settings.ClusterCIDR})
}}

// Config sets the address plan; zero values take the defaults.
type Config struct {
	ClusterCIDR  string
	NodeMaskSize int
}

// Controller allocates node pod CIDRs.
type Controller struct {
	client   kubernetes.Interface
	log      *slog.Logger
	recorder record.EventRecorder
	nodes    corelisters.NodeLister
	synced   cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]

	mu    sync.Mutex
	alloc *allocator
}

// New returns a controller; Run starts it.
func New(cc *controller.Context, cfg Config) (*Controller, error) {
	if cc.Client == nil || cc.Informers == nil {
		return nil, errors.New("nodeipam controller: Client and Informers are required")
	}
	if cfg.ClusterCIDR == "" {
		cfg.ClusterCIDR = DefaultClusterCIDR
	}
	if cfg.NodeMaskSize == 0 {
		cfg.NodeMaskSize = DefaultNodeMaskSize
	}
	alloc, err := newAllocator(cfg.ClusterCIDR, cfg.NodeMaskSize)
	if err != nil {
		return nil, fmt.Errorf("nodeipam controller: %w", err)
	}
	log := cc.Logger
	if log == nil {
		log = slog.Default()
	}
	inf := cc.Informers.Core().V1().Nodes()
	c := &Controller{
		client: cc.Client,
		log:    log.With("controller", Name),
		nodes:  inf.Lister(),
		synced: inf.Informer().HasSynced,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: Name}),
		alloc: alloc,
	}
	if cc.Recorder != nil {
		c.recorder = cc.Recorder("cidrAllocator")
	}
	enqueue := func(obj any) {
		if n, ok := obj.(*corev1.Node); ok && n.Spec.PodCIDR == "" {
			c.queue.Add(n.Name)
		}
	}
	_, err = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, o any) { enqueue(o) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if n, ok := obj.(*corev1.Node); ok && n.Spec.PodCIDR != "" {
				c.mu.Lock()
				c.alloc.release(n.Spec.PodCIDR)
				c.mu.Unlock()
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("nodeipam controller: %w", err)
	}
	return c, nil
}

// Run allocates until ctx ends. One worker: allocation is serial, so two
// nodes can never race for the same subnet.
func (c *Controller) Run(ctx context.Context) error {
	defer c.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced) {
		return ctx.Err()
	}
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	c.mu.Lock()
	for _, n := range nodes {
		for _, cidr := range n.Spec.PodCIDRs {
			c.alloc.occupy(cidr)
		}
		if n.Spec.PodCIDR != "" {
			c.alloc.occupy(n.Spec.PodCIDR)
		}
	}
	c.mu.Unlock()
	go wait.UntilWithContext(ctx, c.worker, time.Second)
	<-ctx.Done()
	return nil
}

func (c *Controller) worker(ctx context.Context) {
	for {
		name, quit := c.queue.Get()
		if quit {
			return
		}
		if err := c.sync(ctx, name); err != nil {
			c.log.Warn("allocation failed", "node", name, "err", err)
			c.queue.AddRateLimited(name)
		} else {
			c.queue.Forget(name)
		}
		c.queue.Done(name)
	}
}

// sync gives the node a subnet if it has none.
func (c *Controller) sync(ctx context.Context, name string) error {
	n, err := c.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n.Spec.PodCIDR != "" {
		c.alloc.occupy(n.Spec.PodCIDR)
		return nil
	}
	cidr, err := c.alloc.allocate()
	if err != nil {
		if c.recorder != nil {
			c.recorder.Eventf(&corev1.ObjectReference{Kind: "Node", Name: n.Name, UID: n.UID}, corev1.EventTypeNormal,
				"CIDRNotAvailable", "Node %s status is now: CIDRNotAvailable", n.Name)
		}
		return err
	}
	n.Spec.PodCIDR, n.Spec.PodCIDRs = cidr, []string{cidr}
	if _, err := c.client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		c.alloc.release(cidr)
		if c.recorder != nil {
			c.recorder.Eventf(&corev1.ObjectReference{Kind: "Node", Name: n.Name, UID: n.UID}, corev1.EventTypeWarning,
				"CIDRAssignmentFailed", "Node %s status is now: CIDRAssignmentFailed", n.Name)
		}
		return fmt.Errorf("set pod CIDR: %w", err)
	}
	c.log.Info("pod CIDR allocated", "node", n.Name, "cidr", cidr)
	return nil
}
