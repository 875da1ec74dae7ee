package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiffhq/skiff/internal/agent/join"
	"github.com/skiffhq/skiff/internal/controller/csrsigning"
	"github.com/skiffhq/skiff/internal/pki"
	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/internal/testutil"
)

// joinConfig is a node joining cp with token, its files in a fresh dir.
func joinConfig(t *testing.T, cp *testutil.ControlPlane, name, token string) join.Config {
	return join.Config{
		Server: cp.Server().URL(), Token: token, Dir: filepath.Join(t.TempDir(), name), NodeName: name,
		NodeIPs: []net.IP{net.ParseIP("127.0.0.1")}, Hostnames: []string{name}, Logger: testutil.Logger(),
	}
}

func nodeToken(t *testing.T, cp *testutil.ControlPlane) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(cp.DataDir, pki.NodeTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

func listCSRs(t *testing.T, c kubernetes.Interface) []certificatesv1.CertificateSigningRequest {
	t.Helper()
	l, err := c.CertificatesV1().CertificateSigningRequests().List(testCtx(t), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list CSRs: %v", err)
	}
	return l.Items
}

func TestNodeJoin(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t)
	token := nodeToken(t, cp)

	t.Run("join", func(t *testing.T) {
		cfg := joinConfig(t, cp, "joined-1", token)
		creds, err := join.Join(testCtx(t), cfg)
		if err != nil {
			t.Fatalf("Join: %v", err)
		}
		rc, err := clientcmd.BuildConfigFromFlags("", creds.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		nc := kubernetes.NewForConfigOrDie(rc)
		if _, err := nc.CoreV1().Nodes().Create(testCtx(t), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: cfg.NodeName}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create node as the node: %v", err)
		}
		// The requests record who asked: the token for the first, the node
		// itself for the serving certificate.
		want := map[string]string{
			certificatesv1.KubeAPIServerClientKubeletSignerName: "system:node-bootstrap",
			certificatesv1.KubeletServingSignerName:             "system:node:" + cfg.NodeName,
		}
		var mine []certificatesv1.CertificateSigningRequest
		for _, csr := range listCSRs(t, cp.Client) {
			if r, err := parseCSR(csr.Spec.Request); err == nil && r.Subject.CommonName == "system:node:"+cfg.NodeName {
				mine = append(mine, csr)
			}
		}
		if len(mine) != 2 {
			t.Fatalf("CSRs for the node = %d, want 2", len(mine))
		}
		for _, csr := range mine {
			if csr.Spec.Username != want[csr.Spec.SignerName] {
				t.Errorf("%s requested by %q, want %q", csr.Spec.SignerName, csr.Spec.Username, want[csr.Spec.SignerName])
			}
			if len(csr.Status.Certificate) == 0 || len(csr.Status.Conditions) != 1 || csr.Status.Conditions[0].Reason != csrsigning.ReasonAutoApproved {
				t.Errorf("%s: status %+v", csr.Name, csr.Status.Conditions)
			}
		}
		if !slices.ContainsFunc(creds.ServingCert.Leaf.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.ParseIP("127.0.0.1")) }) {
			t.Errorf("serving certificate IPs = %v", creds.ServingCert.Leaf.IPAddresses)
		}

		// A restart finds everything good and asks for nothing.
		before := len(listCSRs(t, cp.Client))
		if _, err := join.Join(testCtx(t), cfg); err != nil {
			t.Fatalf("second Join: %v", err)
		}
		if after := len(listCSRs(t, cp.Client)); after != before {
			t.Errorf("restart created %d CSRs", after-before)
		}
	})

	t.Run("renewal as the node", func(t *testing.T) {
		cfg := joinConfig(t, cp, "joined-4", token)
		if _, err := join.Join(testCtx(t), cfg); err != nil {
			t.Fatalf("Join: %v", err)
		}
		// Replace the client certificate with one in the last tenth of
		// its life, signed by the same CA.
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		certPEM, err := clusterCA(t, cp).Sign(&x509.Certificate{
			Subject:   pkix.Name{CommonName: "system:node:joined-4", Organization: []string{"system:nodes"}},
			NotBefore: now.Add(-10 * time.Hour), NotAfter: now.Add(20 * time.Minute),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}, key.Public())
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, filepath.Join(cfg.Dir, join.ClientKeyFile), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
		writeTestFile(t, filepath.Join(cfg.Dir, join.ClientCertFile), certPEM)
		creds, err := join.Join(testCtx(t), cfg)
		if err != nil {
			t.Fatalf("renewing Join: %v", err)
		}
		if !creds.RenewAt.After(now.Add(24 * time.Hour)) {
			t.Errorf("renewed credentials due again at %v", creds.RenewAt)
		}
		var requestors []string
		for _, csr := range listCSRs(t, cp.Client) {
			if r, err := parseCSR(csr.Spec.Request); err == nil && r.Subject.CommonName == "system:node:joined-4" &&
				csr.Spec.SignerName == certificatesv1.KubeAPIServerClientKubeletSignerName {
				requestors = append(requestors, csr.Spec.Username)
			}
		}
		slices.Sort(requestors)
		if want := []string{"system:node-bootstrap", "system:node:joined-4"}; !slices.Equal(requestors, want) {
			t.Errorf("client CSRs requested by %q, want %q", requestors, want)
		}
	})

	t.Run("wrong secret", func(t *testing.T) {
		pin, _, _ := strings.Cut(token, "::")
		_, err := join.Join(testCtx(t), joinConfig(t, cp, "joined-2", pin+"::server:0123456789abcdef"))
		if !apierrors.IsUnauthorized(err) {
			t.Fatalf("Join error = %v, want 401 Unauthorized", err)
		}
	})

	t.Run("token for another CA", func(t *testing.T) {
		other, err := pki.Ensure(pki.Config{DataDir: t.TempDir(), Logger: testutil.Logger()})
		if err != nil {
			t.Fatal(err)
		}
		before := len(listCSRs(t, cp.Client))
		_, err = join.Join(testCtx(t), joinConfig(t, cp, "joined-3", other.NodeToken))
		if !errors.Is(err, pki.ErrTokenCAMismatch) {
			t.Fatalf("Join error = %v, want %v", err, pki.ErrTokenCAMismatch)
		}
		if after := len(listCSRs(t, cp.Client)); after != before {
			t.Errorf("a CSR was sent to a server the token does not pin")
		}
	})

	t.Run("kubectl approves a client certificate", func(t *testing.T) {
		k := newCLI(t, cp)
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "jane", Organization: []string{"dev"}}}, key)
		if err != nil {
			t.Fatal(err)
		}
		seconds := int32(3600)
		_, err = cp.Client.CertificatesV1().CertificateSigningRequests().Create(testCtx(t), &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{Name: "jane"},
			Spec: certificatesv1.CertificateSigningRequestSpec{
				Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
				SignerName: certificatesv1.KubeAPIServerClientSignerName, ExpirationSeconds: &seconds,
				Usages: []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out := k.ok("get", "csr", "jane")
		if want := []string{"NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION", "CONDITION"}; !slices.Equal(strings.Fields(firstLine(out)), want) {
			t.Errorf("header = %q, want %q", firstLine(out), want)
		}
		if f := strings.Fields(secondLine(out)); len(f) != 6 || f[2] != certificatesv1.KubeAPIServerClientSignerName || f[3] != "admin" || f[4] != "60m" || f[5] != "Pending" {
			t.Errorf("row = %q", secondLine(out))
		}
		if out := k.ok("certificate", "approve", "jane"); !strings.Contains(out, "approved") {
			t.Errorf("approve said %q", out)
		}
		var cert *x509.Certificate
		testutil.Eventually(t, 30*time.Second, func() bool {
			csr, err := cp.Client.CertificatesV1().CertificateSigningRequests().Get(testCtx(t), "jane", metav1.GetOptions{})
			if err != nil || len(csr.Status.Certificate) == 0 {
				return false
			}
			block, _ := pem.Decode(csr.Status.Certificate)
			cert, err = x509.ParseCertificate(block.Bytes)
			return err == nil
		}, "jane's certificate issued")
		if cert.Subject.CommonName != "jane" || !cert.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
			t.Errorf("issued %v for another key or subject", cert.Subject)
		}
		if d := time.Until(cert.NotAfter); d > time.Hour || d < 50*time.Minute {
			t.Errorf("validity left %v, want about the hour asked for", d)
		}
		if out := k.ok("get", "csr", "jane"); !strings.Contains(out, "Approved,Issued") {
			t.Errorf("after approval:\n%s", out)
		}
		// Each way in changes only its part: the spec is fixed, /approval
		// cannot forge a certificate, and decisions stay made.
		csrs := cp.Client.CertificatesV1().CertificateSigningRequests()
		csr, err := csrs.Get(testCtx(t), "jane", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		issued := csr.Status.Certificate
		edit := csr.DeepCopy()
		edit.Spec.Username = "mallory"
		if got, err := csrs.Update(testCtx(t), edit, metav1.UpdateOptions{}); err != nil || got.Spec.Username != "admin" {
			t.Errorf("update of spec: username %q, err %v", got.Spec.Username, err)
		}
		edit = csr.DeepCopy()
		edit.Status.Certificate = []byte("forged")
		if got, err := csrs.UpdateApproval(testCtx(t), "jane", edit, metav1.UpdateOptions{}); err != nil || string(got.Status.Certificate) != string(issued) {
			t.Errorf("approval changed the certificate (err %v)", err)
		}
		edit = csr.DeepCopy()
		edit.Status.Conditions = append(edit.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue})
		if _, err := csrs.UpdateApproval(testCtx(t), "jane", edit, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) {
			t.Errorf("approved and denied: err %v, want Invalid", err)
		}
		edit = csr.DeepCopy()
		edit.Status.Conditions = nil
		if _, err := csrs.UpdateApproval(testCtx(t), "jane", edit, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) {
			t.Errorf("approval withdrawn: err %v, want Invalid", err)
		}
	})
}

// TestNodeJoinDenied: with no automatic approver, a human's denial ends
// the wait with an error.
func TestNodeJoinDenied(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t, func(c *server.Config) {
		c.DisableControllers = append(c.DisableControllers, csrsigning.Name)
	})
	k := newCLI(t, cp)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := join.Join(ctx, joinConfig(t, cp, "denied-1", nodeToken(t, cp)))
		done <- err
	}()
	var name string
	testutil.Eventually(t, 30*time.Second, func() bool {
		items := listCSRs(t, cp.Client)
		if len(items) > 0 {
			name = items[0].Name
		}
		return name != ""
	}, "the node's CSR")
	if out := k.ok("get", "csr"); !strings.Contains(out, "system:node-bootstrap") || !strings.Contains(out, "Pending") {
		t.Errorf("pending request not shown:\n%s", out)
	}
	k.ok("certificate", "deny", name)
	select {
	case err := <-done:
		if !errors.Is(err, join.ErrDenied) {
			t.Fatalf("Join error = %v, want %v", err, join.ErrDenied)
		}
	case <-ctx.Done():
		t.Fatal("Join still waiting after the denial")
	}
}

// clusterCA loads cp's CA into a PKI of its own directory, so the test can
// sign as the cluster does without touching the server's files.
func clusterCA(t *testing.T, cp *testutil.ControlPlane) *pki.Bundle {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{pki.CACertFile, pki.CAKeyFile} {
		writeTestFile(t, filepath.Join(dir, pki.TLSDirName, f), func() []byte {
			data, err := os.ReadFile(filepath.Join(cp.DataDir, pki.TLSDirName, f))
			if err != nil {
				t.Fatal(err)
			}
			return data
		}())
	}
	b, err := pki.Ensure(pki.Config{DataDir: dir, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func parseCSR(data []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	return x509.ParseCertificateRequest(block.Bytes)
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

func secondLine(s string) string {
	_, rest, _ := strings.Cut(s, "\n")
	return firstLine(rest)
}
