package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// ensureCA loads the CA from dir or creates it. ca.crt is the commit point:
// the key is written first, so a crash in between leaves a key without a
// certificate, which no one can have trusted and which is safe to replace.
func ensureCA(dir string, now time.Time) (*x509.Certificate, crypto.Signer, bool, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, err := os.ReadFile(certPath)
	switch {
	case err == nil:
		ca, key, err := loadCA(certPEM, keyPath)
		if err != nil {
			return nil, nil, false, err
		}
		if now.After(ca.NotAfter) {
			return nil, nil, false, fmt.Errorf("%w: %s expired at %s", ErrCAExpired, certPath, ca.NotAfter)
		}
		return ca, key, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, nil, false, fmt.Errorf("pki: read CA: %w", err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, false, fmt.Errorf("pki: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, false, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// Each cluster's CA needs its own name, not just its own key: TLS
		// clients pick which client certificate to send by the issuer names
		// the server accepts, so two clusters whose CAs share a name (made
		// in the same second) would be offered each other's certificates.
		Subject:               pkix.Name{CommonName: fmt.Sprintf("skiff-ca@%d-%08x", now.Unix(), serial.Uint64()&0xffffffff)},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, false, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, false, fmt.Errorf("pki: parse CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, false, err
	}
	if err := writeKeyPair(certPath, keyPath, encodeCert(ca), keyPEM); err != nil {
		return nil, nil, false, err
	}
	return ca, key, true, nil
}

func loadCA(certPEM []byte, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	ca, err := parseCert(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	if !ca.IsCA {
		return nil, nil, errors.New("pki: stored CA certificate is not a CA")
	}
	keyPEM, err := os.ReadFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w: %s", ErrCAKeyMissing, keyPath)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("pki: read CA key: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: CA key: %w", err)
	}
	if pub, ok := ca.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, nil, errors.New("pki: CA key does not match CA certificate")
	}
	return ca, key, nil
}

// leafTemplate is what varies between the leaves skiff issues.
type leafTemplate struct {
	cn    string
	orgs  []string
	usage x509.ExtKeyUsage
	// also lists usages beyond usage: an etcd member's certificate both
	// serves and, towards its peers, authenticates as a client.
	also []x509.ExtKeyUsage
	dns  []string
	ips  []net.IP
}

// issue creates a fresh key and a certificate for it signed by the CA.
func (b *Bundle) issue(t leafTemplate) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate key for %q: %w", t.cn, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := b.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: t.cn, Organization: t.orgs},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  append([]x509.ExtKeyUsage{t.usage}, t.also...),
		DNSNames:     t.dns,
		IPAddresses:  t.ips,
	}
	// A leaf must not outlive its issuer: clients would reject it anyway.
	if tmpl.NotAfter.After(b.CA.NotAfter) {
		tmpl.NotAfter = b.CA.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, b.CA, key.Public(), b.caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: sign certificate for %q: %w", t.cn, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// IssueClientCert issues a client certificate signed by the cluster CA. The
// API server maps its CN to the user name and its O values to groups, so a
// node's certificate is ("system:node:<name>", ["system:nodes"]).
func (b *Bundle) IssueClientCert(cn string, orgs []string) (certPEM, keyPEM []byte, err error) {
	if cn == "" {
		return nil, nil, errors.New("pki: client certificate needs a common name")
	}
	return b.issue(leafTemplate{cn: cn, orgs: orgs, usage: x509.ExtKeyUsageClientAuth})
}

// IssueServingCert issues a server certificate signed by the cluster CA, for
// endpoints other than the API server (a kubelet's HTTPS API on 10250).
func (b *Bundle) IssueServingCert(cn string, dnsNames []string, ips []net.IP) (certPEM, keyPEM []byte, err error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		return nil, nil, errors.New("pki: serving certificate needs at least one DNS name or IP")
	}
	return b.issue(leafTemplate{cn: cn, usage: x509.ExtKeyUsageServerAuth, dns: dnsNames, ips: ips})
}

func newSerial() (*big.Int, error) {
	// 128 random bits: unique without keeping a serial counter on disk.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("pki: serial number: %w", err)
	}
	return serial, nil
}

func encodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func parseCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return c, nil
}

// parseKey accepts SEC 1 and PKCS #8 keys, so an operator can drop in a CA
// made by other tools.
func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse EC key: %w", err)
		}
		return k, nil
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse RSA key: %w", err)
		}
		return k, nil
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse PKCS #8 key: %w", err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("key type %T cannot sign", k)
		}
		return s, nil
	default:
		return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
	}
}

// writeKeyPair writes the key before the certificate: the certificate's
// presence is what later starts take as "this pair is complete".
func writeKeyPair(certPath, keyPath string, certPEM, keyPEM []byte) error {
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certPath, certPEM, 0o644)
}

// writeFileAtomic replaces path in one rename, so a reader (or a crash)
// never sees a half-written credential.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	return nil
}
