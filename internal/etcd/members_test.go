package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/skiffhq/skiff/internal/pki"
)

// tlsCluster is the PKI of a test cluster: one CA, and per member the
// credentials a skiff server would have.
type tlsCluster struct {
	t      *testing.T
	bundle *pki.Bundle
}

func newTLSCluster(t *testing.T) *tlsCluster {
	t.Helper()
	b, err := pki.Ensure(pki.Config{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return &tlsCluster{t: t, bundle: b}
}

// memberConfig is a TLS member called name on fresh ports, joining
// initialCluster when it is not empty.
func (tc *tlsCluster) memberConfig(name string) Config {
	t := tc.t
	t.Helper()
	paths, err := tc.bundle.EnsureEtcdTLS([]string{"127.0.0.1"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	creds := &TLS{CertFile: paths.MemberCert, KeyFile: paths.MemberKey, CAFile: paths.CAFile}
	peer := *creds
	peer.AllowedCNs = []string{pki.EtcdMemberCN}
	client := *creds
	client.AllowedCNs = []string{pki.EtcdMemberCN, pki.EtcdClientCN}
	return Config{
		Name:              name,
		DataDir:           filepath.Join(t.TempDir(), name),
		ListenClientURL:   fmt.Sprintf("https://127.0.0.1:%d", freePort(t)),
		ListenPeerURL:     fmt.Sprintf("https://127.0.0.1:%d", freePort(t)),
		PeerTLS:           &peer,
		ClientTLS:         &client,
		HeartbeatInterval: 50 * time.Millisecond,
		ElectionTimeout:   500 * time.Millisecond,
		Logger:            testLog(),
	}
}

func testLog() *slog.Logger {
	if os.Getenv("ETCD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

// clientTLS returns a TLS client configuration for the certificate
// issued to cn, trusting the cluster CA.
func (tc *tlsCluster) clientTLS(cn string) *tls.Config {
	certPEM, keyPEM, err := tc.bundle.IssueClientCert(cn, nil)
	if err != nil {
		tc.t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		tc.t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: tc.bundle.CAPool, MinVersion: tls.VersionTLS12}
}

// retry calls f until it succeeds, fails for a reason other than a
// cluster settling after a change, or 30 s pass.
func retry(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil || !Retryable(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startMember(t *testing.T, ctx context.Context, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatalf("start %s: %v", cfg.Name, err)
	}
	t.Cleanup(s.Close)
	return s
}

// join adds a member called name to the cluster through via, starts it
// and promotes it, as a joining skiff server does.
func join(t *testing.T, ctx context.Context, tc *tlsCluster, via *Server, name string) *Server {
	t.Helper()
	cfg := tc.memberConfig(name)
	var added Member
	var members []Member
	err := retry(ctx, func() (err error) {
		added, members, err = AddLearner(ctx, via.Client(), name, cfg.ListenPeerURL)
		return err
	})
	if err != nil {
		t.Fatalf("add %s: %v", name, err)
	}
	if !added.Learner {
		t.Errorf("%s added as a voter, want a learner", name)
	}
	cfg.Join = true
	if cfg.InitialCluster, err = InitialCluster(members); err != nil {
		t.Fatal(err)
	}
	s := startMember(t, ctx, cfg)
	if s.MemberID() != added.ID {
		t.Errorf("%s started as member %x, want the added %x", name, s.MemberID(), added.ID)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := Promote(pctx, s.Client(), added.ID, 100*time.Millisecond); err != nil {
		t.Fatalf("promote %s: %v", name, err)
	}
	return s
}

// TestClusterMembership grows a TLS cluster to three members one at a
// time, reads through one what was written through another, refuses
// clients the CA signed for others, and removes a member, which then
// stops, and refuses to start again, with ErrRemoved.
func TestClusterMembership(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tc := newTLSCluster(t)

	begin := time.Now()
	a := startMember(t, ctx, tc.memberConfig("a"))
	b := join(t, ctx, tc, a, "b")

	t.Run("one join at a time", func(t *testing.T) {
		pending := tc.memberConfig("pending")
		if err := retry(ctx, func() error {
			_, _, err := AddLearner(ctx, a.Client(), "pending", pending.ListenPeerURL)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		other := tc.memberConfig("other")
		if _, _, err := AddLearner(ctx, b.Client(), "other", other.ListenPeerURL); !errors.Is(err, ErrJoinInProgress) {
			t.Errorf("second concurrent join: err = %v, want ErrJoinInProgress", err)
		}
		// The same joiner trying again replaces its unfinished member.
		if err := retry(ctx, func() error {
			_, _, err := AddLearner(ctx, a.Client(), "pending", pending.ListenPeerURL)
			return err
		}); err != nil {
			t.Errorf("retried join: %v", err)
		}
		members, err := ListMembers(ctx, a.Client())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range members {
			if m.Learner {
				if _, err := a.Client().MemberRemove(ctx, m.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
	t.Run("existing voter and taken name", func(t *testing.T) {
		if _, _, err := AddLearner(ctx, a.Client(), "b2", b.PeerURL()); !errors.Is(err, ErrAlreadyMember) {
			t.Errorf("peer URL of b: err = %v, want ErrAlreadyMember", err)
		}
		if _, _, err := AddLearner(ctx, a.Client(), "b", "https://127.0.0.1:1"); !errors.Is(err, ErrNameTaken) {
			t.Errorf("name of b: err = %v, want ErrNameTaken", err)
		}
	})

	c := join(t, ctx, tc, b, "c")
	t.Logf("three members in %v", time.Since(begin))

	members, err := ListMembers(ctx, c.Client())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range members {
		if m.Learner {
			t.Errorf("member %s is still a learner", m.Name)
		}
		if !strings.HasPrefix(m.PeerURLs[0], "https://") {
			t.Errorf("member %s peer URL %v, want https", m.Name, m.PeerURLs)
		}
		names = append(names, m.Name)
	}
	if got := strings.Join(names, ","); got != "a,b,c" {
		t.Fatalf("members = %s, want a,b,c", got)
	}

	if _, err := a.Client().Put(ctx, "/k", "from-a"); err != nil {
		t.Fatal(err)
	}
	if resp, err := c.Client().Get(ctx, "/k"); err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "from-a" {
		t.Fatalf("read through c = %v, %v; want from-a", resp, err)
	}

	t.Run("client certificates", func(t *testing.T) {
		for _, tt := range []struct {
			cn     string
			wantOK bool
		}{
			{pki.EtcdClientCN, true},
			{"system:node:evil", false},
			{"admin", false},
		} {
			t.Run(tt.cn, func(t *testing.T) {
				cl, err := clientv3.New(clientv3.Config{Endpoints: a.Endpoints(), TLS: tc.clientTLS(tt.cn), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
				if err != nil {
					t.Fatal(err)
				}
				defer cl.Close()
				gctx, done := context.WithTimeout(ctx, time.Second)
				defer done()
				_, err = cl.Get(gctx, "/k")
				if (err == nil) != tt.wantOK {
					t.Errorf("get as %q: err = %v, want ok=%v", tt.cn, err, tt.wantOK)
				}
			})
		}
	})

	t.Run("remove", func(t *testing.T) {
		if _, err := RemoveMember(ctx, a.Client(), "nobody"); !errors.Is(err, ErrNoSuchMember) {
			t.Errorf("remove nobody: err = %v, want ErrNoSuchMember", err)
		}
		cfg := c.cfg
		if err := retry(ctx, func() error { _, err := RemoveMember(ctx, a.Client(), "c"); return err }); err != nil {
			t.Fatal(err)
		}
		select {
		case <-c.Done():
		case <-time.After(20 * time.Second):
			t.Fatal("removed member still running after 20s")
		}
		if err := c.Err(); !errors.Is(err, ErrRemoved) {
			t.Errorf("removed member's Err() = %v, want ErrRemoved", err)
		}
		if _, err := a.Client().Put(ctx, "/k2", "after"); err != nil {
			t.Errorf("write after removal: %v", err)
		}

		again, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		sctx, done := context.WithTimeout(ctx, 30*time.Second)
		defer done()
		err = again.Start(sctx)
		again.Close()
		if !errors.Is(err, ErrRemoved) {
			t.Errorf("restart of a removed member: err = %v, want ErrRemoved", err)
		}
	})

	t.Run("last member", func(t *testing.T) {
		if err := retry(ctx, func() error { _, err := RemoveMember(ctx, a.Client(), "b"); return err }); err != nil {
			t.Fatal(err)
		}
		if _, err := RemoveMember(ctx, a.Client(), "a"); !errors.Is(err, ErrLastMember) {
			t.Errorf("remove the last member: err = %v, want ErrLastMember", err)
		}
	})
}

// TestUpdatePeerURL turns a single plain-HTTP member into one that
// advertises a TLS peer URL, as --cluster-init does to a server that ran
// alone before.
func TestUpdatePeerURL(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tc := newTLSCluster(t)
	cfg := tc.memberConfig("solo")
	plain := cfg
	plain.PeerTLS, plain.ClientTLS = nil, nil
	plain.ListenPeerURL = strings.Replace(cfg.ListenPeerURL, "https", "http", 1)
	plain.ListenClientURL = strings.Replace(cfg.ListenClientURL, "https", "http", 1)
	s := startMember(t, ctx, plain)
	s.Close()

	s = startMember(t, ctx, cfg)
	for i, want := range []bool{true, false} {
		changed, err := UpdatePeerURL(ctx, s.Client(), s.MemberID(), cfg.ListenPeerURL)
		if err != nil {
			t.Fatal(err)
		}
		if changed != want {
			t.Errorf("call %d: changed = %v, want %v", i, changed, want)
		}
	}
	members, err := ListMembers(ctx, s.Client())
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 1 || members[0].PeerURLs[0] != cfg.ListenPeerURL {
		t.Errorf("members = %+v, want one at %s", members, cfg.ListenPeerURL)
	}
	if _, err := UpdatePeerURL(ctx, s.Client(), 12345, cfg.ListenPeerURL); !errors.Is(err, ErrNoSuchMember) {
		t.Errorf("unknown member: err = %v, want ErrNoSuchMember", err)
	}
}

func TestNewRejectsSchemeWithoutTLS(t *testing.T) {
	t.Parallel()
	creds := &TLS{CertFile: "c", KeyFile: "k", CAFile: "ca"}
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"https client without TLS", Config{DataDir: "x", ListenClientURL: "https://127.0.0.1:1"}},
		{"http peer with TLS", Config{DataDir: "x", ListenPeerURL: "http://127.0.0.1:1", PeerTLS: creds}},
		{"http advertise with TLS", Config{DataDir: "x", ListenPeerURL: "https://127.0.0.1:1", AdvertisePeerURL: "http://127.0.0.1:1", PeerTLS: creds}},
		{"join without cluster", Config{DataDir: "x", Join: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil {
				t.Error("New accepted it")
			}
		})
	}
}

// TestNoQuorum stops one member of two: the other cannot answer
// membership questions, and says why in a way callers may retry.
func TestNoQuorum(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tc := newTLSCluster(t)
	a := startMember(t, ctx, tc.memberConfig("a"))
	b := join(t, ctx, tc, a, "b")
	b.Close()
	begin := time.Now()
	_, err := ListMembers(ctx, a.Client())
	if !errors.Is(err, ErrNoQuorum) || !Retryable(err) {
		t.Errorf("list members without quorum: err = %v, want a retryable ErrNoQuorum", err)
	}
	t.Logf("answered in %v", time.Since(begin))
}
