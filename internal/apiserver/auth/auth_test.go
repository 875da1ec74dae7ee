package auth

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiffhq/skiff/internal/pki"
)

// upstreamUnauthorized is kube-apiserver's 401 body.
const upstreamUnauthorized = `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}`

// seen is what the echo handler reports about the request it received.
type seen struct {
	User          UserInfo
	HasUser       bool
	Authorization string
}

func echo(w http.ResponseWriter, r *http.Request) {
	u, ok := UserFrom(r.Context())
	_ = json.NewEncoder(w).Encode(seen{User: u, HasUser: ok, Authorization: r.Header.Get("Authorization")})
}

// cluster is a CA with a TLS test server guarded by the middleware.
type cluster struct {
	bundle *pki.Bundle
	srv    *httptest.Server
}

// newCluster starts a server; clientAuth overrides the TLS layer's client
// certificate policy, to prove the HTTP layer verifies on its own.
func newCluster(t *testing.T, clientAuth *tls.ClientAuthType) *cluster {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	b, err := pki.Ensure(pki.Config{
		DataDir:      t.TempDir(),
		APIServerURL: "https://" + srv.Listener.Addr().String(),
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	a := New(b.CAPool, StaticTokens{
		b.NodeToken: {Name: UserNodeBootstrap, Groups: []string{GroupNodes}},
	})
	srv.Config.Handler = Middleware(a, http.HandlerFunc(echo), PublicPaths)
	srv.TLS = pki.ServerTLSConfig(b)
	// Rejected handshakes are expected here; keep them out of test output.
	srv.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)
	if clientAuth != nil {
		srv.TLS.ClientAuth = *clientAuth
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &cluster{bundle: b, srv: srv}
}

// client trusts the cluster CA and offers cert, if any. Go's client only
// sends a certificate the server's acceptable-CA list names; force sends it
// regardless, as a hostile or misconfigured client would.
func (c *cluster) client(cert *tls.Certificate, force bool) *http.Client {
	cfg := &tls.Config{RootCAs: c.bundle.CAPool}
	switch {
	case cert != nil && force:
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	case cert != nil:
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
}

// mustKeyPair returns a function taking an Issue* call's results, since Go
// cannot spread multiple results after another argument.
func mustKeyPair(t *testing.T) func(certPEM, keyPEM []byte, err error) *tls.Certificate {
	return func(certPEM, keyPEM []byte, err error) *tls.Certificate {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return &pair
	}
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	admin := mustKeyPair(t)(c.bundle.IssueClientCert("admin", []string{"system:masters"}))
	foreign := newCluster(t, nil).bundle
	stranger := mustKeyPair(t)(foreign.IssueClientCert("admin", []string{"system:masters"}))

	for _, tc := range []struct {
		name   string
		path   string
		cert   *tls.Certificate
		header string
		force  bool
		// wantTLSError: the handshake itself must fail.
		wantTLSError bool
		wantCode     int
		wantUser     UserInfo
	}{
		{
			name: "client cert", path: "/api/v1/pods", cert: admin, wantCode: 200,
			wantUser: UserInfo{Name: "admin", Groups: []string{"system:masters", GroupAuthenticated}},
		},
		{name: "no credentials", path: "/api/v1/pods", wantCode: 401},
		{name: "cert from another CA is withheld", path: "/api/v1/pods", cert: stranger, wantCode: 401},
		{name: "cert from another CA sent anyway", path: "/api/v1/pods", cert: stranger, force: true, wantTLSError: true},
		{
			name: "node token", path: "/api/v1/nodes", header: "Bearer " + c.bundle.NodeToken, wantCode: 200,
			wantUser: UserInfo{Name: UserNodeBootstrap, Groups: []string{GroupNodes, GroupAuthenticated}},
		},
		{
			name: "lower-case scheme", path: "/api", header: "bearer " + c.bundle.NodeToken, wantCode: 200,
			wantUser: UserInfo{Name: UserNodeBootstrap, Groups: []string{GroupNodes, GroupAuthenticated}},
		},
		{name: "wrong token", path: "/api", header: "Bearer " + c.bundle.NodeToken + "x", wantCode: 401},
		{name: "token prefix", path: "/api", header: "Bearer " + c.bundle.NodeToken[:10], wantCode: 401},
		{name: "empty token", path: "/api", header: "Bearer ", wantCode: 401},
		{name: "basic auth is not a credential", path: "/api", header: "Basic YWRtaW46YWRtaW4=", wantCode: 401},
		{
			name: "anonymous healthz", path: "/healthz", wantCode: 200,
			wantUser: UserInfo{Name: UserAnonymous, Groups: []string{GroupUnauthenticated}},
		},
		{
			name: "anonymous readyz check", path: "/readyz/etcd", wantCode: 200,
			wantUser: UserInfo{Name: UserAnonymous, Groups: []string{GroupUnauthenticated}},
		},
		{
			name: "anonymous livez", path: "/livez", wantCode: 200,
			wantUser: UserInfo{Name: UserAnonymous, Groups: []string{GroupUnauthenticated}},
		},
		{
			name: "anonymous version", path: "/version", wantCode: 200,
			wantUser: UserInfo{Name: UserAnonymous, Groups: []string{GroupUnauthenticated}},
		},
		{
			name: "anonymous cacerts", path: "/cacerts", wantCode: 200,
			wantUser: UserInfo{Name: UserAnonymous, Groups: []string{GroupUnauthenticated}},
		},
		{name: "cacerts is no prefix", path: "/cacerts/x", wantCode: 401},
		{name: "look-alike path is not public", path: "/healthzz", wantCode: 401},
		{name: "wrong token fails even on healthz", path: "/healthz", header: "Bearer nope", wantCode: 401},
		{
			name: "credentials on a public path still identify", path: "/healthz", cert: admin, wantCode: 200,
			wantUser: UserInfo{Name: "admin", Groups: []string{"system:masters", GroupAuthenticated}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(http.MethodGet, c.srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, err := c.client(tc.cert, tc.force).Do(req)
			if tc.wantTLSError {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("request succeeded with status %d, want a TLS failure", resp.StatusCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tc.wantCode, body)
			}
			if tc.wantCode == 401 {
				if got := strings.TrimSpace(string(body)); got != upstreamUnauthorized {
					t.Errorf("body = %s\nwant   %s", got, upstreamUnauthorized)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q", ct)
				}
				return
			}
			var got seen
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("decode %s: %v", body, err)
			}
			if !got.HasUser || got.User.Name != tc.wantUser.Name || !slices.Equal(got.User.Groups, tc.wantUser.Groups) {
				t.Errorf("user = %+v (present %v), want %+v", got.User, got.HasUser, tc.wantUser)
			}
			if got.Authorization != "" {
				t.Errorf("handler saw Authorization %q, want it stripped", got.Authorization)
			}
		})
	}
}

// TestCertVerifiedWithoutTLSVerification covers a listener that only
// requests client certificates: the HTTP layer must still reject any that
// do not chain to the CA as client certificates.
func TestCertVerifiedWithoutTLSVerification(t *testing.T) {
	t.Parallel()
	request := tls.RequestClientCert
	c := newCluster(t, &request)
	foreign := newCluster(t, nil).bundle
	servingOnly := mustKeyPair(t)(c.bundle.IssueServingCert("x", []string{"x"}, nil))

	for _, tc := range []struct {
		name     string
		cert     *tls.Certificate
		wantCode int
	}{
		{"own CA", mustKeyPair(t)(c.bundle.IssueClientCert("alice", nil)), 200},
		{"another CA", mustKeyPair(t)(foreign.IssueClientCert("admin", []string{"system:masters"})), 401},
		{"server-only certificate", servingOnly, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, err := c.client(tc.cert, true).Get(c.srv.URL + "/api")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantCode {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.wantCode)
			}
		})
	}
}

// TestAdminKubeconfigAuthenticates drives the server the way kubectl would:
// through client-go built from the admin kubeconfig.
func TestAdminKubeconfigAuthenticates(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	rc, err := clientcmd.BuildConfigFromFlags("", c.bundle.AdminKubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(rc.Host + "/api")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got seen
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || got.User.Name != "admin" || !slices.Contains(got.User.Groups, GroupMasters) {
		t.Errorf("status %d user %+v, want 200 as admin in %s", resp.StatusCode, got.User, GroupMasters)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("protocol %s, want HTTP/2", resp.Proto)
	}
}

func TestStaticTokens(t *testing.T) {
	t.Parallel()
	toks := StaticTokens{
		"alpha": {Name: "a"},
		"beta":  {Name: "b", Groups: []string{"g"}},
	}
	for _, tc := range []struct {
		token, wantName string
		wantOK          bool
	}{
		{"alpha", "a", true},
		{"beta", "b", true},
		{"alph", "", false},
		{"alphaa", "", false},
		{"", "", false},
	} {
		t.Run("token "+tc.token, func(t *testing.T) {
			t.Parallel()
			u, ok := toks.AuthenticateToken(context.Background(), tc.token)
			if ok != tc.wantOK || u.Name != tc.wantName {
				t.Errorf("got %+v, %v; want %q, %v", u, ok, tc.wantName, tc.wantOK)
			}
		})
	}
}

func TestUserFromEmptyContext(t *testing.T) {
	t.Parallel()
	if u, ok := UserFrom(context.Background()); ok {
		t.Errorf("UserFrom(empty) = %+v, true; want false", u)
	}
}

func TestServerTLSConfig(t *testing.T) {
	t.Parallel()
	c := newCluster(t, nil)
	cfg := pki.ServerTLSConfig(c.bundle)
	if cfg.ClientAuth != tls.VerifyClientCertIfGiven || cfg.MinVersion != tls.VersionTLS12 ||
		!slices.Equal(cfg.NextProtos, []string{"h2", "http/1.1"}) || cfg.ClientCAs == nil {
		t.Errorf("ServerTLSConfig = ClientAuth %v, MinVersion %x, NextProtos %v, ClientCAs %v",
			cfg.ClientAuth, cfg.MinVersion, cfg.NextProtos, cfg.ClientCAs)
	}
	// A TLS 1.1 client must be refused.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.bundle.CAPool, MaxVersion: tls.VersionTLS11}}
	if resp, err := (&http.Client{Transport: tr}).Get(c.srv.URL + "/healthz"); err == nil {
		resp.Body.Close()
		t.Error("TLS 1.1 handshake succeeded")
	}
}
