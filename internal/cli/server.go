package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/skiffhq/skiff/internal/agent"
	"github.com/skiffhq/skiff/internal/controller/nodeipam"
	"github.com/skiffhq/skiff/internal/controller/nodelifecycle"
	"github.com/skiffhq/skiff/internal/controller/podgc"
	"github.com/skiffhq/skiff/internal/dns"
	"github.com/skiffhq/skiff/internal/server"
)

func newServerCommand(start time.Time) *cobra.Command {
	cfg := server.Config{StartTime: start}
	var logLevel string
	var disableAgent bool
	var node agentFlags
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a control plane: embedded etcd, API server and controllers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Upstream's flag: zero or less turns terminated-pod GC off;
			// in Config zero means the default.
			if cfg.TerminatedPodGCThreshold <= 0 {
				cfg.TerminatedPodGCThreshold = -1
			}
			// One cluster domain for the DNS server and the pods'
			// resolv.conf.
			cfg.ClusterDomain = node.clusterDomain
			cfg.Logger = newLogger(logLevel)
			slog.SetDefault(cfg.Logger)
			// client-go (leader election, informers) logs through klog.
			klog.SetSlogLogger(cfg.Logger)
			s, err := server.New(cfg)
			if err != nil {
				return fmt.Errorf("server: %w", err)
			}
			if disableAgent {
				return s.Run(cmd.Context())
			}
			if node.nodeIP == "" {
				node.nodeIP = s.AdvertiseAddress()
			}
			acfg, err := node.config(filepath.Join(cfg.DataDir, "agent"), cfg.Logger)
			if err != nil {
				return err
			}
			acfg.ClusterCIDR = cfg.ClusterCIDR
			acfg.DisableProxy = slices.Contains(cfg.Disable, "proxy")
			return runWithAgent(cmd.Context(), s, acfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", server.DefaultDataDir, "directory for etcd data, certificates and kubeconfigs")
	f.StringVar(&cfg.BindAddress, "bind-address", "0.0.0.0", "address the API server listens on")
	f.IntVar(&cfg.HTTPSPort, "https-port", server.DefaultHTTPSPort, "port the API server listens on (HTTPS)")
	f.StringVar(&cfg.AdvertiseAddress, "advertise-address", "", "address other hosts reach this server at (default: the host's first address)")
	f.StringSliceVar(&cfg.TLSSANs, "tls-san", nil, "extra names or IPs for the serving certificate")
	f.StringSliceVar(&cfg.EtcdEndpoints, "etcd-endpoints", nil, "use this external etcd instead of the embedded one")
	f.IntVar(&cfg.EtcdClientPort, "etcd-client-port", 2379, "embedded etcd client port (on 127.0.0.1)")
	f.IntVar(&cfg.EtcdPeerPort, "etcd-peer-port", 2380, "embedded etcd peer port")
	f.StringVar(&cfg.ServiceCIDR, "service-cidr", server.DefaultServiceCIDR, "IP range for Service cluster IPs")
	f.StringVar(&cfg.NodePortRange, "service-node-port-range", server.DefaultNodePorts, "port range for NodePort Services")
	f.StringSliceVar(&cfg.Disable, "disable", nil, "components not to run (scheduler, controller-manager, dns, proxy)")
	f.StringSliceVar(&cfg.DisableControllers, "disable-controllers", nil, "single controllers not to run (e.g. namespace)")
	f.DurationVar(&cfg.NodeMonitorGracePeriod, "node-monitor-grace-period", nodelifecycle.DefaultGracePeriod, "how long a node may be silent before it is marked unreachable and tainted")
	f.Int64Var(&cfg.DefaultNotReadyTolerationSeconds, "default-not-ready-toleration-seconds", server.DefaultTolerationSeconds, "tolerationSeconds of the not-ready:NoExecute toleration added to pods that have none")
	f.Int64Var(&cfg.DefaultUnreachableTolerationSeconds, "default-unreachable-toleration-seconds", server.DefaultTolerationSeconds, "tolerationSeconds of the unreachable:NoExecute toleration added to pods that have none")
	f.StringVar(&cfg.ClusterCIDR, "cluster-cidr", nodeipam.DefaultClusterCIDR, "IP range for pod networks; each node gets a /24 of it")
	f.IntVar(&cfg.TerminatedPodGCThreshold, "terminated-pod-gc-threshold", podgc.DefaultTerminatedPodThreshold, "terminated pods kept before the oldest are deleted (0 or less: never)")
	f.IntVar(&cfg.ClusterDNSPort, "cluster-dns-port", dns.DefaultPort, "port the cluster DNS listens on, UDP and TCP, at --bind-address (0: any free port); pods reach it through the kube-dns Service on port 53")
	f.BoolVar(&disableAgent, "disable-agent", false, "run the control plane without a node agent")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	addClusterFlags(f, &cfg.ClusterConfig)
	node.add(f)
	return cmd
}

// runWithAgent runs the control plane and, once it is ready, the node
// agent beside it. The agent stops first, while the API still answers.
func runWithAgent(ctx context.Context, s *server.Server, acfg agent.Config) error {
	agentCtx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	serverCtx, stopServer := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServer()
	serverErr := make(chan error, 1)
	go func() { serverErr <- s.Run(serverCtx) }()
	select {
	case <-s.Ready():
	case err := <-serverErr:
		return err
	case <-ctx.Done():
		stopServer()
		return <-serverErr
	}
	// Pods resolve names through the cluster DNS at its Service IP,
	// which the node's proxy forwards to the server's listener.
	if ip := s.ClusterDNSIP(); len(acfg.ClusterDNS) == 0 && ip != nil && !acfg.DisableProxy {
		acfg.ClusterDNS = []string{ip.String()}
	}
	agentErr := make(chan error, 1)
	go func() { agentErr <- runLocalAgent(agentCtx, acfg, s.URL(), s.Bundle()) }()
	var err error
	select {
	case err = <-agentErr:
		if err != nil {
			err = fmt.Errorf("agent: %w", err)
		}
	case err = <-serverErr:
		stopAgent()
		<-agentErr
		return err
	case <-ctx.Done():
		stopAgent()
		err = <-agentErr
	}
	stopServer()
	return errors.Join(err, <-serverErr)
}
