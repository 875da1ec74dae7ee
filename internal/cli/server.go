package cli

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/skiffhq/skiff/internal/controller/nodeipam"
	"github.com/skiffhq/skiff/internal/controller/nodelifecycle"
	"github.com/skiffhq/skiff/internal/controller/podgc"
	"github.com/skiffhq/skiff/internal/server"
)

func newServerCommand(start time.Time) *cobra.Command {
	cfg := server.Config{StartTime: start}
	var logLevel string
	var disableAgent bool
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
			cfg.Logger = newLogger(logLevel)
			slog.SetDefault(cfg.Logger)
			// client-go (leader election, informers) logs through klog.
			klog.SetSlogLogger(cfg.Logger)
			if !disableAgent {
				cfg.Logger.Warn("the node agent is not built yet; running the control plane only (as with --disable-agent)")
			}
			s, err := server.New(cfg)
			if err != nil {
				return fmt.Errorf("server: %w", err)
			}
			return s.Run(cmd.Context())
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
	f.StringSliceVar(&cfg.Disable, "disable", nil, "components not to run (scheduler, controller-manager)")
	f.StringSliceVar(&cfg.DisableControllers, "disable-controllers", nil, "single controllers not to run (e.g. namespace)")
	f.DurationVar(&cfg.NodeMonitorGracePeriod, "node-monitor-grace-period", nodelifecycle.DefaultGracePeriod, "how long a node may be silent before it is marked unreachable and tainted")
	f.Int64Var(&cfg.DefaultNotReadyTolerationSeconds, "default-not-ready-toleration-seconds", server.DefaultTolerationSeconds, "tolerationSeconds of the not-ready:NoExecute toleration added to pods that have none")
	f.Int64Var(&cfg.DefaultUnreachableTolerationSeconds, "default-unreachable-toleration-seconds", server.DefaultTolerationSeconds, "tolerationSeconds of the unreachable:NoExecute toleration added to pods that have none")
	f.StringVar(&cfg.ClusterCIDR, "cluster-cidr", nodeipam.DefaultClusterCIDR, "IP range for pod networks; each node gets a /24 of it")
	f.IntVar(&cfg.TerminatedPodGCThreshold, "terminated-pod-gc-threshold", podgc.DefaultTerminatedPodThreshold, "terminated pods kept before the oldest are deleted (0 or less: never)")
	f.BoolVar(&disableAgent, "disable-agent", false, "run the control plane without a node agent")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return cmd
}
