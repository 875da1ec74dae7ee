package join

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/skiffhq/skiff/internal/pki"
)

// CAPath is the server path serving the cluster CA to anyone.
const CAPath = "/cacerts"

// maxCABytes bounds what an unverified server can make us read.
const maxCABytes = 1 << 20

// trustedCA returns the cluster CA the token pins: the one stored in
// cfg.Dir when it still matches, so a restart needs no network, else the
// server's, fetched without verification and accepted only if the token
// pins it.
func trustedCA(ctx context.Context, cfg Config) (*x509.Certificate, []byte, error) {
	path := filepath.Join(cfg.Dir, CAFile)
	if data, err := os.ReadFile(path); err == nil {
		if ca, caPEM, err := pinnedCA(data, cfg.Token); err == nil {
			return ca, caPEM, nil
		}
	}
	data, err := FetchCA(ctx, cfg.Server)
	if err != nil {
		return nil, nil, err
	}
	ca, caPEM, err := pinnedCA(data, cfg.Token)
	if err != nil {
		return nil, nil, fmt.Errorf("join: CA from %s: %w", cfg.Server, err)
	}
	if err := writeFile(path, caPEM, 0o644); err != nil {
		return nil, nil, err
	}
	return ca, caPEM, nil
}

// FetchCA reads the CA bundle of the server at URL server, for checking
// against a token's pin (pki.PinnedCA) before anything else is sent: an
// agent or a server joining a cluster. Nothing the server says is trusted
// yet, so nothing of ours (no token, no certificate) goes with the request.
func FetchCA(ctx context.Context, server string) ([]byte, error) {
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		// Verified afterwards against the token's hash, which is the
		// point: the server's certificate chains to the CA being fetched.
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(server, "/")+CAPath, nil)
	if err != nil {
		return nil, fmt.Errorf("join: fetch CA: %w", err)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("join: fetch CA: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("join: fetch CA from %s: %s", server, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxCABytes))
	if err != nil {
		return nil, fmt.Errorf("join: fetch CA: %w", err)
	}
	return data, nil
}

// pinnedCA finds, among the PEM certificates in data, the CA certificate
// the token pins, and returns it alone.
func pinnedCA(data []byte, token string) (*x509.Certificate, []byte, error) {
	c, err := pki.PinnedCA(data, token)
	if err != nil {
		return nil, nil, err
	}
	return c, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), nil
}
