package prober

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// maxRedirects bounds same-host redirect chains, like browsers and
// upstream's probe client.
const maxRedirects = 10

// runHTTP GETs the probe URL: 2xx succeeds, and so does 3xx, which is
// only returned for a redirect to another host (those are not followed,
// as the probe must not leave the pod).
func runHTTP(ctx context.Context, h *corev1.HTTPGetAction, timeout time.Duration, target Target) (Result, string, error) {
	port, err := resolvePort(h.Port, target.Container)
	if err != nil {
		return Unknown, "", err
	}
	host := h.Host
	if host == "" {
		host = target.PodIP
	}
	scheme := strings.ToLower(string(h.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	u, err := url.Parse(h.Path)
	if err != nil {
		// Send an unparsable path as is rather than refuse the probe.
		u = &url.URL{Path: h.Path}
	}
	u.Scheme = scheme
	u.Host = net.JoinHostPort(host, strconv.Itoa(port))

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Unknown, "", fmt.Errorf("http probe request: %w", err)
	}
	req.Header = probeHeaders(h.HTTPHeaders)
	// Go sends req.Host, never a Host header.
	if v := req.Header.Get("Host"); v != "" {
		req.Host = v
	}
	req.Header.Del("Host")

	transport := &http.Transport{
		// Probes target pod IPs: an environment proxy must not apply,
		// and pods' certificates are rarely verifiable by the node.
		Proxy:              nil,
		TLSClientConfig:    &tls.Config{InsecureSkipVerify: true},
		DisableKeepAlives:  true,
		DisableCompression: true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{
		Timeout:   timeout,
		Transport: transport,
		CheckRedirect: func(next *http.Request, via []*http.Request) error {
			if next.URL.Hostname() != via[0].URL.Hostname() {
				return http.ErrUseLastResponse
			}
			if len(via) >= maxRedirects {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		return Failure, err.Error(), nil
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := readAtMost(resp.Body, maxOutput)
	if err != nil {
		return Failure, fmt.Sprintf("read response body: %v", err), nil
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return Success, body, nil
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return Success, "Probe terminated redirects, Response body: " + body, nil
	}
	return Failure, fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode), nil
}

// probeHeaders builds the request headers: the probe's own, plus a
// kube-probe User-Agent and "Accept: */*" unless the probe sets them (an
// explicitly empty value removes the header).
func probeHeaders(hs []corev1.HTTPHeader) http.Header {
	h := http.Header{}
	for _, v := range hs {
		h.Add(v.Name, v.Value)
	}
	if _, ok := h["User-Agent"]; !ok {
		h.Set("User-Agent", UserAgent)
	}
	if _, ok := h["Accept"]; !ok {
		h.Set("Accept", "*/*")
	} else if h.Get("Accept") == "" {
		h.Del("Accept")
	}
	return h
}
