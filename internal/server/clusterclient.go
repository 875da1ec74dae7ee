package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiffhq/skiff/internal/etcd"
	"github.com/skiffhq/skiff/internal/pki"
)

// ClusterClient calls a server's cluster API (see ClusterAPIPrefix).
type ClusterClient struct {
	base string
	http *http.Client
}

// ClusterAPIError is an error answer of the cluster API.
type ClusterAPIError struct {
	// Code is the HTTP status; Message the server's explanation.
	Code    int
	Message string
}

func (e *ClusterAPIError) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Code)
}

// Retryable reports whether the server asked to be tried again shortly:
// a member is joining, or etcd is settling after a change.
func (e *ClusterAPIError) Retryable() bool { return e.Code == http.StatusServiceUnavailable }

// NewClusterClientForKubeconfig returns a client acting as the user of
// the kubeconfig at path (an administrator, to remove members).
func NewClusterClientForKubeconfig(path string) (*ClusterClient, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	hc.Timeout = time.Minute
	return &ClusterClient{base: strings.TrimSuffix(rc.Host, "/"), http: hc}, nil
}

// newTokenClient returns a client that trusts only ca and authenticates
// with the node token, as a joining server.
func newTokenClient(server, token string, ca *x509.Certificate) *ClusterClient {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
	}
	return &ClusterClient{base: strings.TrimSuffix(server, "/"), http: &http.Client{
		Timeout:   time.Minute,
		Transport: bearer{token: token, next: tr},
	}}
}

// bearer adds a bearer token to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// close drops idle connections: a joiner's client is used a few times.
func (c *ClusterClient) close() { c.http.CloseIdleConnections() }

// Members lists etcd's members as the server sees them.
func (c *ClusterClient) Members(ctx context.Context) (MembersResponse, error) {
	var out MembersResponse
	err := c.do(ctx, http.MethodGet, EtcdMembersPath, nil, &out)
	return out, err
}

// RemoveMember removes the server whose etcd member is called name.
func (c *ClusterClient) RemoveMember(ctx context.Context, name string) (etcd.Member, error) {
	var out etcd.Member
	err := c.do(ctx, http.MethodDelete, EtcdMembersPath+"/"+url.PathEscape(name), nil, &out)
	return out, err
}

func (c *ClusterClient) bootstrap(ctx context.Context) (pki.ServerSecrets, error) {
	var out pki.ServerSecrets
	err := c.do(ctx, http.MethodPost, ServerBootstrapPath, nil, &out)
	return out, err
}

func (c *ClusterClient) addMember(ctx context.Context, req AddMemberRequest) (AddMemberResponse, error) {
	var out AddMemberResponse
	err := c.do(ctx, http.MethodPost, EtcdMembersPath, req, &out)
	return out, err
}

func (c *ClusterClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var ce clusterError
		if json.Unmarshal(data, &ce) != nil || ce.Message == "" {
			ce.Message = strings.TrimSpace(string(data))
		}
		return fmt.Errorf("%s %s: %w", method, path, &ClusterAPIError{Code: resp.StatusCode, Message: ce.Message})
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// unreachable reports whether err is a failure to connect at all.
func unreachable(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// retryCluster calls f until it succeeds, fails for good, or ctx ends.
// What passes by itself is retried: the server asking to be called back
// (a member joining, etcd settling) and, when transient is set, the
// server being unreachable (it may be starting too).
func retryCluster(ctx context.Context, transient bool, f func() error) error {
	delay := 200 * time.Millisecond
	for {
		err := f()
		var ce *ClusterAPIError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ce) && ce.Retryable():
		case transient && unreachable(err):
		default:
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-t.C:
		}
		delay = min(2*delay, 2*time.Second)
	}
}
