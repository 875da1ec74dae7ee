// Package join gives a node agent its cluster identity the way Kubernetes
// nodes get theirs: with the server's node token it fetches and pins the
// cluster CA, then obtains a client certificate for system:node:<name>
// and a kubelet serving certificate through CertificateSigningRequests.
// The result lives in a directory and is reused on later starts until it
// nears expiry, so a restarting agent needs neither the CSR API nor, while
// the token's CA is the stored one, the network.
package join

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/skiffhq/skiff/internal/pki"
)

// File names in Config.Dir. Keys are written before their certificates,
// so a present certificate means a complete pair.
const (
	CAFile          = "ca.crt"
	ClientCertFile  = "kubelet-client.crt"
	ClientKeyFile   = "kubelet-client.key"
	ServingCertFile = "kubelet-serving.crt"
	ServingKeyFile  = "kubelet-serving.key"
	KubeconfigFile  = "kubelet.kubeconfig"
)

// Node identity, spelled as upstream spells it.
const (
	// NodeUserPrefix starts a node's user name: system:node:<name>.
	NodeUserPrefix = "system:node:"
	// NodesGroup is the group every node certificate carries.
	NodesGroup = "system:nodes"
)

// Errors a caller may want to tell apart.
var (
	// ErrDenied means an approver denied a certificate request.
	ErrDenied = errors.New("certificate signing request denied")
	// ErrSigningFailed means the signer refused a request.
	ErrSigningFailed = errors.New("certificate signing failed")
)

// Config is what joining needs.
type Config struct {
	// Server is the API server's URL, https://host:port.
	Server string
	// Token is the server's node token, K10<CA hash>::server:<secret>.
	// Local ignores it.
	Token string
	// Dir holds the CA, the keys, the certificates and
	// kubelet.kubeconfig; it is created with mode 0700.
	Dir string
	// NodeName is the node's name; the client certificate is for
	// system:node:<NodeName>.
	NodeName string
	// NodeIPs and Hostnames are what the serving certificate covers;
	// with neither, it covers NodeName as a DNS name.
	NodeIPs   []net.IP
	Hostnames []string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Credentials are a node's identity, ready to use.
type Credentials struct {
	// Kubeconfig is the path of kubelet.kubeconfig: the server, the
	// cluster CA and the client certificate, all embedded.
	Kubeconfig string
	// ServingCert is the kubelet API's certificate and key.
	ServingCert tls.Certificate
	// ClientCAs holds the cluster CA, for verifying the client
	// certificates of those calling the kubelet API.
	ClientCAs *x509.CertPool
	// RenewAt is when the first of the two certificates is due for
	// renewal; calling Join (or Local) again then renews it.
	RenewAt time.Time
}

func (c *Config) validate() error {
	if c.Server == "" || c.Dir == "" || c.NodeName == "" {
		return errors.New("join: Server, Dir and NodeName are required")
	}
	u, err := url.Parse(c.Server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("join: server %q: want https://host:port", c.Server)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return os.MkdirAll(c.Dir, 0o700)
}

// Join obtains the node's credentials from the server at cfg.Server,
// reusing those in cfg.Dir that are still good. It returns an error
// wrapping pki.ErrTokenCAMismatch, before sending the token anywhere, when
// the server's CA is not the one the token pins; ErrDenied or
// ErrSigningFailed when a request is refused. It waits for approval until
// ctx ends.
func Join(ctx context.Context, cfg Config) (*Credentials, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	// A token without a CA hash cannot make an unverified CA trustworthy,
	// so fail before any network. Checking against an empty certificate
	// tells "not pinned" from "pins some CA" without knowing the format.
	if err := pki.VerifyTokenCA(cfg.Token, &x509.Certificate{}); errors.Is(err, pki.ErrTokenNotPinned) {
		return nil, fmt.Errorf("join: %w", err)
	}
	ca, caPEM, err := trustedCA(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return ensure(ctx, cfg, ca, caPEM, &csrIssuer{server: cfg.Server, token: cfg.Token, caPEM: caPEM, log: cfg.Logger})
}

// Local is Join for the agent embedded in `skiff server`, which holds the
// CA key: it issues the certificates directly, with no token and no
// request round trip, into the same files.
func Local(bundle *pki.Bundle, cfg Config) (*Credentials, error) {
	if bundle == nil {
		return nil, errors.New("join: Local needs the cluster PKI bundle")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(cfg.Dir, CAFile), bundle.CAPEM, 0o644); err != nil {
		return nil, err
	}
	return ensure(context.Background(), cfg, bundle.CA, bundle.CAPEM, localIssuer{bundle: bundle})
}

// ensure makes sure both certificates in cfg.Dir are good, asking iss for
// whichever is not, and writes the kubeconfig.
func ensure(ctx context.Context, cfg Config, ca *x509.Certificate, caPEM []byte, iss issuer) (*Credentials, error) {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	user := NodeUserPrefix + cfg.NodeName

	client := stored{cert: filepath.Join(cfg.Dir, ClientCertFile), key: filepath.Join(cfg.Dir, ClientKeyFile)}
	want := wanted{cn: user, orgs: []string{NodesGroup}, usage: x509.ExtKeyUsageClientAuth}
	pair, reason := client.load(roots, want, time.Now())
	if reason != "" {
		// An unexpired client certificate, even one due for renewal, is
		// the node's own identity to ask with; the token is the fallback.
		id, _ := client.usable(roots, want, time.Now())
		cfg.Logger.Info("requesting node client certificate", "node", cfg.NodeName, "reason", reason)
		var err error
		if pair, err = obtain(ctx, iss, client, kindClient, want, id, roots); err != nil {
			return nil, fmt.Errorf("join: client certificate: %w", err)
		}
	}
	certPEM, keyPEM, err := client.read()
	if err != nil {
		return nil, err
	}
	kubeconfig := filepath.Join(cfg.Dir, KubeconfigFile)
	// Rewritten each time: the server's URL may have changed.
	if err := pki.WriteKubeconfig(kubeconfig, pki.KubeconfigSpec{
		ServerURL: cfg.Server, CAPEM: caPEM, CertPEM: certPEM, KeyPEM: keyPEM, User: user,
	}); err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}

	serving := stored{cert: filepath.Join(cfg.Dir, ServingCertFile), key: filepath.Join(cfg.Dir, ServingKeyFile)}
	sw := wanted{cn: user, orgs: []string{NodesGroup}, usage: x509.ExtKeyUsageServerAuth, dns: cfg.Hostnames, ips: cfg.NodeIPs}
	if len(sw.dns) == 0 && len(sw.ips) == 0 {
		sw.dns = []string{cfg.NodeName}
	}
	servingPair, reason := serving.load(roots, sw, time.Now())
	if reason != "" {
		cfg.Logger.Info("requesting kubelet serving certificate", "node", cfg.NodeName, "reason", reason)
		// Asked for as the node, which the client certificate now is.
		id := &identity{certPEM: certPEM, keyPEM: keyPEM}
		if servingPair, err = obtain(ctx, iss, serving, kindServing, sw, id, roots); err != nil {
			return nil, fmt.Errorf("join: serving certificate: %w", err)
		}
	}
	renew := renewAt(pair.Leaf)
	if r := renewAt(servingPair.Leaf); r.Before(renew) {
		renew = r
	}
	return &Credentials{Kubeconfig: kubeconfig, ServingCert: servingPair, ClientCAs: roots, RenewAt: renew}, nil
}

// obtain gets a certificate for a fresh key from iss, checks that it is
// what was asked for, and only then stores the pair.
func obtain(ctx context.Context, iss issuer, dst stored, k kind, want wanted, id *identity, roots *x509.CertPool) (tls.Certificate, error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM, err := iss.issue(ctx, k, key, want, id)
	if err != nil {
		return tls.Certificate{}, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issued certificate does not match the key: %w", err)
	}
	if reason := check(pair.Leaf, roots, want, time.Now(), true); reason != "" {
		return tls.Certificate{}, fmt.Errorf("issued certificate is unusable: %s", reason)
	}
	if err := dst.store(certPEM, keyPEM); err != nil {
		return tls.Certificate{}, err
	}
	return pair, nil
}
