// Package balancer moves an agent's API traffic between the cluster's API
// servers. It starts on the server the agent was given, learns the others
// from the `kubernetes` Endpoints (every live API server keeps itself
// listed there; the list is kept in a file for the next start), and gives
// client-go a transport whose connections all go to one current server.
// A failed dial, failed health checks of /readyz, or the current server
// leaving the Endpoints moves new connections to another live server and
// closes those to the old one, so that watches end and informers re-list
// through the new one. HTTP/2 pings end connections to a server that
// vanished without closing them.
package balancer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Defaults of Config's durations: a server that stops answering loses
// the agent within about 15 s, whichever way it fails.
const (
	DefaultHealthInterval = 5 * time.Second
	DefaultTimeout        = 3 * time.Second
	DefaultHealthFailures = 2
	DefaultPingInterval   = 10 * time.Second
	DefaultPingTimeout    = 5 * time.Second
)

// Config says where the agent starts and how quickly it gives up on a
// server.
type Config struct {
	// REST is the agent's API identity. Its Host is the first server and
	// stays a candidate whatever the Endpoints say: they name servers by
	// their advertised addresses, which may not include the one the agent
	// was given (a load balancer, or 127.0.0.1 for the agent inside
	// `skiff server`).
	REST *rest.Config
	// Source tells the balancer the API servers' addresses. Nil means
	// Endpoints default/kubernetes, watched through the balancer itself.
	Source Source
	// HealthInterval is how often the current server's /readyz is asked;
	// after HealthFailures failed checks in a row the balancer moves on.
	HealthInterval time.Duration
	HealthFailures int
	// Timeout bounds one dial (TCP and TLS handshake) and one health check.
	Timeout time.Duration
	// PingInterval is how long an HTTP/2 connection may stay silent
	// before it is pinged; PingTimeout how long the answer may take before
	// the connection is closed, ending its watches.
	PingInterval, PingTimeout time.Duration
	// StateFile keeps the servers learned from the Source across
	// restarts: an agent that starts while its first server is down
	// reaches the others through it. Empty keeps nothing.
	StateFile string
	Logger    *slog.Logger
}

// Balancer picks the API server the agent talks to. Dialling works from
// New on; Run adds health checks and learns the other servers.
type Balancer struct {
	cfg       Config
	log       *slog.Logger
	initial   string      // host:port of cfg.REST.Host
	tls       *tls.Config // cfg.REST's CA and client certificate
	dialer    net.Dialer
	transport *http.Transport // the agent's API traffic
	health    *http.Client    // /readyz of a given server
	kick      chan struct{}   // the current server left the list

	mu      sync.Mutex
	current string
	learned []string // addresses from the Source, as last reported
	left    string   // a current server that left the list, for Run
	order   []string // every candidate, in the order failover tries them
	conns   map[string]map[*trackedConn]struct{}
}

// New checks cfg and fills defaults. cfg.REST must speak HTTPS: servers
// are told apart by their certificates.
func New(cfg Config) (*Balancer, error) {
	if cfg.REST == nil {
		return nil, errors.New("balancer: REST config is required")
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = DefaultHealthInterval
	}
	if cfg.HealthFailures <= 0 {
		cfg.HealthFailures = DefaultHealthFailures
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = DefaultPingTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	initial, err := hostPort(cfg.REST.Host)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := rest.TLSConfigFor(cfg.REST)
	if err != nil {
		return nil, fmt.Errorf("balancer: TLS config: %w", err)
	}
	if tlsCfg == nil {
		return nil, fmt.Errorf("balancer: API server %q is not HTTPS", cfg.REST.Host)
	}
	b := &Balancer{
		cfg: cfg, log: cfg.Logger, initial: initial, tls: tlsCfg,
		dialer: net.Dialer{
			Timeout: cfg.Timeout,
			// HTTP/2 pings watch the API connections; keepalives still
			// end any HTTP/1.1 connection to a host that vanished.
			KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3},
		},
		kick:    make(chan struct{}, 1),
		current: initial,
		order:   append([]string{initial}, savedAddresses(cfg.StateFile, initial, cfg.Logger)...),
		conns:   map[string]map[*trackedConn]struct{}{},
	}
	b.transport = &http.Transport{
		// The address the request names is the first server's whatever
		// server answers: dial ignores it and goes to the current one.
		DialTLSContext:        func(ctx context.Context, _, _ string) (net.Conn, error) { return b.dial(ctx) },
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   25,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		HTTP2:                 &http.HTTP2Config{SendPingTimeout: cfg.PingInterval, PingTimeout: cfg.PingTimeout},
	}
	// Health checks use HTTP/1.1 connections of their own: one that times
	// out is closed, so the next check dials afresh.
	healthRT := &http.Transport{
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return b.dialTLS(ctx, addr, []string{"http/1.1"})
		},
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     2 * cfg.HealthInterval,
	}
	// Wrapped like the agent's own requests, so a token-authenticated
	// config authenticates its checks too.
	wrapped, err := rest.HTTPWrappersForConfig(b.plainConfig(), healthRT)
	if err != nil {
		return nil, fmt.Errorf("balancer: health client: %w", err)
	}
	b.health = &http.Client{Transport: wrapped, Timeout: cfg.Timeout}
	if b.cfg.Source == nil {
		client, err := kubernetes.NewForConfig(b.RESTConfig())
		if err != nil {
			return nil, fmt.Errorf("balancer: endpoints client: %w", err)
		}
		b.cfg.Source = EndpointsSource(client)
	}
	return b, nil
}

// hostPort is the host:port of an API server URL, the port defaulted.
func hostPort(host string) (string, error) {
	u, err := url.Parse(host)
	if err != nil || u.Host == "" {
		// client-go accepts a bare host:port and assumes HTTPS.
		u, err = url.Parse("https://" + host)
	}
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("balancer: API server %q: want https://host:port", host)
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "443"), nil
	}
	return u.Host, nil
}

// plainConfig is cfg.REST without its TLS settings, which move into the
// balancer's transports, and without a dialer or proxy: the balancer
// dials the servers itself.
func (b *Balancer) plainConfig() *rest.Config {
	rc := rest.CopyConfig(b.cfg.REST)
	rc.TLSClientConfig = rest.TLSClientConfig{}
	rc.Dial, rc.Proxy = nil, nil
	return rc
}

// RESTConfig returns a copy of cfg.REST whose requests go through the
// balancer: use it for every client of the agent.
func (b *Balancer) RESTConfig() *rest.Config {
	rc := b.plainConfig()
	rc.Transport = b.transport
	return rc
}

// Current is the address new connections go to.
func (b *Balancer) Current() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.current
}

// Addresses lists every candidate server, sorted.
func (b *Balancer) Addresses() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := slices.Clone(b.order)
	slices.Sort(out)
	return out
}

// Run learns the servers from the Source and checks the current one's
// health until ctx ends.
func (b *Balancer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		if err := b.cfg.Source.Run(ctx, b.setAddresses); err != nil && ctx.Err() == nil {
			b.log.Warn("API server list", "err", err)
		}
	})
	defer b.transport.CloseIdleConnections()
	t := time.NewTimer(b.cfg.HealthInterval)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-b.kick:
			// The current server left: it is stopping, or has lost its
			// Lease. Move while it may still answer.
			if cur, ok := b.takeLeft(); ok {
				b.failover(ctx, cur, "left the kubernetes endpoints")
			}
			continue
		case <-t.C:
		}
		cur := b.Current()
		if err := b.check(ctx, cur); err != nil {
			failures++
			b.log.Warn("API server health check failed", "server", cur, "failures", failures, "err", err)
			if failures >= b.cfg.HealthFailures && b.failover(ctx, cur, "health checks failed") {
				failures = 0
			}
		} else {
			failures = 0
		}
		t.Reset(b.cfg.HealthInterval)
	}
}

// check asks addr's /readyz.
func (b *Balancer) check(ctx context.Context, addr string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := b.health.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}

// failover moves from `from` to the first other candidate whose /readyz
// answers, and reports whether it did. Without one it stays: the current
// server may yet recover, and no other would serve better.
func (b *Balancer) failover(ctx context.Context, from, reason string) bool {
	for _, a := range b.candidates(from) {
		if ctx.Err() != nil {
			return false
		}
		if err := b.check(ctx, a); err != nil {
			b.log.Debug("API server candidate not ready", "server", a, "err", err)
			continue
		}
		return b.moveTo(from, a, reason)
	}
	b.log.Warn("no other API server ready", "server", from, "reason", reason)
	return false
}

// candidates is every candidate but from, in failover order: the ones
// after from first, so that a balancer working down the list does not
// return to those it just left.
func (b *Balancer) candidates(from string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := slices.Index(b.order, from)
	out := make([]string, 0, len(b.order))
	out = append(out, b.order[i+1:]...)
	out = append(out, b.order[:max(i, 0)]...)
	return out
}

// moveTo makes to the current server if from still is, and closes every
// connection to from: what used them — watches most of all — fails and
// retries through to. It reports whether to is now current.
func (b *Balancer) moveTo(from, to, reason string) bool {
	b.mu.Lock()
	if b.current != from {
		ok := b.current == to
		b.mu.Unlock()
		return ok
	}
	b.current = to
	old := b.conns[from]
	delete(b.conns, from)
	b.mu.Unlock()
	for c := range old {
		_ = c.Conn.Close()
	}
	b.log.Info("API server changed", "from", from, "to", to, "reason", reason, "closedConnections", len(old))
	return true
}

// setAddresses takes the Source's list. The first server is always kept;
// the order of the others is shuffled once, so agents leaving one server
// spread over the rest but each goes down its list in a fixed order.
func (b *Balancer) setAddresses(addrs []string) {
	var learned []string
	for _, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err == nil && !slices.Contains(learned, a) {
			learned = append(learned, a)
		}
	}
	order := slices.Clone(learned)
	if !slices.Contains(order, b.initial) {
		order = append(order, b.initial)
	}
	rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })

	b.mu.Lock()
	// A server that was listed and is no longer has left; one never listed
	// (the first server by another name) has not.
	left := slices.Contains(b.learned, b.current) && !slices.Contains(learned, b.current)
	changed := !sameSet(b.learned, learned)
	b.learned, b.order, b.left = learned, order, ""
	if left {
		b.left = b.current
	}
	b.mu.Unlock()
	if changed {
		b.log.Info("API servers", "servers", learned)
		b.saveAddresses(learned)
	}
	if left {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

// savedAddresses are the servers a previous run learned, from path, other
// than initial; none when there is no file.
func savedAddresses(path, initial string, log *slog.Logger) []string {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			log.Warn("saved API servers unreadable", "path", path, "err", err)
		}
		return nil
	}
	var out []string
	for _, a := range strings.Fields(string(data)) {
		if _, _, err := net.SplitHostPort(a); err == nil && a != initial && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// saveAddresses writes the learned servers to the state file, replacing
// it whole so that a crash leaves the old list or the new one.
func (b *Balancer) saveAddresses(addrs []string) {
	path := b.cfg.StateFile
	if path == "" || len(addrs) == 0 {
		return
	}
	tmp := path + ".tmp"
	err := os.WriteFile(tmp, []byte(strings.Join(addrs, "\n")+"\n"), 0o644)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		b.log.Warn("saving API servers", "path", path, "err", err)
	}
}

// takeLeft returns the current server if it has left the list, and
// forgets that it did.
func (b *Balancer) takeLeft() (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	left := b.left
	b.left = ""
	return left, left != "" && left == b.current
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
