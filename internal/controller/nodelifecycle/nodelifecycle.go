// Package nodelifecycle watches node heartbeats (the node's Lease in
// kube-node-lease and its Ready condition). A node silent for longer than
// the grace period gets Ready=Unknown and the unreachable taints; a
// NotReady node gets the not-ready taints; pods on such nodes are marked
// not ready. Its taint manager evicts pods from nodes with NoExecute
// taints they do not tolerate, honouring tolerationSeconds.
package nodelifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	coordlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiffhq/skiff/internal/controller"
)

// Name is the controller's name in logs and the controller registry.
const Name = "nodelifecycle"

// Defaults.
const (
	// DefaultGracePeriod is how long a node may stay silent before it is
	// considered unreachable (node-monitor-grace-period). Upstream waits
	// 40 s; agents renew their Lease every 10 s, so 20 s is two missed
	// renewals: one slow heartbeat does not trip it, and the time to
	// notice a dead node is halved (docs/node-failure.md).
	DefaultGracePeriod = 20 * time.Second
	// DefaultMonitorPeriod is how often node health is checked, as
	// upstream's node-monitor-period.
	DefaultMonitorPeriod = 5 * time.Second
)

// LeaseNamespace holds one Lease per node, renewed by its kubelet.
const LeaseNamespace = corev1.NamespaceNodeLease

// podNodeIndex indexes pods by spec.nodeName; the name is ours alone so
// it cannot clash with another controller's index on the shared informer.
const podNodeIndex = "nodelifecycle/nodeName"

// Descriptor registers the controller with the manager.
var Descriptor = controller.Descriptor{Name: Name, New: func(c *controller.Context) (controller.Interface, error) {
	return New(c, Config{GracePeriod: c.Settings.NodeMonitorGracePeriod})
}}

// Config tunes the controller; zero values take upstream's defaults, so
// node-failure handling can be made faster (tests, small clusters).
type Config struct {
	// GracePeriod before a silent node becomes Unknown.
	GracePeriod time.Duration
	// MonitorPeriod between health checks.
	MonitorPeriod time.Duration
	// Now overrides the Context's clock.
	Now func() time.Time
}

// Controller is the node lifecycle controller.
type Controller struct {
	cfg      Config
	client   kubernetes.Interface
	log      *slog.Logger
	recorder record.EventRecorder
	nodes    corelisters.NodeLister
	leases   coordlisters.LeaseLister
	pods     cache.Indexer
	synced   []cache.InformerSynced
	// evictions is keyed by node name; the taint manager's work.
	evictions workqueue.TypedRateLimitingInterface[string]

	mu     sync.Mutex
	health map[string]*health
}

// New returns a controller; Run starts it.
func New(cc *controller.Context, cfg Config) (*Controller, error) {
	if cc.Client == nil || cc.Informers == nil {
		return nil, errors.New("nodelifecycle controller: Client and Informers are required")
	}
	if cfg.GracePeriod <= 0 {
		cfg.GracePeriod = DefaultGracePeriod
	}
	if cfg.MonitorPeriod <= 0 {
		cfg.MonitorPeriod = DefaultMonitorPeriod
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
	nodeInf := cc.Informers.Core().V1().Nodes()
	leaseInf := cc.Informers.Coordination().V1().Leases()
	podInf := cc.Informers.Core().V1().Pods()
	if err := podInf.Informer().AddIndexers(cache.Indexers{podNodeIndex: func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("nodelifecycle controller: %w", err)
	}
	c := &Controller{
		cfg:    cfg,
		client: cc.Client,
		log:    log.With("controller", Name),
		nodes:  nodeInf.Lister(),
		leases: leaseInf.Lister(),
		pods:   podInf.Informer().GetIndexer(),
		evictions: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 10*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: Name + "-eviction"}),
		health: map[string]*health{},
	}
	if cc.Recorder != nil {
		c.recorder = cc.Recorder("taint-eviction-controller")
	}
	nodeChanged := func(obj any) {
		if n, ok := obj.(*corev1.Node); ok {
			c.evictions.Add(n.Name)
		}
	}
	podChanged := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" && p.DeletionTimestamp == nil {
			c.evictions.Add(p.Spec.NodeName)
		}
	}
	for _, h := range []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{nodeInf.Informer(), cache.ResourceEventHandlerFuncs{AddFunc: nodeChanged, UpdateFunc: func(_, o any) { nodeChanged(o) },
			DeleteFunc: func(obj any) {
				if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
					c.mu.Lock()
					delete(c.health, key)
					c.mu.Unlock()
				}
			}}},
		{podInf.Informer(), cache.ResourceEventHandlerFuncs{AddFunc: podChanged, UpdateFunc: func(_, o any) { podChanged(o) }}},
		{leaseInf.Informer(), cache.ResourceEventHandlerFuncs{}},
	} {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return nil, fmt.Errorf("nodelifecycle controller: %w", err)
		}
		c.synced = append(c.synced, h.inf.HasSynced)
	}
	return c, nil
}

// Run monitors nodes and evicts pods until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	defer c.evictions.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return ctx.Err()
	}
	go wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := c.monitor(ctx); err != nil {
			c.log.Warn("node health check", "err", err)
		}
	}, c.cfg.MonitorPeriod)
	for i := 0; i < 2; i++ {
		go wait.UntilWithContext(ctx, c.evictionWorker, time.Second)
	}
	<-ctx.Done()
	return nil
}

func (c *Controller) evictionWorker(ctx context.Context) {
	for {
		node, quit := c.evictions.Get()
		if quit {
			return
		}
		if err := c.evict(ctx, node); err != nil {
			c.log.Warn("eviction failed", "node", node, "err", err)
			c.evictions.AddRateLimited(node)
		} else {
			c.evictions.Forget(node)
		}
		c.evictions.Done(node)
	}
}

// lease returns the node's Lease, if its kubelet keeps one.
func (c *Controller) lease(node string) *coordinationv1.Lease {
	l, err := c.leases.Leases(LeaseNamespace).Get(node)
	if err != nil {
		return nil
	}
	return l
}

// podsOn lists the pods bound to node.
func (c *Controller) podsOn(node string) []*corev1.Pod {
	objs, err := c.pods.ByIndex(podNodeIndex, node)
	if err != nil {
		return nil
	}
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			out = append(out, p)
		}
	}
	return out
}
