package apiserver

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiffhq/skiff/internal/apiserver/resource"
)

// defaultKubeletPort is where a kubelet listens when its Node does not
// say (status.daemonEndpoints.kubeletEndpoint.port).
const defaultKubeletPort = 10250

// kubeletTransport builds the client of kubelets' HTTPS APIs, or nil
// without a TLS configuration.
func kubeletTransport(cfg *tls.Config) *http.Transport {
	if cfg == nil {
		return nil
	}
	c := cfg.Clone()
	// Upgrades (exec, attach, port-forward) exist only in HTTP/1.1.
	c.NextProtos = []string{"http/1.1"}
	if roots := c.RootCAs; roots != nil && !c.InsecureSkipVerify {
		// A kubelet's serving certificate names its host, not every
		// address its Node reports, and upstream's API server does not
		// verify kubelets at all unless given a CA for them. Checking the
		// chain against the CA, but not the name, keeps the part that
		// matters: only a certificate the cluster issued is accepted.
		c.InsecureSkipVerify = true
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("kubelet presented no certificate")
			}
			inter := x509.NewCertPool()
			for _, ic := range cs.PeerCertificates[1:] {
				inter.AddCert(ic)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			return err
		}
	}
	return &http.Transport{
		TLSClientConfig:     c,
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 4,
	}
}

// connect serves a subresource of the kubelet of the object's node: the
// stored object checks the request and names the node, and the request
// goes on to that node's kubelet.
func (s *Server) connect(w http.ResponseWriter, r *http.Request, info *requestInfo, c *resource.Connect) error {
	gr := schema.GroupResource{Group: info.res.Kind.Group, Resource: info.res.Plural + "/" + info.subresource}
	if !slices.Contains(c.Methods, r.Method) {
		return apierrors.NewMethodNotSupported(gr, r.Method)
	}
	obj, err := s.store(info.res).Get(r.Context(), key(info.res, info.namespace, info.name))
	if err != nil {
		return storageError(err, info.res.Resource().GroupResource(), info.name)
	}
	target, err := c.Location(obj, r.URL.Query())
	if err != nil {
		return err
	}
	u, err := s.kubeletURL(r, target)
	if err != nil {
		return err
	}
	if c.Upgrade {
		s.proxyToKubelet(w, r, u)
		return nil
	}
	return s.streamFromKubelet(w, r, u, gr, info.name)
}

// kubeletURL locates a target on its node's kubelet: the node's
// InternalIP, else its Hostname, else its ExternalIP, at the port the
// Node reports.
func (s *Server) kubeletURL(r *http.Request, t *resource.ConnectTarget) (*url.URL, error) {
	if s.kubelet == nil {
		return nil, apierrors.NewServiceUnavailable("the API server has no kubelet client configured")
	}
	nodes, ok := s.byGV[corev1.SchemeGroupVersion]["nodes"]
	if !ok {
		return nil, apierrors.NewServiceUnavailable("nodes are not served")
	}
	obj, err := s.store(nodes).Get(r.Context(), key(nodes, "", t.Node))
	if err != nil {
		return nil, storageError(err, nodes.Resource().GroupResource(), t.Node)
	}
	node, ok := obj.(*corev1.Node)
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("node %s is a %T", t.Node, obj))
	}
	var host string
	for _, typ := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeHostName, corev1.NodeExternalIP} {
		for _, a := range node.Status.Addresses {
			if a.Type == typ && a.Address != "" && host == "" {
				host = a.Address
			}
		}
	}
	if host == "" {
		return nil, apierrors.NewInternalError(fmt.Errorf("no preferred addresses found for node %s; known addresses: %v", t.Node, node.Status.Addresses))
	}
	port := int(node.Status.DaemonEndpoints.KubeletEndpoint.Port)
	if port <= 0 {
		port = defaultKubeletPort
	}
	return &url.URL{Scheme: "https", Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: t.Path, RawQuery: t.Query.Encode()}, nil
}

// proxyToKubelet passes the request, its upgrade (SPDY or WebSocket) and
// then the raw connection both ways to the kubelet, which answers the
// protocol negotiation itself.
func (s *Server) proxyToKubelet(w http.ResponseWriter, r *http.Request, u *url.URL) {
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL, pr.Out.Host = u, u.Host
			// The kubelet trusts the API server's certificate; the user's
			// own credentials stay here.
			pr.Out.Header.Del("Authorization")
			for k := range pr.Out.Header {
				if strings.HasPrefix(k, "Impersonate-") {
					pr.Out.Header.Del(k)
				}
			}
		},
		Transport:     s.kubelet,
		FlushInterval: -1,
		ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client left
			}
			writeError(w, r, apierrors.NewInternalError(fmt.Errorf("error dialing backend: %w", err)))
		},
	}
	p.ServeHTTP(w, r)
}

// streamFromKubelet copies the kubelet's answer to a GET (logs) to the
// client as it arrives, flushing each piece so `kubectl logs -f` sees
// lines at once.
func (s *Server) streamFromKubelet(w http.ResponseWriter, r *http.Request, u *url.URL, gr schema.GroupResource, name string) error {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	resp, err := s.kubelet.RoundTrip(req)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("error dialing backend: %w", err))
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return kubeletError(resp, gr, name)
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil // the client left
			}
			_ = rc.Flush()
		}
		if err != nil {
			// Once the status line is out an error cannot be reported;
			// the client sees the stream end.
			if !errors.Is(err, io.EOF) && r.Context().Err() == nil {
				s.log.Debug("stream from kubelet", "url", u.Redacted(), "err", err)
			}
			return nil
		}
	}
}

// kubeletError turns a kubelet's refusal into the API error the client
// sees: the kubelet's own Status when it sent one, else its text under
// the response's code, as upstream does.
func kubeletError(resp *http.Response, gr schema.GroupResource, name string) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var st metav1.Status
	if err := json.Unmarshal(body, &st); err == nil && st.Kind == "Status" && st.Message != "" {
		if st.Code == 0 {
			st.Code = int32(resp.StatusCode)
		}
		return &apierrors.StatusError{ErrStatus: st}
	}
	msg := strings.TrimSpace(string(body))
	switch resp.StatusCode {
	case http.StatusBadRequest:
		return apierrors.NewBadRequest(msg)
	case http.StatusInternalServerError:
		return apierrors.NewInternalError(errors.New(msg))
	}
	return apierrors.NewGenericServerResponse(resp.StatusCode, http.MethodGet, gr, name, msg, 0, false)
}
