// Package kubelet is the node agent's pod runner: it registers the Node and
// keeps its status and Lease fresh, watches the pods bound to the node and
// drives each one to its spec through the CRI — sandbox, init containers,
// containers, probes, restarts with back-off, graceful termination — and
// reports what really runs as the pod's status.
//
// The runtime is reached only through the CRI's gRPC client interfaces, so
// the same code runs real containers through containerd and hollow pods on
// the simulated runtime. Each pod has one worker goroutine; a worker is
// woken by a change of its pod, of its containers or sandboxes (found by a
// periodic relist, as containerd 1.6 sends no events), by a probe result
// or by a back-off or deadline expiring, and runs one level-triggered
// sync. A deletion aborts a sync still starting the pod.
package kubelet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/clock"

	"github.com/skiffhq/skiff/internal/kubelet/prober"
)

// Config is what a kubelet is built from.
type Config struct {
	// NodeName names the Node; Hostname is its Hostname address (default:
	// the host's name).
	NodeName, Hostname string
	// NodeIP is the node's InternalIP, also every hostNetwork pod's IP.
	NodeIP net.IP
	// Client talks to the API server as this node.
	Client kubernetes.Interface
	// Informers is a cluster-wide informer factory for nodes, services,
	// config maps and secrets. Several kubelets in one process (hollow
	// nodes) share one; the kubelet starts it.
	Informers informers.SharedInformerFactory
	// Runtime and Images are the CRI services.
	Runtime runtimeapi.RuntimeServiceClient
	Images  runtimeapi.ImageServiceClient
	// RuntimeName prefixes container IDs in pod status ("containerd");
	// RuntimeVersion is reported in node info ("containerd://1.6.20").
	RuntimeName, RuntimeVersion string
	// SandboxImage is the pause image; it is pulled before the first
	// sandbox, as the runtime would otherwise fetch it itself.
	SandboxImage string
	// Version is the kubelet version reported in node info.
	Version string
	// Machine reports capacity, system info and pressure.
	Machine Machine
	// Volumes prepares pod volumes.
	Volumes Volumes
	// Labels and Taints are registered with the Node.
	Labels map[string]string
	Taints []corev1.Taint
	// RootDir holds per-pod files (volumes, /etc/hosts, termination
	// messages); LogDir holds container logs.
	RootDir, LogDir string
	// KubeletPort is where the kubelet's HTTPS API listens, advertised in
	// node status.
	KubeletPort int
	// ClusterDNS and ClusterDomain configure pods' resolv.conf.
	ClusterDNS    []string
	ClusterDomain string
	// CgroupRoot is the parent of all pod cgroups ("/kubepods").
	CgroupRoot string
	// OnPodCIDR is called when the node's pod CIDR is first known or
	// changes, to configure the pod network.
	OnPodCIDR func(ctx context.Context, cidr string) error
	// MaxParallelStarts is how many pods may be starting sandboxes or
	// containers at once (default: four per CPU, at least 8; measured on
	// 2 cores, fewer slots left the CPU idle while pods waited on runc and
	// the CNI plugins; unbounded, the pods of a burst all finish near the end).
	MaxParallelStarts int
	// RelistPeriod is how often the runtime is listed to notice container
	// state changes (default 1 s).
	RelistPeriod time.Duration
	// Recorder records events; nil builds one on Client.
	Recorder record.EventRecorder
	Clock    clock.WithTicker
	Logger   *slog.Logger
}

// Volumes prepares and removes the volumes of the pods on the node.
type Volumes interface {
	// Setup makes the pod's volumes ready and returns volume name → host
	// path. It is called on every sync and refreshes API-backed content.
	Setup(ctx context.Context, pod *corev1.Pod) (map[string]string, error)
	// Teardown removes everything Setup made for the pod.
	Teardown(uid types.UID) error
}

// Kubelet runs the pods bound to one node.
type Kubelet struct {
	cfg      Config
	log      *slog.Logger
	clock    clock.WithTicker
	recorder record.EventRecorder
	ready    chan struct{}

	pods       corelisters.PodLister
	podInf     cache.SharedIndexInformer
	nodes      corelisters.NodeLister
	services   corelisters.ServiceLister
	configMaps corelisters.ConfigMapLister
	secrets    corelisters.SecretLister
	synced     []cache.InformerSynced

	// starts bounds how many pod syncs start sandboxes or containers at
	// once; a slot is a buffered send.
	starts chan struct{}

	probes     *prober.Manager
	backoff    *backoff
	statuses   *statusCache
	hookClient *http.Client

	workersMu sync.Mutex
	workers   map[types.UID]*podWorker
	wg        sync.WaitGroup

	// Touched only by the node status loop.
	lastStatusReport time.Time
	podCIDR          string
	// Touched only by the lease loop.
	lease *coordinationv1.Lease

	// statusMu guards lastStatus, the status last posted per pod.
	statusMu   sync.Mutex
	lastStatus map[types.UID]*corev1.PodStatus
	// postedOver is the resourceVersion of the pod copy lastStatus was
	// written over, to tell a lagging informer from a status someone
	// else changed since.
	postedOver map[types.UID]string

	// relist state, touched only by the relist loop.
	relistSeen map[string]relistEntry
}

// Defaults.
const (
	DefaultKubeletPort   = 10250
	DefaultClusterDomain = "cluster.local"
	DefaultCgroupRoot    = "/kubepods"
	defaultRelistPeriod  = time.Second
)

// New validates cfg and fills defaults.
func New(cfg Config) (*Kubelet, error) {
	switch {
	case cfg.NodeName == "":
		return nil, errors.New("kubelet: node name is required")
	case cfg.Client == nil || cfg.Informers == nil:
		return nil, errors.New("kubelet: client and informers are required")
	case cfg.Runtime == nil || cfg.Images == nil:
		return nil, errors.New("kubelet: CRI runtime and image services are required")
	case cfg.NodeIP == nil:
		return nil, errors.New("kubelet: node IP is required")
	case cfg.RootDir == "":
		return nil, errors.New("kubelet: root dir is required")
	case cfg.Volumes == nil || cfg.Machine == nil:
		return nil, errors.New("kubelet: volumes and machine are required")
	}
	if cfg.LogDir == "" {
		cfg.LogDir = filepath.Join(cfg.RootDir, "logs")
	}
	if cfg.KubeletPort == 0 {
		cfg.KubeletPort = DefaultKubeletPort
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = DefaultClusterDomain
	}
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = DefaultCgroupRoot
	}
	if cfg.MaxParallelStarts <= 0 {
		cfg.MaxParallelStarts = 4 * max(2, goruntime.NumCPU())
	}
	if cfg.RelistPeriod == 0 {
		cfg.RelistPeriod = defaultRelistPeriod
	}
	if cfg.RuntimeName == "" {
		cfg.RuntimeName = "containerd"
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	k := &Kubelet{
		cfg:        cfg,
		log:        cfg.Logger.With("node", cfg.NodeName),
		clock:      cfg.Clock,
		recorder:   cfg.Recorder,
		ready:      make(chan struct{}),
		backoff:    newBackoff(cfg.Clock),
		statuses:   newStatusCache(),
		starts:     make(chan struct{}, cfg.MaxParallelStarts),
		hookClient: newHookClient(),
		workers:    map[types.UID]*podWorker{},
		lastStatus: map[types.UID]*corev1.PodStatus{},
		postedOver: map[types.UID]string{},
		relistSeen: map[string]relistEntry{},
	}
	return k, nil
}

// Ready is closed once the node is registered and existing pods are
// being synced.
func (k *Kubelet) Ready() <-chan struct{} { return k.ready }

// Run registers the node and runs its pods until ctx ends. Containers keep
// running when it returns: a restarted kubelet adopts them.
func (k *Kubelet) Run(ctx context.Context) error {
	if err := os.MkdirAll(k.cfg.RootDir, 0o750); err != nil {
		return fmt.Errorf("kubelet root dir: %w", err)
	}
	if err := os.MkdirAll(k.cfg.LogDir, 0o755); err != nil {
		return fmt.Errorf("kubelet log dir: %w", err)
	}
	if k.recorder == nil {
		rec, stop := newRecorder(k.cfg.Client, k.cfg.NodeName)
		defer stop()
		k.recorder = rec
	}
	k.setupInformers(ctx)
	k.probes = prober.NewManager(prober.Config{
		Runtime:  k.cfg.Runtime,
		Clock:    k.clock,
		OnChange: func(uid types.UID, _ string, _ prober.Kind, _ prober.Result) { k.wakePod(uid) },
		Logger:   k.log,
	})
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		_ = k.probes.Run(ctx)
	}()

	// Register, retrying while the API server is unreachable, as upstream
	// does: an agent may start before any server answers.
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 7*time.Second) {
		err := k.registerNode(ctx)
		if err == nil {
			break
		}
		k.log.Warn("register node; retrying", "err", err, "in", delay)
		select {
		case <-ctx.Done():
			return nil
		case <-k.clock.After(delay):
		}
	}
	k.cfg.Informers.Start(ctx.Done())
	go k.podInf.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), append(k.synced, k.podInf.HasSynced)...) {
		return nil // stopped while starting
	}
	if err := k.syncNodeStatus(ctx); err != nil {
		k.log.Warn("node status", "err", err)
	}
	if err := k.renewLease(ctx); err != nil {
		k.log.Warn("node lease", "err", err)
	}
	// Existing pods get their workers from the informer's initial adds;
	// relisting now also finds what runs for pods that are gone.
	k.relist(ctx)
	close(k.ready)
	k.log.Info("kubelet ready", "runtime", k.cfg.RuntimeVersion)

	k.every(ctx, nodeStatusUpdateFrequency, func() {
		if err := k.syncNodeStatus(ctx); err != nil && ctx.Err() == nil {
			k.log.Warn("node status", "err", err)
		}
	})
	k.every(ctx, leaseRenewInterval, func() {
		if err := k.renewLease(ctx); err != nil && ctx.Err() == nil {
			k.log.Warn("node lease", "err", err)
		}
	})
	k.every(ctx, k.cfg.RelistPeriod, func() { k.relist(ctx) })
	<-ctx.Done()
	k.wg.Wait()
	return nil
}

// every runs f each period until ctx ends.
func (k *Kubelet) every(ctx context.Context, period time.Duration, f func()) {
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		t := k.clock.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C():
				f()
			}
		}
	}()
}

// setupInformers wires the per-node pod informer and the shared listers.
func (k *Kubelet) setupInformers(ctx context.Context) {
	f := k.cfg.Informers
	k.nodes = f.Core().V1().Nodes().Lister()
	k.services = f.Core().V1().Services().Lister()
	k.configMaps = f.Core().V1().ConfigMaps().Lister()
	k.secrets = f.Core().V1().Secrets().Lister()
	k.synced = []cache.InformerSynced{
		f.Core().V1().Nodes().Informer().HasSynced,
		f.Core().V1().Services().Informer().HasSynced,
		f.Core().V1().ConfigMaps().Informer().HasSynced,
		f.Core().V1().Secrets().Informer().HasSynced,
	}
	// A config map or secret change reaches running pods' volumes through
	// a sync of the pods in its namespace that use it.
	refresh := func(kind string) cache.ResourceEventHandlerFuncs {
		return cache.ResourceEventHandlerFuncs{UpdateFunc: func(_, obj any) {
			if m, ok := obj.(interface {
				GetNamespace() string
				GetName() string
			}); ok {
				k.wakePodsUsing(kind, m.GetNamespace(), m.GetName())
			}
		}}
	}
	_, _ = f.Core().V1().ConfigMaps().Informer().AddEventHandler(refresh("ConfigMap"))
	_, _ = f.Core().V1().Secrets().Informer().AddEventHandler(refresh("Secret"))

	// Only this node's pods: the API server's watch cache filters by
	// spec.nodeName, so a thousand kubelets cost one etcd watch.
	pf := informers.NewSharedInformerFactoryWithOptions(k.cfg.Client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", k.cfg.NodeName).String()
	}))
	k.podInf = pf.Core().V1().Pods().Informer()
	k.pods = pf.Core().V1().Pods().Lister()
	_, _ = k.podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.podUpdated(ctx, obj, false) },
		UpdateFunc: func(_, obj any) { k.podUpdated(ctx, obj, false) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			k.podUpdated(ctx, obj, true)
		},
	})
}

func (k *Kubelet) podUpdated(ctx context.Context, obj any, deleted bool) {
	if p, ok := obj.(*corev1.Pod); ok {
		k.dispatch(ctx, p, deleted)
	}
}

// wakePod asks the pod's worker to sync again.
func (k *Kubelet) wakePod(uid types.UID) {
	k.workersMu.Lock()
	defer k.workersMu.Unlock()
	if w := k.workers[uid]; w != nil {
		w.wake()
	}
}

// wakePodsUsing syncs the pods of namespace ns with a volume from the
// named config map or secret.
func (k *Kubelet) wakePodsUsing(kind, ns, name string) {
	pods, err := k.pods.Pods(ns).List(labels.Everything())
	if err != nil {
		return
	}
	for _, p := range pods {
		if podUses(p, kind, name) {
			k.wakePod(p.UID)
		}
	}
}

func podUses(p *corev1.Pod, kind, name string) bool {
	for _, v := range p.Spec.Volumes {
		switch {
		case kind == "ConfigMap" && v.ConfigMap != nil && v.ConfigMap.Name == name,
			kind == "Secret" && v.Secret != nil && v.Secret.SecretName == name:
			return true
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if kind == "ConfigMap" && s.ConfigMap != nil && s.ConfigMap.Name == name ||
					kind == "Secret" && s.Secret != nil && s.Secret.Name == name {
					return true
				}
			}
		}
	}
	return false
}
