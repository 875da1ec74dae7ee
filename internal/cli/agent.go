package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/skiffhq/skiff/internal/agent"
	"github.com/skiffhq/skiff/internal/agent/join"
	"github.com/skiffhq/skiff/internal/apiserver"
	"github.com/skiffhq/skiff/internal/controller/nodeipam"
	"github.com/skiffhq/skiff/internal/dns"
	"github.com/skiffhq/skiff/internal/kubelet"
	"github.com/skiffhq/skiff/internal/pki"
	"github.com/skiffhq/skiff/internal/server"
)

// agentFlags are the node flags `skiff server` and `skiff agent` share.
type agentFlags struct {
	nodeName, nodeIP  string
	labels, taints    []string
	kubeletPort       int
	runtimeEndpoint   string
	mirrors, insecure []string
	clusterDNS        []string
	clusterDomain     string
}

func (a *agentFlags) add(f *pflag.FlagSet) {
	f.StringVar(&a.nodeName, "node-name", "", "node name (default: the host name)")
	f.StringVar(&a.nodeIP, "node-ip", "", "node InternalIP (default: the host's first address)")
	f.StringSliceVar(&a.labels, "node-label", nil, "label to register the node with, key=value (repeatable)")
	f.StringSliceVar(&a.taints, "register-with-taints", nil, "taint to register the node with, key=value:Effect (repeatable)")
	f.IntVar(&a.kubeletPort, "kubelet-port", kubelet.DefaultKubeletPort, "port of the kubelet's HTTPS API")
	f.StringVar(&a.runtimeEndpoint, "container-runtime-endpoint", "", "existing CRI socket to use instead of a containerd of our own (unix:///path)")
	f.StringSliceVar(&a.mirrors, "registry-mirror", nil, "registry mirror, host=URL (repeatable), e.g. docker.io=http://10.0.0.5:5000")
	f.StringSliceVar(&a.insecure, "insecure-registry", nil, "registry host pulled over plain HTTP or without TLS verification (repeatable)")
	f.StringSliceVar(&a.clusterDNS, "cluster-dns", nil, "DNS server IPs for pods (default: the cluster DNS's Service IP, or the node's resolvers with the proxy off)")
	f.StringVar(&a.clusterDomain, "cluster-domain", kubelet.DefaultClusterDomain, "cluster DNS domain")
}

// config turns the flags into an agent.Config, without credentials.
func (a *agentFlags) config(dataDir string, log *slog.Logger) (agent.Config, error) {
	cfg := agent.Config{
		DataDir: dataDir, NodeName: a.nodeName, KubeletPort: a.kubeletPort,
		RuntimeEndpoint: a.runtimeEndpoint, InsecureRegistries: a.insecure,
		ClusterDNS: a.clusterDNS, ClusterDomain: a.clusterDomain,
		Version: apiserver.Version.GitVersion, Logger: log,
	}
	if cfg.NodeName == "" {
		hn, err := os.Hostname()
		if err != nil {
			return cfg, fmt.Errorf("node name: %w", err)
		}
		cfg.NodeName = strings.ToLower(hn)
	}
	ip := a.nodeIP
	if ip == "" {
		ip = hostIP()
	}
	if cfg.NodeIP = net.ParseIP(ip); cfg.NodeIP == nil {
		return cfg, fmt.Errorf("--node-ip %q is not an IP address", ip)
	}
	cfg.Labels = map[string]string{}
	for _, l := range a.labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return cfg, fmt.Errorf("--node-label %q: want key=value", l)
		}
		cfg.Labels[k] = v
	}
	for _, t := range a.taints {
		taint, err := parseTaint(t)
		if err != nil {
			return cfg, err
		}
		cfg.Taints = append(cfg.Taints, taint)
	}
	cfg.Mirrors = map[string][]string{}
	for _, m := range a.mirrors {
		host, url, ok := strings.Cut(m, "=")
		if !ok || host == "" || url == "" {
			return cfg, fmt.Errorf("--registry-mirror %q: want host=URL", m)
		}
		cfg.Mirrors[host] = append(cfg.Mirrors[host], url)
	}
	return cfg, nil
}

// parseTaint reads key[=value]:Effect.
func parseTaint(s string) (corev1.Taint, error) {
	kv, effect, ok := strings.Cut(s, ":")
	k, v, _ := strings.Cut(kv, "=")
	t := corev1.Taint{Key: k, Value: v, Effect: corev1.TaintEffect(effect)}
	switch t.Effect {
	case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
	default:
		ok = false
	}
	if !ok || k == "" {
		return t, fmt.Errorf("--register-with-taints %q: want key[=value]:NoSchedule|PreferNoSchedule|NoExecute", s)
	}
	return t, nil
}

// nodeServices sets how a joined node reaches Services: its proxy (off
// with --disable proxy) and, through it, the cluster DNS at the kube-dns
// Service's address for the server's default service CIDR (--cluster-dns
// says otherwise). Without a proxy that address leads nowhere, so pods
// keep the node's resolvers.
func nodeServices(cfg *agent.Config, clusterCIDR string, disable []string) {
	cfg.ClusterCIDR = clusterCIDR
	cfg.DisableProxy = slices.Contains(disable, "proxy")
	if len(cfg.ClusterDNS) == 0 && !cfg.DisableProxy {
		_, cidr, _ := net.ParseCIDR(server.DefaultServiceCIDR)
		cfg.ClusterDNS = []string{dns.ServiceIP(cidr).String()}
	}
}

// hostIP is the host's first global unicast IPv4, else loopback.
func hostIP() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// withCredentials completes cfg with the node's identity from join.
func withCredentials(cfg *agent.Config, creds *join.Credentials) error {
	rc, err := clientcmd.BuildConfigFromFlags("", creds.Kubeconfig)
	if err != nil {
		return fmt.Errorf("node kubeconfig: %w", err)
	}
	rc.QPS, rc.Burst = 50, 100
	rc.ContentType, rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf", "application/vnd.kubernetes.protobuf,application/json"
	cfg.REST = rc
	cfg.ServingCert = creds.ServingCert
	cfg.ClientCAs = creds.ClientCAs
	return nil
}

// runLocalAgent runs the agent embedded in `skiff server`, with
// credentials issued straight from the cluster CA.
func runLocalAgent(ctx context.Context, cfg agent.Config, serverURL string, bundle *pki.Bundle) error {
	creds, err := join.Local(bundle, join.Config{
		Server: serverURL, Dir: filepath.Join(cfg.DataDir, "pki"), NodeName: cfg.NodeName,
		NodeIPs: []net.IP{cfg.NodeIP}, Logger: cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("agent credentials: %w", err)
	}
	if err := withCredentials(&cfg, creds); err != nil {
		return err
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func newAgentCommand() *cobra.Command {
	var (
		flags            agentFlags
		dataDir          string
		serverURL, token string
		logLevel         string
		simulate         int
		simStartDelay    time.Duration
		clusterCIDR      string
		disable          []string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Join this machine to a cluster as a node: kubelet, containerd, pod network",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := newLogger(logLevel)
			slog.SetDefault(log)
			klog.SetSlogLogger(log)
			if serverURL == "" || token == "" {
				return errors.New("--server and --token are required")
			}
			cfg, err := flags.config(dataDir, log)
			if err != nil {
				return err
			}
			nodeServices(&cfg, clusterCIDR, disable)
			if simulate > 0 {
				// All hollow nodes share one identity, joined as the
				// first node's name.
				cfg.NodeName += "-hollow"
			}
			creds, err := join.Join(cmd.Context(), join.Config{
				Server: serverURL, Token: token, Dir: filepath.Join(dataDir, "pki"), NodeName: cfg.NodeName,
				NodeIPs: []net.IP{cfg.NodeIP}, Logger: log,
			})
			if err != nil {
				return err
			}
			if err := withCredentials(&cfg, creds); err != nil {
				return err
			}
			if simulate > 0 {
				return agent.RunHollow(cmd.Context(), agent.HollowConfig{
					Count: simulate, NamePrefix: cfg.NodeName, DataDir: dataDir,
					REST: cfg.REST, ServingCert: cfg.ServingCert, ClientCAs: cfg.ClientCAs,
					StartDelay: simStartDelay, Version: cfg.Version, Logger: log,
				})
			}
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	flags.add(f)
	f.StringVar(&dataDir, "data-dir", "/var/lib/skiff-agent", "directory for the node's state")
	f.StringVar(&serverURL, "server", "", "API server URL, https://HOST:6443")
	f.StringVar(&token, "token", "", "node join token (the server's DATA_DIR/node-token)")
	f.StringVar(&clusterCIDR, "cluster-cidr", nodeipam.DefaultClusterCIDR, "the cluster's pod range (the server's --cluster-cidr)")
	f.StringSliceVar(&disable, "disable", nil, "node components not to run (proxy)")
	f.IntVar(&simulate, "simulate", 0, "run this many hollow nodes on the simulated runtime instead of a real node")
	f.DurationVar(&simStartDelay, "simulate-start-delay", 0, "how long a hollow node's sandbox or container takes to start")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return cmd
}
