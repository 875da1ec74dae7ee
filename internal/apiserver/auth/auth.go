// Package auth decides who is calling the API server: a client certificate
// signed by the cluster CA or a known bearer token. It does not decide what
// the caller may do; that is authorization, a separate layer after this one.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Well-known names, spelled as upstream Kubernetes spells them so RBAC
// bindings written for upstream mean the same here.
const (
	// GroupMasters is the group with unrestricted access.
	GroupMasters = "system:masters"
	// GroupNodes is the group of every node's identity.
	GroupNodes = "system:nodes"
	// GroupAuthenticated is added to every authenticated user.
	GroupAuthenticated = "system:authenticated"
	// GroupUnauthenticated is the group of the anonymous user.
	GroupUnauthenticated = "system:unauthenticated"
	// UserAnonymous is who a request without credentials is, on paths that
	// allow it.
	UserAnonymous = "system:anonymous"
	// UserNodeBootstrap is who the node join token authenticates as.
	UserNodeBootstrap = "system:node-bootstrap"
)

// UserInfo is an authenticated caller.
type UserInfo struct {
	Name   string
	Groups []string
}

// TokenAuthenticator maps a bearer token to a user. Implementations must
// compare tokens in constant time.
type TokenAuthenticator interface {
	AuthenticateToken(ctx context.Context, token string) (UserInfo, bool)
}

// StaticTokens is a fixed token → user table, such as the node join token.
type StaticTokens map[string]UserInfo

var _ TokenAuthenticator = StaticTokens(nil)

// AuthenticateToken compares token against every entry without stopping at
// a match, so the time taken says nothing about which token, or which
// prefix, was close. Hashing first makes the comparison length-independent.
func (s StaticTokens) AuthenticateToken(_ context.Context, token string) (UserInfo, bool) {
	got := sha256.Sum256([]byte(token))
	var found UserInfo
	ok := 0
	for known, u := range s {
		want := sha256.Sum256([]byte(known))
		if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
			found, ok = u, 1
		}
	}
	return found, ok == 1
}

// Authenticator checks the credentials on a request.
type Authenticator struct {
	roots  *x509.CertPool
	tokens TokenAuthenticator
}

// New returns an Authenticator accepting client certificates that chain to
// roots and bearer tokens known to tokens. Either may be nil to disable that
// method.
func New(roots *x509.CertPool, tokens TokenAuthenticator) *Authenticator {
	return &Authenticator{roots: roots, tokens: tokens}
}

// outcome separates "no credentials" from "bad credentials": upstream lets
// the former through as anonymous on public paths but always rejects the
// latter, so a typo'd token fails loudly even on /healthz.
type outcome int

const (
	none outcome = iota
	authenticated
	rejected
)

// Authenticate returns the caller of r, if its credentials are valid.
func (a *Authenticator) Authenticate(r *http.Request) (UserInfo, bool) {
	u, o := a.authenticate(r)
	return u, o == authenticated
}

func (a *Authenticator) authenticate(r *http.Request) (UserInfo, outcome) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		u, ok := a.fromCert(r)
		if !ok {
			return UserInfo{}, rejected
		}
		return withAuthenticated(u), authenticated
	}
	scheme, token, found := strings.Cut(r.Header.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return UserInfo{}, none
	}
	token = strings.TrimSpace(token)
	if token == "" || a.tokens == nil {
		return UserInfo{}, rejected
	}
	u, ok := a.tokens.AuthenticateToken(r.Context(), token)
	if !ok {
		return UserInfo{}, rejected
	}
	return withAuthenticated(u), authenticated
}

// fromCert maps a client certificate to a user: CN is the name, O values
// the groups. The TLS layer has normally verified the chain already
// (VerifyClientCertIfGiven against the same CA); when it only requested a
// certificate, the chain is verified here, so this layer never trusts an
// unverified certificate whatever the listener's configuration.
func (a *Authenticator) fromCert(r *http.Request) (UserInfo, bool) {
	if a.roots == nil {
		return UserInfo{}, false
	}
	peers := r.TLS.PeerCertificates
	if len(r.TLS.VerifiedChains) == 0 {
		inter := x509.NewCertPool()
		for _, c := range peers[1:] {
			inter.AddCert(c)
		}
		if _, err := peers[0].Verify(x509.VerifyOptions{
			Roots:         a.roots,
			Intermediates: inter,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}); err != nil {
			return UserInfo{}, false
		}
	}
	leaf := peers[0]
	if leaf.Subject.CommonName == "" {
		return UserInfo{}, false
	}
	return UserInfo{Name: leaf.Subject.CommonName, Groups: slices.Clone(leaf.Subject.Organization)}, true
}

func withAuthenticated(u UserInfo) UserInfo {
	if !slices.Contains(u.Groups, GroupAuthenticated) {
		u.Groups = append(slices.Clone(u.Groups), GroupAuthenticated)
	}
	return u
}

// PublicPaths reports whether upstream lets anonymous callers read path:
// the health endpoints and /version, which the system:public-info-viewer
// role grants to everyone, and /cacerts, where joining agents fetch the
// cluster CA that their token pins.
func PublicPaths(path string) bool {
	switch path {
	case "/healthz", "/livez", "/readyz", "/version", "/version/", "/cacerts":
		return true
	}
	for _, p := range []string{"/healthz/", "/livez/", "/readyz/"} {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// Middleware authenticates each request and puts the user in its context.
// Requests without credentials reach next as system:anonymous only when
// public(path) says so; everything else unauthenticated gets upstream's 401
// Status. public may be nil, meaning no path is public.
func Middleware(a *Authenticator, next http.Handler, public func(path string) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, o := a.authenticate(r)
		switch {
		case o == authenticated:
		case o == none && public != nil && public(r.URL.Path):
			u = UserInfo{Name: UserAnonymous, Groups: []string{GroupUnauthenticated}}
		default:
			writeUnauthorized(w)
			return
		}
		// The credential has done its job; dropping it keeps it out of
		// anything downstream that logs or forwards headers, as upstream does.
		r.Header.Del("Authorization")
		next.ServeHTTP(w, r.WithContext(WithUser(r.Context(), u)))
	})
}

// unauthorizedBody is upstream's response, byte for byte, built once.
var unauthorizedBody = func() []byte {
	st := apierrors.NewUnauthorized("Unauthorized").ErrStatus
	st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	b, err := json.Marshal(st)
	if err != nil {
		panic(err) // a fixed struct always encodes
	}
	return append(b, '\n')
}()

func writeUnauthorized(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache, private")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write(unauthorizedBody)
}

type userKey struct{}

// WithUser returns ctx carrying u.
func WithUser(ctx context.Context, u UserInfo) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// UserFrom returns the user the middleware put in ctx.
func UserFrom(ctx context.Context) (UserInfo, bool) {
	u, ok := ctx.Value(userKey{}).(UserInfo)
	return u, ok
}
