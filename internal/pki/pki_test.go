package pki

import (
	"bytes"
	"crypto/x509"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

var quiet = slog.New(slog.DiscardHandler)

// testConfig is a Config with a fixed host, so tests do not depend on the
// machine's interfaces.
func testConfig(dir string) Config {
	return Config{
		DataDir:  dir,
		Logger:   quiet,
		Now:      time.Now,
		hostSANs: func() ([]string, error) { return []string{"node-a", "192.0.2.7"}, nil },
	}
}

func mustEnsure(t *testing.T, cfg Config) *Bundle {
	t.Helper()
	b, err := Ensure(cfg)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	return b
}

func TestEnsureFirstStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.hostSANs = nil // the real host, once, to prove discovery works

	start := time.Now()
	b := mustEnsure(t, cfg)
	took := time.Since(start)
	t.Logf("first-start Ensure took %v", took)
	// The whole server must be ready within a second of start.
	if took > 500*time.Millisecond {
		t.Errorf("first-start Ensure took %v, want well under 1s", took)
	}

	for _, tc := range []struct {
		path string
		mode fs.FileMode
	}{
		{"tls", fs.ModeDir | 0o700},
		{"tls/ca.crt", 0o644},
		{"tls/ca.key", 0o600},
		{"tls/server.crt", 0o644},
		{"tls/server.key", 0o600},
		{"tls/admin.crt", 0o644},
		{"tls/admin.key", 0o600},
		{"admin.kubeconfig", 0o600},
		{"node-token", 0o600},
	} {
		t.Run(tc.path, func(t *testing.T) {
			fi, err := os.Stat(filepath.Join(dir, tc.path))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != tc.mode {
				t.Errorf("mode = %v, want %v", fi.Mode(), tc.mode)
			}
		})
	}

	t.Run("bundle", func(t *testing.T) {
		if !b.CA.IsCA {
			t.Error("CA is not a CA")
		}
		if b.ServingCert.Leaf == nil {
			t.Fatal("ServingCert.Leaf is nil")
		}
		if b.AdminKubeconfigPath != filepath.Join(dir, "admin.kubeconfig") {
			t.Errorf("AdminKubeconfigPath = %q", b.AdminKubeconfigPath)
		}
		if !regexp.MustCompile(`^K10[0-9a-f]{64}::server:[0-9a-f]{32}$`).MatchString(b.NodeToken) {
			t.Errorf("NodeToken = %q, want K10<hash>::server:<secret>", b.NodeToken)
		}
		if err := VerifyTokenCA(b.NodeToken, b.CA); err != nil {
			t.Errorf("token does not pin the CA: %v", err)
		}
		onDisk, err := os.ReadFile(filepath.Join(dir, "node-token"))
		if err != nil || string(bytes.TrimSpace(onDisk)) != b.NodeToken {
			t.Errorf("node-token file = %q, %v; want %q", onDisk, err, b.NodeToken)
		}
	})

	t.Run("host name in SANs", func(t *testing.T) {
		host, err := os.Hostname()
		if err != nil || host == "" {
			t.Skip("no host name")
		}
		if err := b.ServingCert.Leaf.VerifyHostname(host); err != nil {
			t.Errorf("serving cert does not cover host %q: %v", host, err)
		}
	})
}

func TestEnsureSecondStartReuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := mustEnsure(t, testConfig(dir))
	adminBefore, err := os.ReadFile(filepath.Join(dir, "tls", "admin.crt"))
	if err != nil {
		t.Fatal(err)
	}

	cfg := testConfig(dir)
	cfg.APIServerURL = "https://127.0.0.1:7443"
	second := mustEnsure(t, cfg)

	if !bytes.Equal(first.CA.Raw, second.CA.Raw) {
		t.Error("CA regenerated on second start")
	}
	if first.NodeToken != second.NodeToken {
		t.Errorf("node token changed: %q → %q", first.NodeToken, second.NodeToken)
	}
	if !bytes.Equal(first.ServingCert.Leaf.Raw, second.ServingCert.Leaf.Raw) {
		t.Error("serving cert reissued although nothing changed")
	}
	adminAfter, err := os.ReadFile(filepath.Join(dir, "tls", "admin.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(adminBefore, adminAfter) {
		t.Error("admin cert reissued although nothing changed")
	}
	// The kubeconfig follows the new URL even though nothing else changed.
	kc, err := clientcmd.LoadFromFile(second.AdminKubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if got := kc.Clusters["skiff"].Server; got != "https://127.0.0.1:7443" {
		t.Errorf("kubeconfig server = %q, want the new URL", got)
	}
}

func TestEnsureReissuesServingCert(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// change alters the data dir or config between the two starts.
		change      func(t *testing.T, dir string, cfg *Config)
		wantReissue bool
		// covers must be in the serving cert after the second start, and
		// gone, if set, must not.
		covers, gone string
	}{
		{
			name:   "nothing changed",
			change: func(*testing.T, string, *Config) {},
			covers: "node-a",
		},
		{
			name:   "SANs in another order and case",
			change: func(_ *testing.T, _ string, c *Config) { c.SANs = []string{"API.example.com", "203.0.113.9"} },
			covers: "api.example.com",
		},
		{
			name:        "new DNS tls-san",
			change:      func(_ *testing.T, _ string, c *Config) { c.SANs = append(c.SANs, "lb.example.com") },
			wantReissue: true,
			covers:      "lb.example.com",
		},
		{
			name:        "new IP tls-san",
			change:      func(_ *testing.T, _ string, c *Config) { c.SANs = append(c.SANs, "198.51.100.4") },
			wantReissue: true,
			covers:      "198.51.100.4",
		},
		{
			name:        "tls-san removed",
			change:      func(_ *testing.T, _ string, c *Config) { c.SANs = c.SANs[:1] },
			wantReissue: true,
			covers:      "api.example.com",
			gone:        "203.0.113.9",
		},
		{
			name:        "other service IP",
			change:      func(_ *testing.T, _ string, c *Config) { c.ServiceIP = net.ParseIP("10.96.0.1") },
			wantReissue: true,
			covers:      "10.96.0.1",
		},
		{
			name: "host address changed",
			change: func(_ *testing.T, _ string, c *Config) {
				c.hostSANs = func() ([]string, error) { return []string{"node-a", "192.0.2.8"}, nil }
			},
			wantReissue: true,
			covers:      "192.0.2.8",
			gone:        "192.0.2.7",
		},
		{
			name: "near expiry",
			change: func(_ *testing.T, _ string, c *Config) {
				later := time.Now().Add(leafValidity - renewBefore + time.Hour)
				c.Now = func() time.Time { return later }
			},
			wantReissue: true,
			covers:      "kubernetes.default.svc",
		},
		{
			name: "key deleted",
			change: func(t *testing.T, dir string, _ *Config) {
				if err := os.Remove(filepath.Join(dir, "tls", "server.key")); err != nil {
					t.Fatal(err)
				}
			},
			wantReissue: true,
			covers:      "localhost",
		},
		{
			name: "signed by another CA",
			change: func(t *testing.T, dir string, _ *Config) {
				other := t.TempDir()
				mustEnsure(t, testConfig(other))
				for _, f := range []string{"server.crt", "server.key"} {
					data, err := os.ReadFile(filepath.Join(other, "tls", f))
					if err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(dir, "tls", f), data, 0o600); err != nil {
						t.Fatal(err)
					}
				}
			},
			wantReissue: true,
			covers:      "127.0.0.1",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := testConfig(dir)
			cfg.SANs = []string{"api.example.com", "203.0.113.9"}
			first := mustEnsure(t, cfg)

			tc.change(t, dir, &cfg)
			second := mustEnsure(t, cfg)

			if !bytes.Equal(first.CA.Raw, second.CA.Raw) {
				t.Fatal("CA changed")
			}
			if first.NodeToken != second.NodeToken {
				t.Error("node token changed")
			}
			reissued := !bytes.Equal(first.ServingCert.Leaf.Raw, second.ServingCert.Leaf.Raw)
			if reissued != tc.wantReissue {
				t.Errorf("reissued = %v, want %v", reissued, tc.wantReissue)
			}
			leaf := second.ServingCert.Leaf
			if _, err := leaf.Verify(x509.VerifyOptions{
				DNSName:     tc.covers,
				Roots:       second.CAPool,
				CurrentTime: cfg.Now(),
			}); err != nil {
				t.Errorf("serving cert does not verify for %q: %v", tc.covers, err)
			}
			if tc.gone != "" {
				if err := leaf.VerifyHostname(tc.gone); err == nil {
					t.Errorf("serving cert still covers removed SAN %q", tc.gone)
				}
			}
			// What is on disk is what a third start would load.
			third := mustEnsure(t, cfg)
			if !bytes.Equal(third.ServingCert.Leaf.Raw, leaf.Raw) {
				t.Error("reissued cert was not persisted")
			}
		})
	}
}

func TestServingCertNames(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t.TempDir())
	cfg.SANs = []string{"api.example.com", "*.lb.example.com", " 2001:db8::5 "}
	b := mustEnsure(t, cfg)

	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"localhost", true},
		{"127.0.0.1", true},
		{"::1", true},
		{"kubernetes", true},
		{"kubernetes.default", true},
		{"kubernetes.default.svc", true},
		{"kubernetes.default.svc.cluster.local", true},
		{"10.43.0.1", true},
		{"node-a", true},
		{"192.0.2.7", true},
		{"api.example.com", true},
		{"east.lb.example.com", true},
		{"2001:db8::5", true},
		{"example.com", false},
		{"10.43.0.2", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := b.ServingCert.Leaf.Verify(x509.VerifyOptions{
				DNSName:   tc.name,
				Roots:     b.CAPool,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if (err == nil) != tc.ok {
				t.Errorf("verify for %q: err = %v, want ok=%v", tc.name, err, tc.ok)
			}
		})
	}
}

func TestAdminKubeconfig(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t.TempDir())
	cfg.APIServerURL = "https://127.0.0.1:6443"
	b := mustEnsure(t, cfg)

	raw, err := clientcmd.LoadFromFile(b.AdminKubeconfigPath)
	if err != nil {
		t.Fatalf("load kubeconfig: %v", err)
	}
	if raw.CurrentContext != "skiff" {
		t.Errorf("current context = %q, want skiff", raw.CurrentContext)
	}
	if ctx := raw.Contexts["skiff"]; ctx == nil || ctx.Cluster != "skiff" || ctx.AuthInfo != "admin" {
		t.Errorf("context skiff = %+v, want cluster skiff, user admin", ctx)
	}

	rc, err := clientcmd.BuildConfigFromFlags("", b.AdminKubeconfigPath)
	if err != nil {
		t.Fatalf("rest config: %v", err)
	}
	if rc.Host != cfg.APIServerURL {
		t.Errorf("host = %q, want %q", rc.Host, cfg.APIServerURL)
	}
	if !bytes.Equal(rc.CAData, b.CAPEM) {
		t.Error("kubeconfig CA is not the cluster CA")
	}
	cert, err := parseCert(rc.CertData)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:     b.CAPool,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		t.Errorf("admin cert does not verify as a client cert: %v", err)
	}
	if cert.Subject.CommonName != "admin" || !slices.Equal(cert.Subject.Organization, []string{"system:masters"}) {
		t.Errorf("admin subject = %v, want CN=admin, O=system:masters", cert.Subject)
	}
	if _, err := parseKey(rc.KeyData); err != nil {
		t.Errorf("admin key: %v", err)
	}
}

func TestEnsureErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, dir string, cfg *Config)
		wantIs  error
	}{
		{
			name:    "no data dir",
			prepare: func(_ *testing.T, _ string, c *Config) { c.DataDir = "" },
		},
		{
			name:    "bad tls-san",
			prepare: func(_ *testing.T, _ string, c *Config) { c.SANs = []string{"not a name"} },
		},
		{
			name: "CA key missing",
			prepare: func(t *testing.T, dir string, c *Config) {
				mustEnsure(t, *c)
				if err := os.Remove(filepath.Join(dir, "tls", "ca.key")); err != nil {
					t.Fatal(err)
				}
			},
			wantIs: ErrCAKeyMissing,
		},
		{
			name: "CA key replaced",
			prepare: func(t *testing.T, dir string, c *Config) {
				mustEnsure(t, *c)
				other := t.TempDir()
				mustEnsure(t, testConfig(other))
				data, err := os.ReadFile(filepath.Join(other, "tls", "ca.key"))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "tls", "ca.key"), data, 0o600); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "CA expired",
			prepare: func(t *testing.T, _ string, c *Config) {
				mustEnsure(t, *c)
				later := time.Now().Add(caValidity + time.Hour)
				c.Now = func() time.Time { return later }
			},
			wantIs: ErrCAExpired,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			cfg := testConfig(dir)
			tc.prepare(t, dir, &cfg)
			_, err := Ensure(cfg)
			if err == nil {
				t.Fatal("Ensure succeeded, want an error")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("err = %v, want %v", err, tc.wantIs)
			}
		})
	}
}

func TestCANamesDistinct(t *testing.T) {
	t.Parallel()
	// Made in the same second, two clusters' CAs must still differ by name,
	// or TLS clients offer one cluster's client certificate to the other.
	a := mustEnsure(t, testConfig(t.TempDir()))
	b := mustEnsure(t, testConfig(t.TempDir()))
	if a.CA.Subject.String() == b.CA.Subject.String() {
		t.Errorf("two CAs share the subject %q", a.CA.Subject)
	}
}

func TestEnsureAfterInterruptedFirstStart(t *testing.T) {
	t.Parallel()
	// A crash after ca.key but before ca.crt: nobody can trust that CA yet,
	// so the next start makes a fresh one instead of failing forever.
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls", "ca.key"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := mustEnsure(t, testConfig(dir))
	if !b.CA.IsCA {
		t.Error("no CA")
	}
}

func TestIssueClientCert(t *testing.T) {
	t.Parallel()
	b := mustEnsure(t, testConfig(t.TempDir()))
	for _, tc := range []struct {
		name    string
		cn      string
		orgs    []string
		wantErr bool
	}{
		{name: "node", cn: "system:node:node-a", orgs: []string{"system:nodes"}},
		{name: "no groups", cn: "alice"},
		{name: "no common name", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			certPEM, keyPEM, err := b.IssueClientCert(tc.cn, tc.orgs)
			if tc.wantErr {
				if err == nil {
					t.Fatal("want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cert, err := parseCert(certPEM)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: b.CAPool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("client cert does not verify: %v", err)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: b.CAPool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
				t.Error("client cert also verifies as a server cert")
			}
			if cert.Subject.CommonName != tc.cn || !slices.Equal(cert.Subject.Organization, tc.orgs) {
				t.Errorf("subject = %v, want CN=%s O=%v", cert.Subject, tc.cn, tc.orgs)
			}
			if _, err := parseKey(keyPEM); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestIssueServingCert(t *testing.T) {
	t.Parallel()
	b := mustEnsure(t, testConfig(t.TempDir()))
	certPEM, _, err := b.IssueServingCert("node-a", []string{"node-a"}, []net.IP{net.ParseIP("192.0.2.7")})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"node-a", "192.0.2.7"} {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: b.CAPool}); err != nil {
			t.Errorf("verify %q: %v", name, err)
		}
	}
	if _, _, err := b.IssueServingCert("x", nil, nil); err == nil {
		t.Error("serving cert without names: want an error")
	}
}

func TestVerifyTokenCA(t *testing.T) {
	t.Parallel()
	b := mustEnsure(t, testConfig(t.TempDir()))
	other := mustEnsure(t, testConfig(t.TempDir()))
	for _, tc := range []struct {
		name  string
		token string
		want  error
	}{
		{"own token", b.NodeToken, nil},
		{"other cluster's token", other.NodeToken, ErrTokenCAMismatch},
		{"plain secret", "abc123", ErrTokenNotPinned},
		{"bad hash", "K10zz::server:abc", ErrTokenNotPinned},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := VerifyTokenCA(tc.token, b.CA); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestWriteKubeconfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		spec    KubeconfigSpec
		wantErr bool
	}{
		{
			name: "token",
			spec: KubeconfigSpec{ServerURL: "https://10.0.0.1:6443", CAPEM: []byte("ca"), Token: "t0k", User: "node", Cluster: "c", Context: "x"},
		},
		{name: "no server", spec: KubeconfigSpec{Token: "t"}, wantErr: true},
		{name: "no credential", spec: KubeconfigSpec{ServerURL: "https://a"}, wantErr: true},
		{name: "cert without key", spec: KubeconfigSpec{ServerURL: "https://a", CertPEM: []byte("c")}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "sub", "kubeconfig")
			err := WriteKubeconfig(path, tc.spec)
			if tc.wantErr {
				if err == nil {
					t.Fatal("want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != 0o600 {
				t.Errorf("mode = %v, want 0600", fi.Mode())
			}
			rc, err := clientcmd.BuildConfigFromFlags("", path)
			if err != nil {
				t.Fatal(err)
			}
			if rc.Host != tc.spec.ServerURL || rc.BearerToken != tc.spec.Token || !bytes.Equal(rc.CAData, tc.spec.CAPEM) {
				t.Errorf("rest config = host %q token %q ca %q; want %+v", rc.Host, rc.BearerToken, rc.CAData, tc.spec)
			}
		})
	}
}

func BenchmarkEnsureFirstStart(b *testing.B) {
	for b.Loop() {
		if _, err := Ensure(testConfig(b.TempDir())); err != nil {
			b.Fatal(err)
		}
	}
}
