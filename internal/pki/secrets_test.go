package pki

import (
	"bytes"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// deadline bounds reads in handshake tests.
func deadline() time.Time { return time.Now().Add(5 * time.Second) }

func TestServerSecretsJoin(t *testing.T) {
	t.Parallel()
	first := mustEnsure(t, testConfig(t.TempDir()))
	secrets, err := first.ServerSecrets()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := InstallServerSecrets(dir, first.NodeToken, secrets); err != nil {
		t.Fatalf("InstallServerSecrets: %v", err)
	}
	// Installing again (a joiner restarting mid-join) changes nothing.
	if err := InstallServerSecrets(dir, first.NodeToken, secrets); err != nil {
		t.Fatalf("InstallServerSecrets again: %v", err)
	}
	second := mustEnsure(t, testConfig(dir))
	if !bytes.Equal(second.CA.Raw, first.CA.Raw) {
		t.Error("joined server made its own CA")
	}
	if second.NodeToken != first.NodeToken {
		t.Errorf("joined server's token = %q, want the cluster's", second.NodeToken)
	}
	// What the joined server issues, the first server's clients trust.
	certPEM, _, err := second.IssueClientCert("someone", nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := parseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: first.CAPool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("certificate issued by the joined server: %v", err)
	}
}

func TestInstallServerSecretsRefuses(t *testing.T) {
	t.Parallel()
	first := mustEnsure(t, testConfig(t.TempDir()))
	other := mustEnsure(t, testConfig(t.TempDir()))
	good, err := first.ServerSecrets()
	if err != nil {
		t.Fatal(err)
	}
	otherSecrets, err := other.ServerSecrets()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		token   string
		secrets ServerSecrets
		prepare func(t *testing.T, dir string)
		want    error // nil: any error will do
	}{
		{name: "answer with another CA than the token pins", token: first.NodeToken, secrets: otherSecrets, want: ErrTokenCAMismatch},
		{name: "token without CA hash", token: "plain-secret", secrets: good, want: ErrTokenNotPinned},
		{name: "received token for another CA", token: first.NodeToken,
			secrets: ServerSecrets{CACert: good.CACert, CAKey: good.CAKey, Token: other.NodeToken}, want: ErrTokenCAMismatch},
		{name: "key of another CA", token: first.NodeToken,
			secrets: ServerSecrets{CACert: good.CACert, CAKey: otherSecrets.CAKey, Token: good.Token}},
		{name: "garbage CA", token: first.NodeToken, secrets: ServerSecrets{CACert: []byte("nope"), CAKey: good.CAKey, Token: good.Token}},
		{name: "data dir of another cluster", token: first.NodeToken, secrets: good, want: ErrOtherCluster,
			prepare: func(t *testing.T, dir string) { mustEnsure(t, testConfig(dir)) }},
		{name: "another token in the data dir", token: first.NodeToken, secrets: good, want: ErrOtherCluster,
			prepare: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, NodeTokenFile), []byte("K10abc::server:def\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if tc.prepare != nil {
				tc.prepare(t, dir)
			}
			err := InstallServerSecrets(dir, tc.token, tc.secrets)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.prepare == nil {
				if _, err := os.Stat(filepath.Join(dir, TLSDirName, CACertFile)); err == nil {
					t.Error("refused secrets were stored")
				}
			}
		})
	}
}

func TestPinnedCA(t *testing.T) {
	t.Parallel()
	b := mustEnsure(t, testConfig(t.TempDir()))
	other := mustEnsure(t, testConfig(t.TempDir()))
	leafPEM, _, err := b.IssueClientCert("x", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		data  []byte
		token string
		want  error
	}{
		{"the CA alone", b.CAPEM, b.NodeToken, nil},
		{"among other certificates", bytes.Join([][]byte{leafPEM, other.CAPEM, b.CAPEM}, nil), b.NodeToken, nil},
		{"another cluster's CA", other.CAPEM, b.NodeToken, ErrTokenCAMismatch},
		{"not PEM", []byte("hello"), b.NodeToken, ErrTokenCAMismatch},
		{"unpinned token", b.CAPEM, "secret", ErrTokenNotPinned},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ca, err := PinnedCA(tc.data, tc.token)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.want == nil && !bytes.Equal(ca.Raw, b.CA.Raw) {
				t.Error("returned a certificate other than the pinned CA")
			}
		})
	}
}
