package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/skiffhq/skiff/internal/agent/balancer"
	"github.com/skiffhq/skiff/internal/kubelet"
	"github.com/skiffhq/skiff/internal/kubelet/server"
	"github.com/skiffhq/skiff/internal/runtime/cri"
	"github.com/skiffhq/skiff/internal/runtime/sim"
)

// HollowConfig describes a set of hollow nodes: real kubelets, each with
// its own Node, Lease, pod watch and kubelet API, running pods on the
// simulated runtime — for scale tests of the control plane.
type HollowConfig struct {
	// Count is how many nodes; they are named NamePrefix-0 … NamePrefix-(Count-1).
	Count      int
	NamePrefix string
	// DataDir holds the nodes' pod logs and volumes.
	DataDir string
	// REST is the API server identity all hollow nodes share.
	REST *rest.Config
	// ServingCert and ClientCAs secure the nodes' kubelet APIs.
	ServingCert tls.Certificate
	ClientCAs   *x509.CertPool
	// StartDelay is how long a simulated sandbox or container takes to
	// start.
	StartDelay time.Duration
	Version    string
	Logger     *slog.Logger
}

// hollowMachine is the machine every hollow node reports: a modest one,
// the same for all, so scheduling spreads evenly.
type hollowMachine struct{}

func (hollowMachine) Capacity() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("4"),
		corev1.ResourceMemory:           resource.MustParse("16Gi"),
		corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
		corev1.ResourcePods:             *resource.NewQuantity(kubelet.MaxPods, resource.DecimalSI),
	}
}

func (hollowMachine) Info() corev1.NodeSystemInfo {
	return corev1.NodeSystemInfo{KernelVersion: "simulated", OSImage: "skiff hollow node", OperatingSystem: "linux", Architecture: "amd64"}
}

func (hollowMachine) Pressure() (bool, bool, bool) { return false, false, false }

// noVolumes gives hollow pods volume paths without touching the host:
// nothing mounts them.
type noVolumes struct{ dir string }

func (v noVolumes) Setup(_ context.Context, pod *corev1.Pod) (map[string]string, error) {
	out := make(map[string]string, len(pod.Spec.Volumes))
	for _, vol := range pod.Spec.Volumes {
		out[vol.Name] = filepath.Join(v.dir, string(pod.UID), vol.Name)
	}
	return out, nil
}

func (noVolumes) Teardown(types.UID) error { return nil }

// RunHollow runs the hollow nodes until ctx ends.
func RunHollow(ctx context.Context, cfg HollowConfig) error {
	if cfg.Count <= 0 || cfg.REST == nil {
		return errors.New("hollow nodes: a count and API credentials are required")
	}
	if cfg.NamePrefix == "" {
		cfg.NamePrefix = "hollow"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger
	// One client, one informer factory and one event pipeline for all
	// nodes: per node there remain only its pod watch, runtime and API.
	// The shared client carries every node's Lease renewals and status
	// updates: its rate limit grows with the node count (a Lease every
	// 10 s per node is Count/10 requests a second before any pod work).
	// Unset limits mean client-go's defaults, which a few nodes must not
	// fall below.
	rc := rest.CopyConfig(cfg.REST)
	if rc.QPS == 0 {
		rc.QPS = rest.DefaultQPS
	}
	if rc.Burst == 0 {
		rc.Burst = rest.DefaultBurst
	}
	rc.QPS = max(rc.QPS, float32(cfg.Count)/2)
	rc.Burst = max(rc.Burst, cfg.Count)
	// The balancer dials from New on; its Run (health checks, the server
	// list) starts with the other goroutines below.
	bal, err := balancer.New(balancer.Config{REST: rc, Logger: log.With("component", "api-balancer")})
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(bal.RESTConfig())
	if err != nil {
		return fmt.Errorf("api client: %w", err)
	}
	shared := informers.NewSharedInformerFactory(client, 0)
	bc := record.NewBroadcaster()
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	defer bc.Shutdown()

	streaming := sim.NewStreamServer(log.With("component", "sim-streaming"))
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return bal.Run(ctx) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("sim streaming: %w", err)
	}
	g.Go(func() error { return streaming.Serve(ctx, ln) })

	tlsCfg := &tls.Config{
		Certificates: []tls.Certificate{cfg.ServingCert}, ClientCAs: cfg.ClientCAs,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
	}
	for i := range cfg.Count {
		name := cfg.NamePrefix + "-" + strconv.Itoa(i)
		rt := sim.New(sim.Config{StartDelay: cfg.StartDelay, Streaming: streaming, Logger: log})
		conn, err := rt.Connect(ctx)
		if err != nil {
			return fmt.Errorf("hollow node %s: %w", name, err)
		}
		c := cri.NewClient(conn)
		// The kubelet API listens before the node registers its port.
		apiLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("hollow node %s: %w", name, err)
		}
		kl, err := kubelet.New(kubelet.Config{
			NodeName: name, Hostname: name, NodeIP: net.IPv4(127, 0, 0, 1),
			Client: client, Informers: shared,
			Runtime: c.Runtime, Images: c.Images,
			RuntimeName: "sim", RuntimeVersion: "skiff-sim://" + cfg.Version,
			Version: cfg.Version, Machine: hollowMachine{},
			Volumes:     noVolumes{dir: filepath.Join(cfg.DataDir, "volumes", name)},
			Labels:      map[string]string{"skiff.io/hollow": "true"},
			RootDir:     filepath.Join(cfg.DataDir, "kubelet", name),
			LogDir:      filepath.Join(cfg.DataDir, "pod-logs", name),
			KubeletPort: apiLn.Addr().(*net.TCPAddr).Port,
			Recorder:    bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: name}),
			Logger:      log,
		})
		if err != nil {
			return err
		}
		srv, err := server.New(server.Config{Pods: kl, Runtime: c.Runtime, Logger: log})
		if err != nil {
			return err
		}
		hs := &http.Server{Handler: srv.Handler(), TLSConfig: tlsCfg, ReadHeaderTimeout: 30 * time.Second,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
		g.Go(func() error {
			go func() { <-ctx.Done(); _ = hs.Close() }()
			if err := hs.ServeTLS(apiLn, "", ""); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("hollow node %s kubelet API: %w", name, err)
			}
			return nil
		})
		g.Go(func() error { return kl.Run(ctx) })
	}
	log.Info("hollow nodes started", "count", cfg.Count)
	return g.Wait()
}
