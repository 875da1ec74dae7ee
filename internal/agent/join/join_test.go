package join

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiffhq/skiff/internal/pki"
)

var quiet = slog.New(slog.DiscardHandler)

// newBundle makes a cluster PKI in a temporary directory.
func newBundle(t *testing.T) *pki.Bundle {
	t.Helper()
	b, err := pki.Ensure(pki.Config{DataDir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testConfig(t *testing.T, b *pki.Bundle) Config {
	return Config{
		Server: "https://127.0.0.1:1", Token: b.NodeToken, Dir: filepath.Join(t.TempDir(), "node"),
		NodeName: "n1", NodeIPs: []net.IP{net.ParseIP("10.0.0.5")}, Hostnames: []string{"n1.example"}, Logger: quiet,
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestLocal(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	cfg := testConfig(t, b)
	creds, err := Local(b, cfg)
	if err != nil {
		t.Fatalf("Local: %v", err)
	}
	for name, mode := range map[string]os.FileMode{
		CAFile: 0o644, ClientKeyFile: 0o600, ClientCertFile: 0o644, ServingKeyFile: 0o600, ServingCertFile: 0o644, KubeconfigFile: 0o600,
	} {
		st, err := os.Stat(filepath.Join(cfg.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", name, st.Mode().Perm(), mode)
		}
	}
	if st, err := os.Stat(cfg.Dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode: %v %v", st.Mode().Perm(), err)
	}
	kc, err := clientcmd.LoadFromFile(creds.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx := kc.Contexts[kc.CurrentContext]
	if kc.Clusters[ctx.Cluster].Server != cfg.Server || !bytes.Equal(kc.Clusters[ctx.Cluster].CertificateAuthorityData, b.CAPEM) {
		t.Errorf("kubeconfig cluster = %+v", kc.Clusters[ctx.Cluster])
	}
	client := parse(t, kc.AuthInfos[ctx.AuthInfo].ClientCertificateData)
	if client.Subject.CommonName != "system:node:n1" || !slices.Equal(client.Subject.Organization, []string{"system:nodes"}) {
		t.Errorf("client subject = %v", client.Subject)
	}
	if _, err := client.Verify(x509.VerifyOptions{Roots: creds.ClientCAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	serving := creds.ServingCert.Leaf
	if _, err := serving.Verify(x509.VerifyOptions{Roots: creds.ClientCAs, DNSName: "n1.example", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("serving certificate: %v", err)
	}
	if err := serving.VerifyHostname("10.0.0.5"); err != nil {
		t.Errorf("serving certificate: %v", err)
	}
	if want := minTime(renewAt(serving), renewAt(client)); !creds.RenewAt.Equal(want) {
		t.Errorf("RenewAt = %v, want %v", creds.RenewAt, want)
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// TestReuse: what is still good stays, what no longer fits is reissued,
// and only that.
func TestReuse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                     string
		change                   func(t *testing.T, b *pki.Bundle, cfg *Config)
		wantNewClient, wantNewSv bool
	}{
		{"unchanged", func(*testing.T, *pki.Bundle, *Config) {}, false, false},
		{"new node IP", func(_ *testing.T, _ *pki.Bundle, c *Config) { c.NodeIPs = []net.IP{net.ParseIP("10.0.0.6")} }, false, true},
		{"renamed node", func(_ *testing.T, _ *pki.Bundle, c *Config) { c.NodeName = "n2" }, true, true},
		{"client near expiry", func(t *testing.T, b *pki.Bundle, c *Config) {
			// 95% of its ten-hour life gone.
			writeSigned(t, b, c.Dir, ClientCertFile, ClientKeyFile, "system:node:n1", x509.ExtKeyUsageClientAuth, -9*time.Hour-30*time.Minute, 30*time.Minute)
		}, true, false},
		{"client expired", func(t *testing.T, b *pki.Bundle, c *Config) {
			writeSigned(t, b, c.Dir, ClientCertFile, ClientKeyFile, "system:node:n1", x509.ExtKeyUsageClientAuth, -2*time.Hour, -time.Hour)
		}, true, false},
		{"serving from another CA", func(t *testing.T, _ *pki.Bundle, c *Config) {
			writeSigned(t, newBundle(t), c.Dir, ServingCertFile, ServingKeyFile, "system:node:n1", x509.ExtKeyUsageServerAuth, -time.Hour, time.Hour*24)
		}, false, true},
		{"serving key lost", func(t *testing.T, _ *pki.Bundle, c *Config) {
			if err := os.Remove(filepath.Join(c.Dir, ServingKeyFile)); err != nil {
				t.Fatal(err)
			}
		}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBundle(t)
			cfg := testConfig(t, b)
			if _, err := Local(b, cfg); err != nil {
				t.Fatal(err)
			}
			clientBefore := readFile(t, filepath.Join(cfg.Dir, ClientCertFile))
			servingBefore := readFile(t, filepath.Join(cfg.Dir, ServingCertFile))
			tt.change(t, b, &cfg)
			clientMid := readFile(t, filepath.Join(cfg.Dir, ClientCertFile))
			if _, err := Local(b, cfg); err != nil {
				t.Fatal(err)
			}
			clientAfter := readFile(t, filepath.Join(cfg.Dir, ClientCertFile))
			servingAfter := readFile(t, filepath.Join(cfg.Dir, ServingCertFile))
			if got := !bytes.Equal(clientAfter, clientBefore) && !bytes.Equal(clientAfter, clientMid); got != tt.wantNewClient {
				t.Errorf("client reissued = %v, want %v", got, tt.wantNewClient)
			}
			if got := !bytes.Equal(servingAfter, servingBefore); got != tt.wantNewSv {
				t.Errorf("serving reissued = %v, want %v", got, tt.wantNewSv)
			}
		})
	}
}

// writeSigned stores a pair signed by b, valid from now+from to now+to.
func writeSigned(t *testing.T, b *pki.Bundle, dir, certFile, keyFile, cn string, usage x509.ExtKeyUsage, from, to time.Duration) {
	t.Helper()
	key, keyPEM, err := newKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	certPEM, err := b.Sign(&x509.Certificate{
		Subject: pkix.Name{CommonName: cn, Organization: []string{NodesGroup}}, NotBefore: now.Add(from), NotAfter: now.Add(to),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		DNSNames: []string{"n1.example"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.5")},
	}, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := (stored{cert: filepath.Join(dir, certFile), key: filepath.Join(dir, keyFile)}).store(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
}

func parse(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM certificate")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestJoinReusesWithoutNetwork: with good files and the token's CA stored,
// Join succeeds against a server that does not exist.
func TestJoinReusesWithoutNetwork(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	cfg := testConfig(t, b)
	if _, err := Local(b, cfg); err != nil {
		t.Fatal(err)
	}
	before := readFile(t, filepath.Join(cfg.Dir, ClientCertFile))
	if _, err := Join(context.Background(), cfg); err != nil {
		t.Fatalf("Join: %v", err)
	}
	if !bytes.Equal(before, readFile(t, filepath.Join(cfg.Dir, ClientCertFile))) {
		t.Errorf("client certificate replaced")
	}
}

func TestJoinTokenChecks(t *testing.T) {
	t.Parallel()
	b, other := newBundle(t), newBundle(t)
	var (
		mu       sync.Mutex
		requests []*http.Request
	)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests = append(requests, r.Clone(context.Background()))
		mu.Unlock()
		if r.URL.Path != CAPath {
			http.Error(w, "unexpected", http.StatusTeapot)
			return
		}
		_, _ = w.Write(b.CAPEM)
	}))
	t.Cleanup(srv.Close)
	tests := []struct {
		name      string
		token     string
		want      error
		wantFetch bool
	}{
		{"token for another CA", other.NodeToken, pki.ErrTokenCAMismatch, true},
		{"token without CA hash", "just-a-secret", pki.ErrTokenNotPinned, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			requests = nil
			mu.Unlock()
			cfg := testConfig(t, b)
			cfg.Server, cfg.Token = srv.URL, tt.token
			_, err := Join(context.Background(), cfg)
			mu.Lock()
			defer mu.Unlock()
			if !errors.Is(err, tt.want) {
				t.Fatalf("Join error = %v, want %v", err, tt.want)
			}
			if got := len(requests) > 0; got != tt.wantFetch {
				t.Errorf("requests = %d, want fetch %v", len(requests), tt.wantFetch)
			}
			for _, r := range requests {
				if r.URL.Path != CAPath || r.Header.Get("Authorization") != "" || r.TLS == nil || len(r.TLS.PeerCertificates) > 0 {
					t.Errorf("request %s with credentials or to the wrong path", r.URL.Path)
				}
			}
			if _, err := os.Stat(filepath.Join(cfg.Dir, CAFile)); err == nil {
				t.Errorf("untrusted CA stored")
			}
		})
	}
}

func TestPinnedCA(t *testing.T) {
	t.Parallel()
	b, other := newBundle(t), newBundle(t)
	leaf, _, err := b.IssueClientCert("x", nil)
	if err != nil {
		t.Fatal(err)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name    string
		data    []byte
		want    error // nil: finds b's CA
		anyErr  bool
		wantRaw []byte
	}{
		{"the CA", b.CAPEM, nil, false, b.CA.Raw},
		{"among others", cat(other.CAPEM, leaf, b.CAPEM), nil, false, b.CA.Raw},
		{"another CA", other.CAPEM, pki.ErrTokenCAMismatch, false, nil},
		{"a leaf", leaf, nil, true, nil},
		{"garbage", []byte("<html>"), nil, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ca, caPEM, err := pinnedCA(tt.data, b.NodeToken)
			switch {
			case tt.want != nil || tt.anyErr:
				if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
					t.Fatalf("err = %v, want %v", err, tt.want)
				}
			case err != nil:
				t.Fatal(err)
			case !bytes.Equal(ca.Raw, tt.wantRaw) || !bytes.Equal(caPEM, b.CAPEM):
				t.Errorf("picked %s", ca.Subject)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"complete", Config{Server: "https://10.0.0.1:6443", Dir: dir, NodeName: "n1"}, true},
		{"no server", Config{Dir: dir, NodeName: "n1"}, false},
		{"plain http", Config{Server: "http://10.0.0.1:6443", Dir: dir, NodeName: "n1"}, false},
		{"no node name", Config{Server: "https://10.0.0.1:6443", Dir: dir}, false},
		{"no dir", Config{Server: "https://10.0.0.1:6443", NodeName: "n1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.cfg.validate(); (err == nil) != tt.ok {
				t.Errorf("validate = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
