package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/skiffhq/skiff/internal/etcd"
	"github.com/skiffhq/skiff/internal/etcd/snapshot"
	"github.com/skiffhq/skiff/internal/pki"
	"github.com/skiffhq/skiff/internal/server"
)

// addClusterFlags adds the flags about servers sharing etcd, and about
// backing it up and restoring it, to `skiff server`.
func addClusterFlags(f *pflag.FlagSet, c *server.ClusterConfig) {
	f.BoolVar(&c.ClusterInit, "cluster-init", false, "start the first server of a cluster others join with --server: etcd serves peers on the advertise address over TLS")
	f.StringVar(&c.JoinURL, "server", "", "join the cluster of the server at this URL (https://HOST:6443) as another server; needs --token")
	f.StringVar(&c.Token, "token", "", "the cluster's node token (a server's DATA_DIR/node-token), with --server")
	f.StringVar(&c.EtcdMemberName, "etcd-member-name", "", "this server's etcd member name (default: \"skiff\" alone, else host name and a random suffix)")
	f.DurationVar(&c.EtcdSnapshotInterval, "etcd-snapshot-schedule-interval", 12*time.Hour, "how often to save an etcd snapshot in DATA_DIR/snapshots (0: never)")
	f.IntVar(&c.EtcdSnapshotRetention, "etcd-snapshot-retention", server.DefaultSnapshotRetention, "how many scheduled etcd snapshots to keep")
	f.BoolVar(&c.ClusterReset, "cluster-reset", false, "restart etcd as a single-member cluster keeping its data (other servers must then rejoin with empty etcd data)")
	f.StringVar(&c.ClusterResetRestorePath, "cluster-reset-restore-path", "", "with --cluster-reset: restore etcd from this snapshot file instead (the old data is moved aside)")
}

// newEtcdCommand is `skiff etcd`: the members of a cluster of servers.
func newEtcdCommand() *cobra.Command {
	kubeconfig := filepath.Join(server.DefaultDataDir, pki.AdminKubeconfig)
	timeout := time.Minute
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "List or remove the servers (etcd members) of a cluster",
	}
	cmd.PersistentFlags().StringVar(&kubeconfig, "kubeconfig", kubeconfig, "an admin kubeconfig of the cluster")
	cmd.PersistentFlags().DurationVar(&timeout, "timeout", timeout, "how long to keep trying while the cluster settles after a change")

	list := &cobra.Command{
		Use:   "member-list",
		Short: "List etcd members",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := server.NewClusterClientForKubeconfig(kubeconfig)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			resp, err := c.Members(ctx)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tID\tROLE\tPEER URLS")
			for _, m := range resp.Members {
				role := "voter"
				switch {
				case m.Learner:
					role = "learner"
				case resp.Leader != "" && m.Name == resp.Leader:
					role = "leader"
				}
				name := m.Name
				if name == resp.Self {
					name += " (this server)"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%v\n", name, m.IDHex, role, m.PeerURLs)
			}
			return w.Flush()
		},
	}
	remove := &cobra.Command{
		Use:   "member-remove NAME",
		Short: "Remove a server from the cluster: its etcd member and its API server endpoint",
		Long: "Remove a server from the cluster: etcd forgets its member (the server then stops, and refuses to\n" +
			"start again on its old etcd data) and the `kubernetes` Service stops listing its API server.\n" +
			"Run it against any other server. To bring the host back as a server, delete its DATA_DIR/etcd\n" +
			"and start it with --server and --token.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := server.NewClusterClientForKubeconfig(kubeconfig)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			m, err := removeMember(ctx, c, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed etcd member %s (%s)\n", args[0], m.IDHex)
			return nil
		},
	}
	cmd.AddCommand(list, remove)
	return cmd
}

// removeMember removes name, trying again while etcd protects its quorum
// right after a change.
func removeMember(ctx context.Context, c *server.ClusterClient, name string) (etcd.Member, error) {
	for {
		m, err := c.RemoveMember(ctx, name)
		var ce *server.ClusterAPIError
		if err == nil || !errors.As(err, &ce) || !ce.Retryable() {
			return m, err
		}
		select {
		case <-ctx.Done():
			return m, fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-time.After(time.Second):
		}
	}
}

// newEtcdSnapshotCommand is `skiff etcd-snapshot`: backups of the local
// server's etcd.
func newEtcdSnapshotCommand() *cobra.Command {
	dataDir := server.DefaultDataDir
	port := 2379
	cmd := &cobra.Command{
		Use:   "etcd-snapshot",
		Short: "Save or list snapshots of the local server's etcd",
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", dataDir, "the server's data directory; snapshots go to DATA_DIR/snapshots")

	name := "on-demand"
	save := &cobra.Command{
		Use:   "save",
		Short: "Save a snapshot of etcd as DATA_DIR/snapshots/NAME-TIMESTAMP.db",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := localEtcdClient(cmd.Context(), dataDir, port)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Minute)
			defer cancel()
			info, err := snapshot.Save(ctx, c, server.SnapshotDir(dataDir), name, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "saved %s (%d bytes)\n", info.Path, info.Size)
			return nil
		},
	}
	save.Flags().StringVar(&name, "name", name, "the snapshot's name; a timestamp is appended")
	save.Flags().IntVar(&port, "etcd-client-port", port, "the local etcd's client port (the server's --etcd-client-port)")

	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the snapshots in DATA_DIR/snapshots",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			infos, err := snapshot.List(server.SnapshotDir(dataDir))
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tCREATED\tSIZE\tPATH")
			for _, s := range infos {
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", s.Name, s.Created.UTC().Format(time.RFC3339), s.Size, s.Path)
			}
			return w.Flush()
		},
	}
	cmd.AddCommand(save, ls)
	return cmd
}

// localEtcdClient connects to the embedded etcd of the server with data
// directory dataDir: over TLS with the server's etcd client certificate
// once it is one of several, else over plain HTTP on the loopback.
func localEtcdClient(ctx context.Context, dataDir string, port int) (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:   []string{"http://127.0.0.1:" + strconv.Itoa(port)},
		DialTimeout: 5 * time.Second,
		Context:     ctx,
		Logger:      zap.NewNop(),
	}
	if pki.HasEtcdTLS(dataDir) {
		paths := pki.EtcdTLSPaths(dataDir)
		pair, err := tls.LoadX509KeyPair(paths.ClientCert, paths.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("etcd client certificate: %w", err)
		}
		caPEM, err := os.ReadFile(paths.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cluster CA: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("cluster CA %s: no certificate", paths.CAFile)
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, MinVersion: tls.VersionTLS12}
		cfg.Endpoints = []string{"https://127.0.0.1:" + strconv.Itoa(port)}
	}
	c, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return c, nil
}
