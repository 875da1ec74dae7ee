package balancer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
)

// apiProtos are offered to API servers: HTTP/2 carries all of the agent's
// watches over one connection, pinged while idle.
var apiProtos = []string{"h2", "http/1.1"}

// trackedConn is a TCP connection to an API server, remembered so that
// leaving the server can close it. TLS runs on top of it: the transport
// needs the *tls.Conn itself to choose HTTP/2.
type trackedConn struct {
	net.Conn
	b    *Balancer
	addr string
	once sync.Once
}

// Close forgets the connection and closes it.
func (c *trackedConn) Close() error {
	c.once.Do(func() { c.b.untrack(c) })
	return c.Conn.Close()
}

// dial connects the agent's transport to the current server. When that
// fails it goes down the candidates, and the first that answers becomes
// current: concurrent dials follow whichever moved first, so the agent's
// connections do not split over servers.
func (b *Balancer) dial(ctx context.Context) (net.Conn, error) {
	var errs []error
	failed := map[string]bool{}
	for ctx.Err() == nil {
		cur := b.Current()
		target := cur
		if failed[cur] {
			target = ""
			for _, a := range b.candidates(cur) {
				if !failed[a] {
					target = a
					break
				}
			}
			if target == "" {
				break
			}
		}
		conn, raw, err := b.connect(ctx, target, apiProtos)
		if err != nil {
			failed[target] = true
			errs = append(errs, err)
			continue
		}
		if b.adopt(raw, cur) {
			return conn, nil
		}
		// Another dial moved to a third server meanwhile: follow it.
		_ = conn.Close()
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("no API server reachable: %w", errors.Join(errs...))
}

// adopt records c if its server is current, or makes it current if
// `from`, the server the dial began with, still is. It reports whether c
// may be used.
func (b *Balancer) adopt(c *trackedConn, from string) bool {
	b.mu.Lock()
	switch b.current {
	case c.addr:
	case from:
		old := b.conns[from]
		delete(b.conns, from)
		b.current = c.addr
		defer func() {
			for o := range old {
				_ = o.Conn.Close()
			}
			b.log.Info("API server changed", "from", from, "to", c.addr, "reason", "dial failed", "closedConnections", len(old))
		}()
	default:
		b.mu.Unlock()
		return false
	}
	if b.conns[c.addr] == nil {
		b.conns[c.addr] = map[*trackedConn]struct{}{}
	}
	b.conns[c.addr][c] = struct{}{}
	b.mu.Unlock()
	return true
}

func (b *Balancer) untrack(c *trackedConn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if set := b.conns[c.addr]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(b.conns, c.addr)
		}
	}
}

// connect opens a TLS connection to addr within the configured timeout.
func (b *Balancer) connect(ctx context.Context, addr string, protos []string) (*tls.Conn, *trackedConn, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	raw, err := b.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	tc := &trackedConn{Conn: raw, b: b, addr: addr}
	conn := tls.Client(tc, b.tlsFor(addr, protos))
	if err := conn.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	return conn, tc, nil
}

// dialTLS opens an untracked TLS connection, for health checks.
func (b *Balancer) dialTLS(ctx context.Context, addr string, protos []string) (net.Conn, error) {
	conn, _, err := b.connect(ctx, addr, protos)
	if err != nil {
		return nil, err
	}
	return conn, nil
}

// tlsFor is the TLS configuration for a connection to addr. Each server
// is verified by the host it is dialled at — the address it advertises,
// which its serving certificate always covers — rather than by the first
// server's name, which another server's certificate need not cover. The
// first server keeps an explicit ServerName if the config set one.
func (b *Balancer) tlsFor(addr string, protos []string) *tls.Config {
	c := b.tls.Clone()
	if addr != b.initial || c.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		c.ServerName = host
	}
	c.NextProtos = protos
	return c
}
