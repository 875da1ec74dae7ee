// Package pki gives a skiff server its cluster identity: a CA, the API
// server's serving certificate, an admin client certificate with its
// kubeconfig, and the node join token. Everything lives under the server's
// data directory and is created on first start and reused afterwards, so a
// restart never invalidates credentials that agents and users already hold.
package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names under the data directory. They are part of the on-disk format:
// operators back them up and agents' docs point at them.
const (
	// TLSDirName is the subdirectory (mode 0700) holding certificates and keys.
	TLSDirName = "tls"
	// CACertFile and CAKeyFile are the cluster CA.
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
	// ServingCertFile and ServingKeyFile are the API server's certificate.
	ServingCertFile = "server.crt"
	ServingKeyFile  = "server.key"
	// AdminCertFile and AdminKeyFile are the admin client certificate.
	AdminCertFile = "admin.crt"
	AdminKeyFile  = "admin.key"
	// AdminKubeconfig is the admin kubeconfig, directly under the data dir.
	AdminKubeconfig = "admin.kubeconfig"
	// NodeTokenFile holds the node join token, directly under the data dir.
	NodeTokenFile = "node-token"
)

// Defaults and identities, matching upstream's conventions.
const (
	// DefaultServiceIP is the first address of the default service CIDR.
	DefaultServiceIP = "10.43.0.1"
	// DefaultAPIServer is the admin kubeconfig's server when none is given.
	DefaultAPIServer = "https://127.0.0.1:6443"
	// AdminUser is the admin certificate's CN and the kubeconfig user name.
	AdminUser = "admin"
	// SystemMastersGroup is the group upstream grants unrestricted access.
	SystemMastersGroup = "system:masters"
)

// Validity periods. Leaves are short-lived relative to the CA so that a
// leaked leaf ages out; they are renewed on a start that finds them within
// renewBefore of expiry.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
	renewBefore  = 90 * 24 * time.Hour
	// clockSkew back-dates NotBefore so that a node whose clock is a little
	// behind the server's still accepts a certificate issued just now.
	clockSkew = time.Hour
)

// Errors callers may need to tell apart.
var (
	// ErrCAKeyMissing means ca.crt exists without ca.key. Skiff refuses to
	// replace a CA that clients may already trust.
	ErrCAKeyMissing = errors.New("pki: CA certificate present but its key is missing")
	// ErrCAExpired means the stored CA is no longer valid; rotating it is an
	// operator decision, not something a restart should do silently.
	ErrCAExpired = errors.New("pki: CA certificate has expired")
)

// Config says where the credentials live and what the serving certificate
// must cover.
type Config struct {
	// DataDir is the server's data directory; files go under DataDir/tls.
	DataDir string
	// SANs are extra subject alternative names (--tls-san): each an IP
	// address or a DNS name.
	SANs []string
	// ServiceIP is the first address of the service CIDR, where in-cluster
	// clients reach the API server. Default 10.43.0.1.
	ServiceIP net.IP
	// APIServerURL is written into the admin kubeconfig.
	// Default https://127.0.0.1:6443.
	APIServerURL string
	// Logger receives a line for every credential created or reissued.
	// Default slog.Default().
	Logger *slog.Logger
	// Now is the clock for validity periods and renewal. Default time.Now.
	Now func() time.Time
	// hostSANs overrides host discovery in tests; nil means ask the OS.
	hostSANs func() ([]string, error)
}

// Bundle is the loaded cluster identity a server runs with.
type Bundle struct {
	// CA is the cluster CA certificate; CAPEM its PEM form, for kubeconfigs.
	CA    *x509.Certificate
	CAPEM []byte
	// CAPool holds just the cluster CA, for verifying clients and servers.
	CAPool *x509.CertPool
	// ServingCert is the API server's certificate and key.
	ServingCert tls.Certificate
	// NodeToken lets agents join; it is also accepted as a bearer token.
	NodeToken string
	// AdminKubeconfigPath is DataDir/admin.kubeconfig.
	AdminKubeconfigPath string

	caKey   crypto.Signer
	now     func() time.Time
	dataDir string
}

func (c *Config) setDefaults() error {
	if c.DataDir == "" {
		return errors.New("pki: DataDir is required")
	}
	if c.ServiceIP == nil {
		c.ServiceIP = net.ParseIP(DefaultServiceIP)
	}
	if c.APIServerURL == "" {
		c.APIServerURL = DefaultAPIServer
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.hostSANs == nil {
		c.hostSANs = hostSANs
	}
	return nil
}

// Ensure loads the cluster identity from cfg.DataDir, creating whatever is
// missing. The CA and node token are never regenerated once written; the
// serving and admin certificates are reissued from the same CA when they no
// longer fit (other SANs requested, near expiry, or not signed by the CA).
func Ensure(cfg Config) (*Bundle, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	tlsDir := filepath.Join(cfg.DataDir, TLSDirName)
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: create %s: %w", tlsDir, err)
	}
	now := cfg.Now()

	ca, caKey, created, err := ensureCA(tlsDir, now)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("created cluster CA", "path", filepath.Join(tlsDir, CACertFile))
	}
	b := &Bundle{
		CA:                  ca,
		CAPEM:               encodeCert(ca),
		CAPool:              x509.NewCertPool(),
		caKey:               caKey,
		now:                 cfg.Now,
		dataDir:             cfg.DataDir,
		AdminKubeconfigPath: filepath.Join(cfg.DataDir, AdminKubeconfig),
	}
	b.CAPool.AddCert(ca)

	want, err := servingSANs(cfg)
	if err != nil {
		return nil, err
	}
	b.ServingCert, err = ensureServing(b, tlsDir, want, now, log)
	if err != nil {
		return nil, err
	}

	adminCert, adminKey, err := ensureAdmin(b, tlsDir, now, log)
	if err != nil {
		return nil, err
	}
	// Rewritten on every start: the URL (port) may have changed, and the
	// file is cheap to produce.
	if err := WriteKubeconfig(b.AdminKubeconfigPath, KubeconfigSpec{
		ServerURL: cfg.APIServerURL,
		CAPEM:     b.CAPEM,
		CertPEM:   adminCert,
		KeyPEM:    adminKey,
		User:      AdminUser,
	}); err != nil {
		return nil, err
	}

	b.NodeToken, created, err = ensureNodeToken(filepath.Join(cfg.DataDir, NodeTokenFile), ca)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("created node token", "path", filepath.Join(cfg.DataDir, NodeTokenFile))
	}
	return b, nil
}

// ensureServing returns the serving certificate, reusing the stored one when
// it still fits.
func ensureServing(b *Bundle, dir string, want sanSet, now time.Time, log *slog.Logger) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, ServingCertFile), filepath.Join(dir, ServingKeyFile)
	pair, leaf, reason := loadLeaf(b, certPath, keyPath, x509.ExtKeyUsageServerAuth, now)
	if reason == "" && !sansOf(leaf).equal(want) {
		reason = "SANs changed"
	}
	if reason == "" {
		return pair, nil
	}
	certPEM, keyPEM, err := b.issue(leafTemplate{
		cn:    "skiff-apiserver",
		usage: x509.ExtKeyUsageServerAuth,
		dns:   want.dns,
		ips:   want.ips,
	})
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := writeKeyPair(certPath, keyPath, certPEM, keyPEM); err != nil {
		return tls.Certificate{}, err
	}
	log.Info("issued API server certificate", "reason", reason, "dnsNames", want.dns, "ips", want.ipStrings())
	pair, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: load issued serving certificate: %w", err)
	}
	return pair, nil
}

// ensureAdmin returns the admin client certificate and key as PEM.
func ensureAdmin(b *Bundle, dir string, now time.Time, log *slog.Logger) (certPEM, keyPEM []byte, err error) {
	certPath, keyPath := filepath.Join(dir, AdminCertFile), filepath.Join(dir, AdminKeyFile)
	_, leaf, reason := loadLeaf(b, certPath, keyPath, x509.ExtKeyUsageClientAuth, now)
	if reason == "" && (leaf.Subject.CommonName != AdminUser ||
		len(leaf.Subject.Organization) != 1 || leaf.Subject.Organization[0] != SystemMastersGroup) {
		reason = "subject changed"
	}
	if reason == "" {
		certPEM, err = os.ReadFile(certPath)
		if err == nil {
			keyPEM, err = os.ReadFile(keyPath)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("pki: read admin credentials: %w", err)
		}
		return certPEM, keyPEM, nil
	}
	certPEM, keyPEM, err = b.IssueClientCert(AdminUser, []string{SystemMastersGroup})
	if err != nil {
		return nil, nil, err
	}
	if err := writeKeyPair(certPath, keyPath, certPEM, keyPEM); err != nil {
		return nil, nil, err
	}
	log.Info("issued admin client certificate", "reason", reason)
	return certPEM, keyPEM, nil
}

// loadLeaf loads a stored leaf certificate and says why it must be reissued,
// or "" when it can be kept. Any defect is a reason to reissue rather than an
// error: leaves are cheap and derived entirely from the CA.
func loadLeaf(b *Bundle, certPath, keyPath string, usage x509.ExtKeyUsage, now time.Time) (tls.Certificate, *x509.Certificate, string) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return tls.Certificate{}, nil, "missing"
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return tls.Certificate{}, nil, "key missing"
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil || pair.Leaf == nil {
		return tls.Certificate{}, nil, "unreadable or key mismatch"
	}
	leaf := pair.Leaf
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:       b.CAPool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{usage},
	}); err != nil {
		return tls.Certificate{}, nil, "not valid under the cluster CA"
	}
	if leaf.NotAfter.Sub(now) < renewBefore {
		return tls.Certificate{}, nil, "near expiry"
	}
	return pair, leaf, ""
}
