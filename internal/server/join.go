package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/skiffhq/skiff/internal/agent/join"
	"github.com/skiffhq/skiff/internal/pki"
)

// validateJoin checks the join settings before anything starts.
func (s *Server) validateJoin() error {
	if s.cfg.JoinURL == "" {
		return nil
	}
	u, err := url.Parse(s.cfg.JoinURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("join: server %q: want https://host:port", s.cfg.JoinURL)
	}
	if s.cfg.ClusterInit {
		return errors.New("join: --cluster-init starts a new cluster; it cannot be combined with --server")
	}
	if len(s.cfg.EtcdEndpoints) > 0 {
		return errors.New("join: servers on an external etcd share it already; --server is for the embedded etcd")
	}
	return nil
}

// ensureServerSecrets makes sure the data dir holds the cluster's CA, with
// its key, and node token before the PKI loads, fetching them from
// JoinURL on the first start. Later starts need no network: the token
// must still pin the stored CA.
func (s *Server) ensureServerSecrets(ctx context.Context) error {
	if s.cfg.JoinURL == "" {
		return nil
	}
	if err := pki.VerifyTokenCA(s.cfg.Token, &x509.Certificate{}); errors.Is(err, pki.ErrTokenNotPinned) {
		return fmt.Errorf("join: --token must be the server's node token (K10<CA hash>::server:<secret>): %w", err)
	}
	if data, err := os.ReadFile(filepath.Join(s.cfg.DataDir, pki.TLSDirName, pki.CACertFile)); err == nil {
		if _, err := pki.PinnedCA(data, s.cfg.Token); err != nil {
			return fmt.Errorf("join: %s holds a CA the token does not pin: %w", s.cfg.DataDir, err)
		}
		if _, err := os.Stat(filepath.Join(s.cfg.DataDir, pki.TLSDirName, pki.CAKeyFile)); err == nil {
			return nil // joined before
		}
	}
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	client, err := s.joinClient(ctx)
	if err != nil {
		return err
	}
	defer client.close()
	var secrets pki.ServerSecrets
	if err := retryCluster(ctx, true, func() (err error) {
		secrets, err = client.bootstrap(ctx)
		return err
	}); err != nil {
		return fmt.Errorf("join %s: fetch server secrets: %w", s.cfg.JoinURL, err)
	}
	if err := pki.InstallServerSecrets(s.cfg.DataDir, s.cfg.Token, secrets); err != nil {
		return fmt.Errorf("join %s: %w", s.cfg.JoinURL, err)
	}
	s.log.Info("received the cluster CA and token", "server", s.cfg.JoinURL)
	return nil
}

// joinClient returns a cluster API client for JoinURL that trusts the CA
// the token pins: fetched without verification (the server's
// certificate chains to the very CA being fetched) and accepted only if
// the token pins it. The token goes nowhere before that.
func (s *Server) joinClient(ctx context.Context) (*ClusterClient, error) {
	var data []byte
	err := retryCluster(ctx, true, func() (err error) {
		data, err = join.FetchCA(ctx, s.cfg.JoinURL)
		if err != nil && unreachable(err) {
			s.log.Info("waiting for the server to join through", "server", s.cfg.JoinURL, "err", err)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", s.cfg.JoinURL, err)
	}
	ca, err := pki.PinnedCA(data, s.cfg.Token)
	if err != nil {
		return nil, fmt.Errorf("join %s: the server's CA: %w", s.cfg.JoinURL, err)
	}
	return newTokenClient(s.cfg.JoinURL, s.cfg.Token, ca), nil
}
