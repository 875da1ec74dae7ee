// Package agent assembles a node: an image mirror holding the images the
// node provides itself, a containerd it supervises (or a CRI endpoint it is
// given), the kubelet and its HTTPS API, and the pod network — the CNI
// configuration for the node's pod CIDR and routes to other nodes' pods.
package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffhq/skiff/internal/agent/balancer"
	"github.com/skiffhq/skiff/internal/image"
	"github.com/skiffhq/skiff/internal/image/registry"
	"github.com/skiffhq/skiff/internal/kubelet"
	"github.com/skiffhq/skiff/internal/kubelet/server"
	"github.com/skiffhq/skiff/internal/kubelet/volume"
	"github.com/skiffhq/skiff/internal/network"
	"github.com/skiffhq/skiff/internal/proxy"
	"github.com/skiffhq/skiff/internal/runtime/containerd"
	"github.com/skiffhq/skiff/internal/runtime/cri"
)

// Config is what `skiff agent` (or the agent inside `skiff server`) is told.
type Config struct {
	// DataDir holds the agent's state: containerd's, the kubelet's, and
	// images/ whose tarballs are imported at start.
	DataDir string
	// NodeName names the node; NodeIP is its InternalIP.
	NodeName string
	NodeIP   net.IP
	// Labels and Taints are registered with the Node.
	Labels map[string]string
	Taints []corev1.Taint
	// KubeletPort is the kubelet API's port (default 10250).
	KubeletPort int
	// RuntimeEndpoint, when set, is an existing CRI socket used instead of
	// a containerd of our own.
	RuntimeEndpoint string
	// Mirrors and InsecureRegistries configure image pulls of our
	// containerd (registry host → mirror URLs; hosts pulled over http).
	Mirrors            map[string][]string
	InsecureRegistries []string
	// ClusterCIDR is the cluster-wide pod range. The node masquerades
	// its pods' traffic to outside it, and the service proxy traffic to
	// Services from outside it.
	ClusterCIDR string
	// DisableProxy runs the node without its service proxy.
	DisableProxy bool
	// ClusterDNS and ClusterDomain go into pods' resolv.conf.
	ClusterDNS    []string
	ClusterDomain string
	// REST is how the node talks to the API server, as system:node:<name>.
	REST *rest.Config
	// ServingCert and ClientCAs secure the kubelet API: its certificate,
	// and the CA its callers' client certificates must chain to.
	ServingCert tls.Certificate
	ClientCAs   *x509.CertPool
	// Version is reported as the kubelet version.
	Version string
	Logger  *slog.Logger
}

// Agent is a running node.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	ready chan struct{}
}

// New validates cfg and fills defaults.
func New(cfg Config) (*Agent, error) {
	switch {
	case cfg.DataDir == "" || cfg.NodeName == "":
		return nil, errors.New("agent: data dir and node name are required")
	case cfg.REST == nil:
		return nil, errors.New("agent: API server credentials are required")
	case cfg.NodeIP == nil:
		return nil, errors.New("agent: node IP is required")
	}
	if cfg.KubeletPort == 0 {
		cfg.KubeletPort = kubelet.DefaultKubeletPort
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Agent{cfg: cfg, log: cfg.Logger.With("component", "agent"), ready: make(chan struct{})}, nil
}

// Ready is closed once the kubelet has registered the node and serves.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Run runs the node until ctx ends. Pods keep running afterwards: the
// next start adopts them. Our own containerd is restarted when it dies
// (its containers live on in their shims and the new one adopts them);
// meanwhile the kubelet keeps running and reports the node NotReady.
func (a *Agent) Run(ctx context.Context) error {
	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("agent data dir: %w", err)
	}
	// An error while starting returns before g.Wait: cancelling stops what
	// already runs.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)

	// The image mirror: our pause image and every imported tarball, served
	// to containerd so that images arrive through the CRI's PullImage.
	reg := registry.New(a.log.With("component", "registry"))
	refs, err := a.loadImages(ctx, reg)
	if err != nil {
		return err
	}
	regLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("image mirror: %w", err)
	}
	g.Go(func() error { return reg.Serve(ctx, regLn) })
	mirror := "http://" + regLn.Addr().String()
	if err := os.WriteFile(filepath.Join(a.cfg.DataDir, MirrorAddrFile), []byte(mirror+"\n"), 0o644); err != nil {
		return fmt.Errorf("image mirror: %w", err)
	}

	endpoint := a.cfg.RuntimeEndpoint
	var cniConfDir, cniDataDir string
	if endpoint == "" {
		mirrors := map[string][]string{}
		for host, eps := range a.cfg.Mirrors {
			mirrors[host] = append(mirrors[host], eps...)
		}
		// Every registry is tried through our mirror first, so imported
		// images are found whatever registry their names say.
		mirrors[containerd.DefaultHost] = append([]string{mirror}, mirrors[containerd.DefaultHost]...)
		dcfg := containerd.Config{
			Dir:                filepath.Join(a.cfg.DataDir, "containerd"),
			SandboxImage:       image.PauseRef,
			Mirrors:            mirrors,
			InsecureRegistries: a.cfg.InsecureRegistries,
			Logger:             a.log.With("component", "containerd"),
		}
		// Made now so that a bad configuration fails here; every daemon
		// after it runs on the same Dir, so it has the same endpoint and
		// the kubelet's connection finds the new one by itself.
		d, err := containerd.New(dcfg)
		if err != nil {
			return err
		}
		next := d
		sup := newSupervisor(func() (daemon, error) {
			if next != nil {
				first := next
				next = nil
				return first, nil
			}
			return containerd.New(dcfg)
		}, a.log.With("component", "containerd"))
		g.Go(func() error { return sup.Run(ctx) })
		select {
		case <-sup.Ready():
		case <-ctx.Done():
			return g.Wait()
		}
		endpoint, cniConfDir, cniDataDir = d.Endpoint(), d.CNIConfDir(), d.CNIDataDir()
	}
	if err := os.WriteFile(filepath.Join(a.cfg.DataDir, RuntimeEndpointFile), []byte(endpoint+"\n"), 0o644); err != nil {
		return fmt.Errorf("runtime endpoint: %w", err)
	}
	dialCtx, stopDial := context.WithTimeout(ctx, time.Minute)
	rt, err := cri.Dial(dialCtx, endpoint)
	stopDial()
	if err != nil {
		return fmt.Errorf("runtime %s: %w", endpoint, err)
	}
	defer rt.Close()
	for _, ref := range append([]string{image.PauseRef}, refs...) {
		if _, err := rt.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
			a.log.Warn("import image", "image", ref, "err", err)
		}
	}

	// Every API request goes through the balancer: when the server the
	// node joined goes away, the node carries on through another.
	bal, err := balancer.New(balancer.Config{REST: a.cfg.REST, StateFile: filepath.Join(a.cfg.DataDir, APIServersFile),
		Logger: a.log.With("component", "api-balancer")})
	if err != nil {
		return err
	}
	g.Go(func() error { return bal.Run(ctx) })
	client, err := kubernetes.NewForConfig(bal.RESTConfig())
	if err != nil {
		return fmt.Errorf("api client: %w", err)
	}
	informerFactory := informers.NewSharedInformerFactory(client, 0)
	rootDir := filepath.Join(a.cfg.DataDir, "kubelet")
	vols, err := volume.New(volume.Config{
		RootDir: filepath.Join(rootDir, "pods"),
		ConfigMaps: func(ns, name string) (*corev1.ConfigMap, error) {
			return informerFactory.Core().V1().ConfigMaps().Lister().ConfigMaps(ns).Get(name)
		},
		Secrets: func(ns, name string) (*corev1.Secret, error) {
			return informerFactory.Core().V1().Secrets().Lister().Secrets(ns).Get(name)
		},
		Logger: a.log,
	})
	if err != nil {
		return err
	}
	var netw *podNetwork
	if cniConfDir != "" {
		netw = &podNetwork{confDir: cniConfDir, dataDir: cniDataDir, routes: network.NewRoutes(nil, a.log), log: a.log}
		if a.cfg.ClusterCIDR != "" {
			if netw.clusterCIDR, err = netip.ParsePrefix(a.cfg.ClusterCIDR); err != nil {
				return fmt.Errorf("cluster CIDR: %w", err)
			}
		}
		// Pods of an older skiff may still have the bridge plugin's own
		// masquerade, which the node-wide rule replaced.
		if n, err := network.RemoveBridgeMasquerade(ctx, network.DefaultNetworkName); err != nil {
			a.log.Warn("remove the bridge plugin's per-pod masquerade", "err", err)
		} else if n > 0 {
			a.log.Info("removed the bridge plugin's per-pod masquerade", "chains", n)
		}
	}
	kcfg := kubelet.Config{
		NodeName: a.cfg.NodeName, NodeIP: a.cfg.NodeIP,
		Client: client, Informers: informerFactory,
		Runtime: rt.Runtime, Images: rt.Images,
		RuntimeName:    runtimeName(rt.RuntimeVersion()),
		RuntimeVersion: rt.RuntimeVersion(),
		SandboxImage:   image.PauseRef,
		Version:        a.cfg.Version,
		Machine:        kubelet.HostMachine(a.cfg.DataDir),
		Volumes:        vols,
		Labels:         a.cfg.Labels, Taints: a.cfg.Taints,
		RootDir: rootDir, LogDir: filepath.Join(a.cfg.DataDir, "pod-logs"),
		KubeletPort: a.cfg.KubeletPort,
		ClusterDNS:  a.cfg.ClusterDNS, ClusterDomain: a.cfg.ClusterDomain,
		Logger: a.log.With("component", "kubelet"),
	}
	if netw != nil {
		kcfg.OnPodCIDR = netw.configure
	}
	kl, err := kubelet.New(kcfg)
	if err != nil {
		return err
	}
	srv, err := server.New(server.Config{
		Addr: net.JoinHostPort("", strconv.Itoa(a.cfg.KubeletPort)),
		TLS: &tls.Config{
			Certificates: []tls.Certificate{a.cfg.ServingCert},
			ClientCAs:    a.cfg.ClientCAs,
			ClientAuth:   tls.RequireAndVerifyClientCert,
			MinVersion:   tls.VersionTLS12,
		},
		Pods: kl, Runtime: rt.Runtime,
		Logger: a.log.With("component", "kubelet-api"),
	})
	if err != nil {
		return err
	}
	// The service proxy programs this node's kernel: only a node whose
	// pods we network ourselves gets one.
	if netw != nil && !a.cfg.DisableProxy {
		p, err := proxy.New(proxy.Config{
			Client: client, Informers: informerFactory,
			NodeName: a.cfg.NodeName, NodeIPs: []net.IP{a.cfg.NodeIP}, ClusterCIDR: a.cfg.ClusterCIDR,
			Logger: a.log.With("component", "proxy"),
		})
		if err != nil {
			return err
		}
		// Registered before anything starts the informers, so its
		// EndpointSlice index is in place.
		g.Go(func() error { return p.Run(ctx) })
	}
	g.Go(func() error { return srv.Run(ctx) })
	g.Go(func() error { return kl.Run(ctx) })
	if netw != nil {
		g.Go(func() error { return netw.syncRoutes(ctx, informerFactory, a.cfg.NodeName) })
	}
	g.Go(func() error {
		select {
		case <-kl.Ready():
			a.log.Info("node ready", "node", a.cfg.NodeName, "images", len(refs)+1)
			close(a.ready)
		case <-ctx.Done():
		}
		return nil
	})
	return g.Wait()
}

// Files the agent writes into its data dir for `skiff image import`.
const (
	// MirrorAddrFile holds the image mirror's URL.
	MirrorAddrFile = "image-mirror"
	// RuntimeEndpointFile holds the CRI endpoint.
	RuntimeEndpointFile = "runtime-endpoint"
)

// APIServersFile, in the data dir, lists the API servers the agent last
// learned, so that a restart while its --server is down reaches another.
const APIServersFile = "api-servers"

// loadImages pushes our pause image and every tarball in DataDir/images to
// the mirror and returns the imported references.
func (a *Agent) loadImages(ctx context.Context, reg *registry.Registry) ([]string, error) {
	pause, err := image.Pause()
	if err != nil {
		return nil, fmt.Errorf("pause image: %w", err)
	}
	if err := reg.Push(ctx, image.PauseRef, pause); err != nil {
		return nil, err
	}
	dir := filepath.Join(a.cfg.DataDir, "images")
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("images dir: %w", err)
	}
	var refs []string
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".tar") {
			continue
		}
		imgs, err := image.ReadArchive(filepath.Join(dir, e.Name()))
		if err != nil {
			a.log.Warn("image tarball", "file", e.Name(), "err", err)
			continue
		}
		for _, img := range imgs {
			if err := reg.Push(ctx, img.Ref, img.Image); err != nil {
				return nil, err
			}
			refs = append(refs, img.Ref)
		}
	}
	return refs, nil
}

// runtimeName is the scheme of container IDs in pod status: the runtime
// version's prefix ("containerd" of "containerd://1.6.20").
func runtimeName(version string) string {
	if name, _, ok := strings.Cut(version, "://"); ok {
		return name
	}
	return "containerd"
}
