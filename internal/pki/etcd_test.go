package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestEnsureEtcdTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := mustEnsure(t, testConfig(dir))
	if HasEtcdTLS(dir) {
		t.Fatal("HasEtcdTLS before any etcd credentials were issued")
	}
	paths, err := b.EnsureEtcdTLS([]string{"192.0.2.7", "node-a"}, quiet)
	if err != nil {
		t.Fatalf("EnsureEtcdTLS: %v", err)
	}
	if !HasEtcdTLS(dir) {
		t.Error("HasEtcdTLS after issuing = false")
	}
	if paths != EtcdTLSPaths(dir) {
		t.Errorf("paths = %+v, want EtcdTLSPaths = %+v", paths, EtcdTLSPaths(dir))
	}
	for _, tc := range []struct {
		path string
		mode fs.FileMode
	}{
		{paths.MemberCert, 0o644},
		{paths.MemberKey, 0o600},
		{paths.ClientCert, 0o644},
		{paths.ClientKey, 0o600},
		{filepath.Dir(paths.MemberCert), fs.ModeDir | 0o700},
	} {
		t.Run("mode "+filepath.Base(tc.path), func(t *testing.T) {
			fi, err := os.Stat(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != tc.mode {
				t.Errorf("mode = %v, want %v", fi.Mode(), tc.mode)
			}
		})
	}

	member := loadPair(t, paths.MemberCert, paths.MemberKey)
	client := loadPair(t, paths.ClientCert, paths.ClientKey)
	for _, tc := range []struct {
		name  string
		leaf  *x509.Certificate
		cn    string
		usage x509.ExtKeyUsage
		host  string // a name the certificate must cover, "" for none
	}{
		{"member serves on the loopback", member.Leaf, EtcdMemberCN, x509.ExtKeyUsageServerAuth, "127.0.0.1"},
		{"member serves on localhost", member.Leaf, EtcdMemberCN, x509.ExtKeyUsageServerAuth, "localhost"},
		{"member serves on the advertise address", member.Leaf, EtcdMemberCN, x509.ExtKeyUsageServerAuth, "192.0.2.7"},
		{"member serves on the host name", member.Leaf, EtcdMemberCN, x509.ExtKeyUsageServerAuth, "node-a"},
		{"member authenticates to peers", member.Leaf, EtcdMemberCN, x509.ExtKeyUsageClientAuth, ""},
		{"client authenticates", client.Leaf, EtcdClientCN, x509.ExtKeyUsageClientAuth, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.leaf.Subject.CommonName != tc.cn {
				t.Errorf("CN = %q, want %q", tc.leaf.Subject.CommonName, tc.cn)
			}
			_, err := tc.leaf.Verify(x509.VerifyOptions{Roots: b.CAPool, DNSName: tc.host, KeyUsages: []x509.ExtKeyUsage{tc.usage}})
			if err != nil {
				t.Errorf("verify: %v", err)
			}
		})
	}

	// A real mutual TLS handshake, as between two members.
	handshake(t, b.CAPool, member, member)

	t.Run("second call reuses", func(t *testing.T) {
		if _, err := b.EnsureEtcdTLS([]string{"node-a", "192.0.2.7"}, quiet); err != nil {
			t.Fatal(err)
		}
		if again := loadPair(t, paths.MemberCert, paths.MemberKey); !bytes.Equal(again.Leaf.Raw, member.Leaf.Raw) {
			t.Error("member certificate reissued although nothing changed")
		}
		if again := loadPair(t, paths.ClientCert, paths.ClientKey); !bytes.Equal(again.Leaf.Raw, client.Leaf.Raw) {
			t.Error("client certificate reissued although nothing changed")
		}
	})
	t.Run("new address reissues the member certificate", func(t *testing.T) {
		if _, err := b.EnsureEtcdTLS([]string{"192.0.2.8"}, quiet); err != nil {
			t.Fatal(err)
		}
		again := loadPair(t, paths.MemberCert, paths.MemberKey)
		if bytes.Equal(again.Leaf.Raw, member.Leaf.Raw) {
			t.Fatal("member certificate kept although the address changed")
		}
		if err := again.Leaf.VerifyHostname("192.0.2.8"); err != nil {
			t.Error(err)
		}
	})
	t.Run("bad SAN", func(t *testing.T) {
		if _, err := b.EnsureEtcdTLS([]string{"not_a_name"}, quiet); err == nil {
			t.Error("want an error for a SAN that is neither an IP nor a DNS name")
		}
	})
}

func TestEnsureEtcdTLSNeedsEnsuredBundle(t *testing.T) {
	t.Parallel()
	if _, err := (&Bundle{}).EnsureEtcdTLS(nil, quiet); err == nil {
		t.Error("want an error for a bundle that Ensure did not load")
	}
}

func loadPair(t *testing.T, certPath, keyPath string) tls.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// handshake runs a TLS handshake on the loopback with client
// authentication required, as etcd's peer and client listeners do.
func handshake(t *testing.T, roots *x509.CertPool, server, client tls.Certificate) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- err
			return
		}
		defer c.Close()
		accepted <- c.(*tls.Conn).Handshake()
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
		Certificates: []tls.Certificate{client},
		RootCAs:      roots,
		ServerName:   "127.0.0.1",
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	// The client's handshake ends before the server has checked the
	// client's certificate; a read waits for the server's verdict.
	_ = c.SetReadDeadline(deadline())
	_, _ = c.Read(make([]byte, 1))
	c.Close()
	if err := <-accepted; err != nil {
		t.Errorf("server side of the handshake: %v", err)
	}
}
