// Package scheduler binds every pending pod to the best node. It watches
// pods, nodes and namespaces through the API server, keeps a cache of
// what each node runs, and drains a priority queue one pod at a time:
// filter plugins decide where the pod can run, score plugins which node
// is best, and the pod is assumed onto that node at once and bound
// through pods/binding in the background. With several servers only the
// holder of the kube-system/skiff-scheduler Lease schedules.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clientscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiffhq/skiff/internal/leader"
	schedcache "github.com/skiffhq/skiff/internal/scheduler/cache"
	"github.com/skiffhq/skiff/internal/scheduler/framework"
	"github.com/skiffhq/skiff/internal/scheduler/plugins"
	"github.com/skiffhq/skiff/internal/scheduler/queue"
)

// LeaseName is the scheduler's Lease in kube-system.
const LeaseName = "skiff-scheduler"

// DefaultSchedulerName is the spec.schedulerName served by default.
const DefaultSchedulerName = corev1.DefaultSchedulerName

// DiagnosisAnnotation holds, on a pod that does not fit, the per-node
// table of which plugin rejected it where and why (JSON).
const DiagnosisAnnotation = "scheduler.skiff.dev/diagnosis"

// Config configures the scheduler.
type Config struct {
	// REST reaches the API server; Client, when set, is used instead.
	REST   *rest.Config
	Client kubernetes.Interface
	// SchedulerName is the spec.schedulerName this scheduler serves;
	// pods naming another are left alone. Default "default-scheduler".
	SchedulerName string
	// ScoringStrategy for NodeResourcesFit: LeastAllocated (default,
	// spreads) or MostAllocated (packs).
	ScoringStrategy string
	// Seed makes tie-breaking between equally scored nodes repeatable;
	// 0 seeds from the clock.
	Seed int64
	// PercentageOfNodesToScore caps how many feasible nodes an attempt
	// looks for in large clusters; 0 is upstream's adaptive default.
	PercentageOfNodesToScore int
	// Lease timing and identity; zero values take package leader's
	// defaults. DisableLeaderElection schedules without a lease (tests,
	// benchmarks with one instance).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Identity                                  string
	DisableLeaderElection                     bool
	// InitialBackoff, MaxBackoff and MaxUnschedulable tune the queue.
	InitialBackoff, MaxBackoff, MaxUnschedulable time.Duration
	Logger                                       *slog.Logger
	// Now is the clock; tests inject one.
	Now func() time.Time
}

// Scheduler is the scheduler component.
type Scheduler struct {
	cfg    Config
	client kubernetes.Interface
	log    *slog.Logger
	ready  chan struct{}
	once   sync.Once
}

// New validates cfg and fills defaults.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Client == nil && cfg.REST == nil {
		return nil, errors.New("scheduler: REST config or Client required")
	}
	if cfg.SchedulerName == "" {
		cfg.SchedulerName = DefaultSchedulerName
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Seed == 0 {
		cfg.Seed = time.Now().UnixNano()
	}
	client := cfg.Client
	if client == nil {
		rc := rest.CopyConfig(cfg.REST)
		rc.UserAgent = "skiff-scheduler"
		var err error
		if client, err = kubernetes.NewForConfig(rc); err != nil {
			return nil, fmt.Errorf("scheduler: %w", err)
		}
	}
	// Build a framework once so a bad configuration fails here, not later.
	if _, err := framework.New(plugins.Registry(), plugins.DefaultProfile(cfg.SchedulerName, cfg.ScoringStrategy), framework.Options{}); err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	return &Scheduler{cfg: cfg, client: client, log: cfg.Logger.With("component", "scheduler"), ready: make(chan struct{})}, nil
}

// Leading is closed the first time this instance starts scheduling.
func (s *Scheduler) Leading() <-chan struct{} { return s.ready }

// Run schedules while holding the lease (or always, without leader
// election) until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	if s.cfg.DisableLeaderElection {
		return s.runTerm(ctx)
	}
	return leader.Run(ctx, leader.Config{
		Client: s.client, Name: LeaseName, Identity: s.cfg.Identity, Logger: s.log,
		LeaseDuration: s.cfg.LeaseDuration, RenewDeadline: s.cfg.RenewDeadline, RetryPeriod: s.cfg.RetryPeriod,
	}, func(ctx context.Context) {
		if err := s.runTerm(ctx); err != nil {
			s.log.Error("scheduler stopped", "err", err)
		}
	})
}

// runTerm is one leadership term: fresh informers, cache and queue, so
// nothing from a previous term (when another instance may have bound pods)
// is trusted.
func (s *Scheduler) runTerm(ctx context.Context) error {
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(clientscheme.Scheme, corev1.EventSource{Component: s.cfg.SchedulerName})

	factory := informers.NewSharedInformerFactory(s.client, 0)
	podFactory := informers.NewSharedInformerFactoryWithOptions(s.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		// Finished pods hold nothing on a node, as upstream's filter.
		o.FieldSelector = "status.phase!=" + string(corev1.PodSucceeded) + ",status.phase!=" + string(corev1.PodFailed)
	}))
	podInformer := podFactory.Core().V1().Pods()
	nodeInformer := factory.Core().V1().Nodes()
	nsInformer := factory.Core().V1().Namespaces()

	sch, err := newSched(s.cfg, s.client, recorder, nsInformer.Lister())
	if err != nil {
		return err
	}
	sch.podLister = podInformer.Lister()
	if err := sch.addHandlers(podInformer.Informer(), nodeInformer.Informer(), nsInformer.Informer()); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	podFactory.Start(ctx.Done())
	defer factory.Shutdown()
	defer podFactory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), podInformer.Informer().HasSynced, nodeInformer.Informer().HasSynced, nsInformer.Informer().HasSynced) {
		return ctx.Err()
	}
	s.log.Info("component ready", "component", "scheduler", "schedulerName", s.cfg.SchedulerName)
	s.once.Do(func() { close(s.ready) })
	go sch.queue.Run(ctx)
	sch.loop(ctx)
	sch.wg.Wait()
	return nil
}

// sched is the state of one term.
type sched struct {
	cfg       Config
	log       *slog.Logger
	client    kubernetes.Interface
	recorder  record.EventRecorder
	cache     *schedcache.Cache
	snapshot  *schedcache.Snapshot
	queue     *queue.PriorityQueue
	fwk       *framework.Framework
	podLister corelisters.PodLister
	nsLister  corelisters.NamespaceLister
	rng       *rand.Rand
	// nextStart rotates where filtering starts, so that with a cap on
	// feasible nodes every node gets its turn.
	nextStart int
	// statusBuf is findNodesThatFit's per-node scratch, kept between
	// attempts.
	statusBuf []*framework.Status
	// bind is the API call; the benchmark replaces it.
	bind func(ctx context.Context, pod *corev1.Pod, node string) error
	wg   sync.WaitGroup
}

// newSched builds a term's state; client and nsLister may be nil (the
// in-memory benchmark).
func newSched(cfg Config, client kubernetes.Interface, recorder record.EventRecorder, nsLister corelisters.NamespaceLister) (*sched, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &sched{
		cfg: cfg, log: cfg.Logger, client: client, recorder: recorder,
		cache: schedcache.New(), snapshot: schedcache.NewSnapshot(), nsLister: nsLister,
		rng: rand.New(rand.NewSource(cfg.Seed)),
	}
	if s.recorder == nil {
		s.recorder = &record.FakeRecorder{}
	}
	var fwk *framework.Framework
	s.queue = queue.New(queue.Config{
		Now: cfg.Now, InitialBackoff: cfg.InitialBackoff, MaxBackoff: cfg.MaxBackoff, MaxUnschedulable: cfg.MaxUnschedulable,
		EventInterest: func(p string, ev framework.ClusterEvent) bool { return fwk.EventInterest(p, ev) },
		IgnoreUpdate: func(old, pod *corev1.Pod) bool {
			return !queue.SpecOrLabelsChanged(old, pod, DiagnosisAnnotation)
		},
	})
	fwk, err := framework.New(plugins.Registry(), plugins.DefaultProfile(cfg.SchedulerName, cfg.ScoringStrategy), framework.Options{
		Client: client, NamespaceLabels: s.namespaceLabels, Nominator: s.queue.Nominator(), Recorder: s.recorder,
	})
	if err != nil {
		return nil, err
	}
	s.fwk = fwk
	s.bind = s.bindAPI
	return s, nil
}

func (s *sched) namespaceLabels(ns string) labels.Set {
	if s.nsLister == nil {
		return nil
	}
	n, err := s.nsLister.Get(ns)
	if err != nil {
		return nil
	}
	return n.Labels
}

// loop schedules one pod at a time until ctx ends. One at a time is what
// makes the cache's assumptions sound: each decision sees every earlier one.
func (s *sched) loop(ctx context.Context) {
	for {
		qpi, err := s.queue.Pop(ctx)
		if err != nil {
			return
		}
		s.scheduleOne(ctx, qpi)
	}
}
