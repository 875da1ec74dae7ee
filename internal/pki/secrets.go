package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ServerSecrets is what makes a host a server of the cluster rather than
// a node: the CA's key, with which it issues every certificate a server
// issues (its own serving and etcd certificates, node certificates), and
// the node token, which it hands to agents and checks. Servers of one
// cluster share them, as they share etcd.
type ServerSecrets struct {
	// CACert and CAKey are the cluster CA and its private key, PEM.
	CACert []byte `json:"caCert"`
	CAKey  []byte `json:"caKey"`
	// Token is the node token, K10<CA hash>::server:<secret>.
	Token string `json:"token"`
}

// ServerSecrets returns the secrets a joining server needs. Only a
// holder of the node token may be given them.
func (b *Bundle) ServerSecrets() (ServerSecrets, error) {
	key, ok := b.caKey.(*ecdsa.PrivateKey)
	if !ok {
		// An operator-supplied RSA or PKCS #8 key: send it as PKCS #8,
		// which parseKey reads back whatever the algorithm.
		der, err := x509.MarshalPKCS8PrivateKey(b.caKey)
		if err != nil {
			return ServerSecrets{}, fmt.Errorf("pki: encode CA key: %w", err)
		}
		return ServerSecrets{CACert: b.CAPEM, CAKey: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), Token: b.NodeToken}, nil
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return ServerSecrets{}, err
	}
	return ServerSecrets{CACert: b.CAPEM, CAKey: keyPEM, Token: b.NodeToken}, nil
}

// ErrOtherCluster means a data directory already holds the identity of a
// cluster other than the one being joined.
var ErrOtherCluster = errors.New("pki: data directory belongs to another cluster")

// InstallServerSecrets stores secrets in dataDir so that Ensure then loads
// the shared CA and token instead of making its own. It checks what it was
// given: the key must be the CA's, and both the token the operator passed
// (joinToken) and the one received must pin that CA, so a server that
// answered with someone else's CA is caught. A data directory that already
// holds this CA is left as it is; one holding another CA is refused with
// ErrOtherCluster rather than overwritten.
func InstallServerSecrets(dataDir, joinToken string, s ServerSecrets) error {
	ca, err := parseCert(s.CACert)
	if err != nil {
		return fmt.Errorf("pki: received CA: %w", err)
	}
	if !ca.IsCA {
		return errors.New("pki: received CA certificate is not a CA")
	}
	key, err := parseKey(s.CAKey)
	if err != nil {
		return fmt.Errorf("pki: received CA key: %w", err)
	}
	if pub, ok := ca.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return errors.New("pki: received CA key does not match the CA certificate")
	}
	if err := VerifyTokenCA(joinToken, ca); err != nil {
		return fmt.Errorf("pki: join token and received CA: %w", err)
	}
	if err := VerifyTokenCA(s.Token, ca); err != nil {
		return fmt.Errorf("pki: received token: %w", err)
	}

	tlsDir := filepath.Join(dataDir, TLSDirName)
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return fmt.Errorf("pki: create %s: %w", tlsDir, err)
	}
	// Both checks come before any write, so a refusal leaves the
	// directory as it was.
	tokenPath := filepath.Join(dataDir, NodeTokenFile)
	haveToken := false
	switch data, err := os.ReadFile(tokenPath); {
	case err == nil && strings.TrimSpace(string(data)) == s.Token:
		haveToken = true
	case err == nil && strings.TrimSpace(string(data)) != "":
		return fmt.Errorf("%w: %s holds a different token", ErrOtherCluster, tokenPath)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("pki: read node token: %w", err)
	}
	certPath, keyPath := filepath.Join(tlsDir, CACertFile), filepath.Join(tlsDir, CAKeyFile)
	have, err := os.ReadFile(certPath)
	switch {
	case err == nil:
		old, perr := parseCert(have)
		if perr != nil || !bytes.Equal(old.Raw, ca.Raw) {
			return fmt.Errorf("%w: %s holds a different CA", ErrOtherCluster, certPath)
		}
		if _, err := os.Stat(keyPath); errors.Is(err, fs.ErrNotExist) {
			if err := writeFileAtomic(keyPath, s.CAKey, 0o600); err != nil {
				return err
			}
		}
	case errors.Is(err, fs.ErrNotExist):
		if err := writeKeyPair(certPath, keyPath, encodeCert(ca), s.CAKey); err != nil {
			return err
		}
	default:
		return fmt.Errorf("pki: read CA: %w", err)
	}
	if haveToken {
		return nil
	}
	return writeFileAtomic(tokenPath, []byte(s.Token+"\n"), 0o600)
}

// PinnedCA finds, among the PEM certificates in data (a server's /cacerts
// answer, fetched before anything could be verified), the CA certificate
// token pins. It returns ErrTokenNotPinned for a token without a CA hash
// and ErrTokenCAMismatch when no certificate matches.
func PinnedCA(data []byte, token string) (*x509.Certificate, error) {
	if err := VerifyTokenCA(token, &x509.Certificate{}); errors.Is(err, ErrTokenNotPinned) {
		return nil, err
	}
	for rest := data; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return nil, ErrTokenCAMismatch
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil || !c.IsCA {
			continue
		}
		if VerifyTokenCA(token, c) == nil {
			return c, nil
		}
	}
}
