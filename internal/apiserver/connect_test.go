package apiserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// testCA is a certificate authority for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// serving issues a serving certificate for a DNS name.
func (ca *testCA) serving(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestKubeletTransport checks how kubelets' serving certificates are
// judged: by the cluster CA's signature, not by the name, which need not
// match the address a Node reports.
func TestKubeletTransport(t *testing.T) {
	cluster, other := newTestCA(t), newTestCA(t)
	tests := []struct {
		name    string
		cfg     *tls.Config
		serving tls.Certificate
		wantErr bool
	}{
		{name: "cluster certificate for another name", cfg: &tls.Config{RootCAs: cluster.pool}, serving: cluster.serving(t, "node-a.example")},
		{name: "certificate from another CA", cfg: &tls.Config{RootCAs: cluster.pool}, serving: other.serving(t, "127.0.0.1"), wantErr: true},
		{name: "verification off by configuration", cfg: &tls.Config{InsecureSkipVerify: true}, serving: other.serving(t, "x")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, r.Proto)
			}))
			srv.TLS = &tls.Config{Certificates: []tls.Certificate{tt.serving}, NextProtos: []string{"h2", "http/1.1"}}
			srv.EnableHTTP2 = true
			srv.StartTLS()
			defer srv.Close()
			tr := kubeletTransport(tt.cfg)
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
			if tt.wantErr {
				if err == nil {
					resp.Body.Close()
					t.Fatal("request succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if string(b) != "HTTP/1.1" {
				t.Errorf("protocol %q, want HTTP/1.1 (upgrades need it)", b)
			}
		})
	}
	if kubeletTransport(nil) != nil {
		t.Error("a transport without TLS configuration")
	}
}

func TestKubeletError(t *testing.T) {
	gr := schema.GroupResource{Resource: "pods/log"}
	tests := []struct {
		name        string
		code        int
		body        string
		wantCode    int32
		wantReason  metav1.StatusReason
		wantMessage string
	}{
		{name: "status passes through", code: 400,
			body:     `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"previous terminated container \"app\" in pod \"web\" not found","reason":"BadRequest","code":400}`,
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest, wantMessage: `previous terminated container "app" in pod "web" not found`},
		{name: "text bad request", code: 400, body: "no such thing\n", wantCode: 400, wantReason: metav1.StatusReasonBadRequest, wantMessage: "no such thing"},
		{name: "text server error", code: 500, body: "boom", wantCode: 500, wantReason: metav1.StatusReasonInternalError, wantMessage: "Internal error occurred: boom"},
		{name: "text not found", code: 404, body: "gone", wantCode: 404, wantReason: metav1.StatusReasonNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			rec.WriteHeader(tt.code)
			_, _ = io.WriteString(rec, tt.body)
			st := statusOf(kubeletError(rec.Result(), gr, "web"))
			if st.Code != tt.wantCode || st.Reason != tt.wantReason || !strings.Contains(st.Message, tt.wantMessage) {
				t.Errorf("got %d %s %q, want %d %s %q", st.Code, st.Reason, st.Message, tt.wantCode, tt.wantReason, tt.wantMessage)
			}
		})
	}
}
