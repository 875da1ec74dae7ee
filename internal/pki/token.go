package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// tokenPrefix marks a token that pins the cluster CA: "K10" + hex SHA-256 of
// the CA certificate's DER + "::server:" + secret. An agent holding the token
// can then trust a CA it fetched over an unauthenticated connection.
const tokenPrefix = "K10"

// Token errors, for agents deciding whether to trust a server's CA.
var (
	// ErrTokenNotPinned means the token carries no CA hash.
	ErrTokenNotPinned = errors.New("pki: token does not pin a CA")
	// ErrTokenCAMismatch means the token pins a different CA.
	ErrTokenCAMismatch = errors.New("pki: token pins a different CA")
)

// ensureNodeToken loads the token at path, or creates one pinning ca. An
// existing token is kept verbatim: agents already hold it.
func ensureNodeToken(path string, ca *x509.Certificate) (string, bool, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if tok := strings.TrimSpace(string(data)); tok != "" {
			return tok, false, nil
		}
		// Empty: writes are atomic, so this was put there by hand and no
		// agent can hold it; make a real one.
	case !errors.Is(err, fs.ErrNotExist):
		return "", false, fmt.Errorf("pki: read node token: %w", err)
	}
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return "", false, fmt.Errorf("pki: node token: %w", err)
	}
	sum := sha256.Sum256(ca.Raw)
	tok := tokenPrefix + hex.EncodeToString(sum[:]) + "::server:" + hex.EncodeToString(secret)
	if err := writeFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", false, err
	}
	return tok, true, nil
}

// VerifyTokenCA checks that token pins ca. It returns ErrTokenNotPinned for a
// plain secret, so the caller can choose to fall back to another trust path.
func VerifyTokenCA(token string, ca *x509.Certificate) error {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return ErrTokenNotPinned
	}
	hashHex, _, ok := strings.Cut(rest, "::")
	if !ok {
		return ErrTokenNotPinned
	}
	want, err := hex.DecodeString(hashHex)
	if err != nil || len(want) != sha256.Size {
		return ErrTokenNotPinned
	}
	got := sha256.Sum256(ca.Raw)
	if subtle.ConstantTimeCompare(want, got[:]) != 1 {
		return ErrTokenCAMismatch
	}
	return nil
}
