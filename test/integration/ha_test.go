package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	skiffcli "github.com/skiffhq/skiff/internal/cli"
	"github.com/skiffhq/skiff/internal/etcd"
	"github.com/skiffhq/skiff/internal/etcd/snapshot"
	"github.com/skiffhq/skiff/internal/pki"
	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/internal/testutil"
)

// haLease makes a server's API endpoint Lease short, so a server that
// dies drops out of the `kubernetes` Service within the test's patience.
func haLease(c *server.Config) { c.APIServerLeaseDuration = 3 * time.Second }

// createConfigMap writes a ConfigMap through c.
func createConfigMap(t *testing.T, c kubernetes.Interface, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Data: map[string]string{"k": name}}
	if _, err := c.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create configmap %s: %v", name, err)
	}
}

// hasConfigMap reports whether c reads the ConfigMap name (with its data).
func hasConfigMap(c kubernetes.Interface, name string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cm, err := c.CoreV1().ConfigMaps("default").Get(ctx, name, metav1.GetOptions{})
	return err == nil && cm.Data["k"] == name
}

// members lists etcd's members through a server's cluster API, as an
// administrator.
func members(t *testing.T, cp *testutil.ControlPlane) server.MembersResponse {
	t.Helper()
	c, err := server.NewClusterClientForKubeconfig(cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.Members(ctx)
	if err != nil {
		t.Fatalf("members: %v", err)
	}
	return resp
}

func memberNames(resp server.MembersResponse) []string {
	var out []string
	for _, m := range resp.Members {
		role := ""
		if m.Learner {
			role = "(learner)"
		}
		out = append(out, m.Name+role)
	}
	slices.Sort(out)
	return out
}

func apiAddr(cp *testutil.ControlPlane) string {
	_, port, _ := net.SplitHostPort(cp.Server().Addr())
	return "127.0.0.1:" + port
}

// TestHAServers forms a cluster of three servers, each with its own
// embedded etcd member, API server, scheduler and controllers: a write
// through one is read through the others; with the first stopped the
// other two still serve; it comes back; a removed server stops, leaves
// the `kubernetes` endpoints, and refuses to start on its old data.
func TestHAServers(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	a := testutil.StartClusterInit(t, haLease)
	t.Logf("a (cluster-init) ready in %v", time.Since(begin))
	step := time.Now()
	b := testutil.StartJoiningControlPlane(t, a, haLease)
	t.Logf("b joined in %v", time.Since(step))
	step = time.Now()
	// Through b: any server can take a joiner.
	c := testutil.StartJoiningControlPlane(t, b, haLease)
	t.Logf("c joined in %v", time.Since(step))

	names := []string{a.Server().EtcdMemberName(), b.Server().EtcdMemberName(), c.Server().EtcdMemberName()}
	want := slices.Clone(names)
	slices.Sort(want)
	resp := members(t, c)
	if got := memberNames(resp); !slices.Equal(got, want) {
		t.Fatalf("etcd members = %v, want voters %v", got, want)
	}
	if !slices.Contains(names, resp.Leader) {
		t.Errorf("etcd leader = %q, want one of %v", resp.Leader, names)
	}
	for _, cp := range []*testutil.ControlPlane{b, c} {
		for _, f := range []string{"tls/ca.key", "node-token", "tls/etcd/member.crt"} {
			if _, err := os.Stat(filepath.Join(cp.DataDir, f)); err != nil {
				t.Errorf("joined server lacks %s: %v", f, err)
			}
		}
	}
	if b.Server().Bundle().NodeToken != a.Server().Bundle().NodeToken {
		t.Error("joined server has its own node token, want the cluster's")
	}

	t.Run("write through one, read through the others", func(t *testing.T) {
		createConfigMap(t, a.Client, "from-a")
		for _, cp := range []*testutil.ControlPlane{b, c} {
			testutil.Eventually(t, 10*time.Second, func() bool { return hasConfigMap(cp.Client, "from-a") }, "from-a through %s", cp.Server().Addr())
		}
		wantEps := []string{apiAddr(a), apiAddr(b), apiAddr(c)}
		slices.Sort(wantEps)
		testutil.Eventually(t, 15*time.Second, func() bool { return slices.Equal(apiEndpoints(c.Client), wantEps) },
			"kubernetes endpoints = %v, want %v", apiEndpoints(c.Client), wantEps)
	})

	t.Run("two of three serve", func(t *testing.T) {
		a.Stop()
		step := time.Now()
		createConfigMap(t, b.Client, "from-b")
		testutil.Eventually(t, 10*time.Second, func() bool { return hasConfigMap(c.Client, "from-b") }, "from-b through c")
		t.Logf("write and read with a down in %v", time.Since(step))
		step = time.Now()
		a.Restart()
		t.Logf("a back in %v", time.Since(step))
		testutil.Eventually(t, 10*time.Second, func() bool { return hasConfigMap(a.Client, "from-b") }, "from-b through a after its restart")
	})

	t.Run("snapshot of a member over TLS", func(t *testing.T) {
		var out bytes.Buffer
		cmd := skiffcli.NewRoot(time.Now())
		cmd.SetOut(&out)
		cmd.SetArgs([]string{"etcd-snapshot", "save", "--data-dir", b.DataDir, "--name", "ha",
			"--etcd-client-port", fmt.Sprint(b.ServerConfig().EtcdClientPort)})
		if err := cmd.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("etcd-snapshot save: %v", err)
		}
		infos, err := snapshot.List(server.SnapshotDir(b.DataDir))
		if err != nil || len(infos) != 1 || infos[0].Name != "ha" {
			t.Fatalf("snapshots = %+v, %v; want one called ha (output %q)", infos, err, out.String())
		}
	})

	t.Run("remove a member", func(t *testing.T) {
		cName := c.Server().EtcdMemberName()
		step := time.Now()
		var out bytes.Buffer
		cmd := skiffcli.NewRoot(time.Now())
		cmd.SetOut(&out)
		cmd.SetArgs([]string{"etcd", "member-remove", cName, "--kubeconfig", a.Kubeconfig})
		if err := cmd.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("etcd member-remove: %v", err)
		}
		t.Logf("removed in %v: %s", time.Since(step), strings.TrimSpace(out.String()))
		err := c.WaitStopped(30 * time.Second)
		if !errors.Is(err, etcd.ErrRemoved) {
			t.Errorf("removed server stopped with %v, want ErrRemoved", err)
		}
		want := []string{a.Server().EtcdMemberName(), b.Server().EtcdMemberName()}
		slices.Sort(want)
		if got := memberNames(members(t, a)); !slices.Equal(got, want) {
			t.Errorf("members after removal = %v, want %v", got, want)
		}
		wantEps := []string{apiAddr(a), apiAddr(b)}
		slices.Sort(wantEps)
		// Well within the Lease's 3 s: the removal deletes it.
		testutil.Eventually(t, 2*time.Second, func() bool { return slices.Equal(apiEndpoints(a.Client), wantEps) },
			"kubernetes endpoints = %v, want %v", apiEndpoints(a.Client), wantEps)
		leases, err := a.Client.CoordinationV1().Leases("kube-system").List(context.Background(), metav1.ListOptions{LabelSelector: server.APIServerLabel + "=true"})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range leases.Items {
			if *l.Spec.HolderIdentity == apiAddr(c) {
				t.Errorf("the removed server's Lease %s is still there", l.Name)
			}
		}
		createConfigMap(t, b.Client, "after-removal")

		err = c.Start()
		if !errors.Is(err, etcd.ErrRemoved) || !strings.Contains(err.Error(), "was removed from the cluster") {
			t.Errorf("restart of the removed server: err = %v, want ErrRemoved with an explanation", err)
		}
	})
	t.Logf("whole test %v", time.Since(begin))
}

// TestHAJoinRefused checks who may join: a token for another cluster is
// refused before anything is sent, and the cluster API admits the token
// and administrators but not nodes or anonymous callers.
func TestHAJoinRefused(t *testing.T) {
	t.Parallel()
	a := testutil.StartClusterInit(t, func(c *server.Config) { c.Disable = append(c.Disable, "controller-manager", "scheduler") })
	other := testutil.StartControlPlane(t, func(c *server.Config) { c.Disable = append(c.Disable, "controller-manager", "scheduler") })

	t.Run("token of another cluster", func(t *testing.T) {
		srv, err := server.New(server.Config{
			DataDir: t.TempDir(), BindAddress: "127.0.0.1", AdvertiseAddress: "127.0.0.1",
			HTTPSPort: testutil.FreePort(t), EtcdClientPort: testutil.FreePort(t), EtcdPeerPort: testutil.FreePort(t),
			ClusterDNSPort: 0, Logger: testutil.Logger(),
			ClusterConfig: server.ClusterConfig{JoinURL: a.Server().URL(), Token: other.Server().Bundle().NodeToken},
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Run(ctx); !errors.Is(err, pki.ErrTokenCAMismatch) {
			t.Errorf("join with another cluster's token: err = %v, want ErrTokenCAMismatch", err)
		}
	})

	bundle := a.Server().Bundle()
	nodeCert, nodeKey, err := bundle.IssueClientCert("system:node:n1", []string{"system:nodes"})
	if err != nil {
		t.Fatal(err)
	}
	nodePair, err := tls.X509KeyPair(nodeCert, nodeKey)
	if err != nil {
		t.Fatal(err)
	}
	adminCert, adminKey, err := bundle.IssueClientCert("admin", []string{pki.SystemMastersGroup})
	if err != nil {
		t.Fatal(err)
	}
	adminPair, err := tls.X509KeyPair(adminCert, adminKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		method string
		path   string
		token  string
		cert   *tls.Certificate
		want   int
	}{
		{"anonymous bootstrap", http.MethodPost, server.ServerBootstrapPath, "", nil, http.StatusUnauthorized},
		{"node bootstrap", http.MethodPost, server.ServerBootstrapPath, "", &nodePair, http.StatusForbidden},
		{"token bootstrap", http.MethodPost, server.ServerBootstrapPath, bundle.NodeToken, nil, http.StatusOK},
		{"wrong token bootstrap", http.MethodPost, server.ServerBootstrapPath, other.Server().Bundle().NodeToken, nil, http.StatusUnauthorized},
		{"node members", http.MethodGet, server.EtcdMembersPath, "", &nodePair, http.StatusForbidden},
		{"admin members", http.MethodGet, server.EtcdMembersPath, "", &adminPair, http.StatusOK},
		{"token removes", http.MethodDelete, server.EtcdMembersPath + "/x", bundle.NodeToken, nil, http.StatusForbidden},
		{"admin removes nobody", http.MethodDelete, server.EtcdMembersPath + "/nobody", "", &adminPair, http.StatusNotFound},
		{"admin removes the last member", http.MethodDelete, server.EtcdMembersPath + "/" + a.Server().EtcdMemberName(), "", &adminPair, http.StatusConflict},
		{"unknown path", http.MethodGet, server.ClusterAPIPrefix + "nope", "", &adminPair, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: bundle.CAPool, MinVersion: tls.VersionTLS12}
			if tc.cert != nil {
				cfg.Certificates = []tls.Certificate{*tc.cert}
			}
			hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
			defer hc.CloseIdleConnections()
			req, err := http.NewRequest(tc.method, a.Server().URL()+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

// TestEtcdSnapshotRestore saves a snapshot with `skiff etcd-snapshot
// save`, restores it into a fresh data directory with --cluster-reset
// --cluster-reset-restore-path, and finds there exactly what was there
// when the snapshot was taken; a restart that still carries the flags
// does not restore again. Scheduled snapshots keep their retention.
func TestEtcdSnapshotRestore(t *testing.T) {
	t.Parallel()
	src := testutil.StartControlPlane(t, func(c *server.Config) {
		c.EtcdSnapshotInterval = 300 * time.Millisecond
		c.EtcdSnapshotRetention = 2
	})
	createConfigMap(t, src.Client, "before-snapshot")

	var out bytes.Buffer
	cmd := skiffcli.NewRoot(time.Now())
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"etcd-snapshot", "save", "--data-dir", src.DataDir, "--etcd-client-port", fmt.Sprint(src.ServerConfig().EtcdClientPort)})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("etcd-snapshot save: %v", err)
	}
	var saved string
	infos, err := snapshot.List(server.SnapshotDir(src.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range infos {
		if s.Name == "on-demand" {
			saved = s.Path
		}
	}
	if saved == "" || !strings.Contains(out.String(), saved) {
		t.Fatalf("no on-demand snapshot among %+v (output %q)", infos, out.String())
	}
	createConfigMap(t, src.Client, "after-snapshot")

	t.Run("scheduled snapshots keep their retention", func(t *testing.T) {
		scheduled := server.ScheduledSnapshotPrefix + src.Server().EtcdMemberName()
		list := func() []string {
			infos, _ := snapshot.List(server.SnapshotDir(src.DataDir))
			var out []string
			for _, s := range infos {
				if s.Name == scheduled {
					out = append(out, s.Path)
				}
			}
			return out
		}
		// Watch until five have been taken: past the retention of 2, so
		// the first ones must have been pruned.
		seen := map[string]bool{}
		var first string
		testutil.Eventually(t, 20*time.Second, func() bool {
			for _, p := range list() {
				if first == "" {
					first = p
				}
				seen[p] = true
			}
			return len(seen) >= 5
		}, "%d scheduled snapshots seen, want 5", len(seen))
		// A new one is saved before the oldest goes, so 3 exist for a
		// moment; at rest there are 2.
		testutil.Eventually(t, 5*time.Second, func() bool { return len(list()) == 2 }, "scheduled snapshots %v, want 2", list())
		if _, err := os.Stat(first); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the first scheduled snapshot %s was kept past the retention", first)
		}
		if _, err := os.Stat(saved); err != nil {
			t.Errorf("retention pruned the on-demand snapshot: %v", err)
		}
	})
	src.Stop()

	restore := func(c *server.Config) {
		c.ClusterReset = true
		c.ClusterResetRestorePath = saved
	}
	begin := time.Now()
	dst := testutil.StartControlPlane(t, restore)
	t.Logf("restored server ready in %v", time.Since(begin))
	if !hasConfigMap(dst.Client, "before-snapshot") {
		t.Error("object from before the snapshot missing after restore")
	}
	if _, err := dst.Client.CoreV1().ConfigMaps("default").Get(context.Background(), "after-snapshot", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("object made after the snapshot: err = %v, want NotFound", err)
	}
	createConfigMap(t, dst.Client, "after-restore")
	dst.Restart() // the flags are still set
	if !hasConfigMap(dst.Client, "after-restore") {
		t.Error("a restart with the reset flags still set restored the snapshot again, losing later writes")
	}
	if !hasConfigMap(dst.Client, "before-snapshot") {
		t.Error("object from before the snapshot missing after restart")
	}
}

// TestClusterInitAfterSingleServer turns a server that ran alone into the
// first of several by restarting it with --cluster-init: its data stays,
// its etcd member now advertises a TLS peer URL, and another server can
// join it.
func TestClusterInitAfterSingleServer(t *testing.T) {
	t.Parallel()
	a := testutil.StartControlPlane(t)
	createConfigMap(t, a.Client, "while-alone")
	a.RestartWith(func(c *server.Config) { c.ClusterInit = true })
	if !hasConfigMap(a.Client, "while-alone") {
		t.Fatal("data lost when the server became the first of several")
	}
	resp := members(t, a)
	if len(resp.Members) != 1 || !strings.HasPrefix(resp.Members[0].PeerURLs[0], "https://") {
		t.Fatalf("members = %+v, want one advertising a TLS peer URL", resp.Members)
	}
	b := testutil.StartJoiningControlPlane(t, a)
	if !hasConfigMap(b.Client, "while-alone") {
		t.Error("joined server does not read the first server's data")
	}
	if got := memberNames(members(t, b)); len(got) != 2 {
		t.Errorf("members = %v, want two voters", got)
	}
}

// TestClusterReset recovers a cluster of two that lost a server for good:
// the survivor alone has no quorum until --cluster-reset makes it a
// single-member cluster with its data; the lost server then joins again
// with empty etcd data, and a restart that still carries the flag does
// not throw it out again.
func TestClusterReset(t *testing.T) {
	t.Parallel()
	a := testutil.StartClusterInit(t, haLease)
	b := testutil.StartJoiningControlPlane(t, a, haLease)
	createConfigMap(t, b.Client, "before-reset")
	a.Stop()
	b.Stop()

	a.RestartWith(func(c *server.Config) { c.ClusterReset = true })
	if !hasConfigMap(a.Client, "before-reset") {
		t.Fatal("data lost by the reset")
	}
	if got := memberNames(members(t, a)); len(got) != 1 || got[0] != a.Server().EtcdMemberName() {
		t.Fatalf("members after reset = %v, want only %s", got, a.Server().EtcdMemberName())
	}

	if err := os.RemoveAll(filepath.Join(b.DataDir, "etcd")); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatalf("rejoin: %v", err)
	}
	if !hasConfigMap(b.Client, "before-reset") {
		t.Error("rejoined server does not read the cluster's data")
	}
	a.Restart() // --cluster-reset still set
	if got := memberNames(members(t, a)); len(got) != 2 {
		t.Errorf("members after a restart with the flag still set = %v, want both servers", got)
	}
	createConfigMap(t, a.Client, "after-reset")
	testutil.Eventually(t, 10*time.Second, func() bool { return hasConfigMap(b.Client, "after-reset") }, "after-reset through b")
}
