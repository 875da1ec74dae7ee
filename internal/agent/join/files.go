package join

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// renewFraction: a certificate with less than this share of its lifetime
// left is renewed, as a kubelet rotates its own. A year-long certificate
// is renewed about five weeks before it ends.
const renewFraction = 10

// identity is a client certificate and key in PEM, to authenticate with.
type identity struct{ certPEM, keyPEM []byte }

// stored is a key pair's two files.
type stored struct{ cert, key string }

// wanted is what a certificate must say to be of use.
type wanted struct {
	cn    string
	orgs  []string
	usage x509.ExtKeyUsage
	dns   []string
	ips   []net.IP
}

// load returns the stored pair when it can be used as is, or the reason
// it must be replaced. Defects are reasons, not errors: a replacement is
// always possible.
func (s stored) load(roots *x509.CertPool, want wanted, now time.Time) (tls.Certificate, string) {
	pair, err := tls.LoadX509KeyPair(s.cert, s.key)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return tls.Certificate{}, "missing"
	case err != nil:
		return tls.Certificate{}, "unreadable or key mismatch"
	}
	if reason := check(pair.Leaf, roots, want, now, true); reason != "" {
		return tls.Certificate{}, reason
	}
	return pair, ""
}

// usable returns the stored pair as an identity when it still proves who
// the node is: unexpired and the right subject, however little time it
// has left.
func (s stored) usable(roots *x509.CertPool, want wanted, now time.Time) (*identity, bool) {
	pair, err := tls.LoadX509KeyPair(s.cert, s.key)
	if err != nil || check(pair.Leaf, roots, want, now, false) != "" {
		return nil, false
	}
	certPEM, keyPEM, err := s.read()
	if err != nil {
		return nil, false
	}
	return &identity{certPEM: certPEM, keyPEM: keyPEM}, true
}

// check says why leaf does not serve want at now, or "". fresh also
// requires the names to match exactly and more than a tenth of the
// lifetime left.
func check(leaf *x509.Certificate, roots *x509.CertPool, want wanted, now time.Time, fresh bool) string {
	if leaf == nil {
		return "no certificate"
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{want.usage}}); err != nil {
		return "not valid under the cluster CA"
	}
	if leaf.Subject.CommonName != want.cn || !slices.Equal(leaf.Subject.Organization, want.orgs) {
		return "subject changed"
	}
	if !fresh {
		return ""
	}
	if !sameStrings(leaf.DNSNames, want.dns) || !sameIPs(leaf.IPAddresses, want.ips) {
		return "names changed"
	}
	if !now.Before(renewAt(leaf)) {
		return "near expiry"
	}
	return ""
}

// renewAt is when a certificate enters the last tenth of its lifetime.
func renewAt(c *x509.Certificate) time.Time {
	if c == nil {
		return time.Time{}
	}
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotAfter.Add(-life / renewFraction)
}

func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func sameIPs(a, b []net.IP) bool {
	str := func(ips []net.IP) []string {
		out := make([]string, 0, len(ips))
		for _, ip := range ips {
			out = append(out, ip.String())
		}
		return out
	}
	return sameStrings(str(a), str(b))
}

func (s stored) read() (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(s.cert); err == nil {
		keyPEM, err = os.ReadFile(s.key)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("join: read credentials: %w", err)
	}
	return certPEM, keyPEM, nil
}

// store writes the key before the certificate: a certificate on disk
// always has its key beside it.
func (s stored) store(certPEM, keyPEM []byte) error {
	if err := writeFile(s.key, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(s.cert, certPEM, 0o644)
}

// newKey makes a P-256 key: small, fast, and what the CA itself uses.
func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("join: generate key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("join: encode key: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// writeFile replaces path in one rename, so neither a reader nor a crash
// ever sees half a credential.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("join: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	err = tmp.Chmod(mode)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("join: write %s: %w", path, err)
	}
	return nil
}
