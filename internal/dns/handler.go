package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// maxChase bounds the ExternalName → ExternalName chains followed inside
// the cluster domain, so a loop of them ends.
const maxChase = 8

// ednsSize is the UDP payload size this server advertises.
const ednsSize = 1232

// handler answers queries: the cluster domain and the reverse names of
// known addresses from the view, everything else from upstream.
type handler struct {
	ctx  context.Context // ends in-flight forwards at shutdown
	view *view
	fwd  *forwarder
	log  *slog.Logger
}

// ServeDNS implements mdns.Handler.
func (h *handler) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	resp := h.respond(req)
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := mdns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		// Headless Services with many endpoints and big upstream answers
		// do not fit a datagram; the client retries over TCP on TC.
		resp.Truncate(size)
	}
	_ = w.WriteMsg(resp)
}

func (h *handler) respond(req *mdns.Msg) *mdns.Msg {
	if req.Opcode != mdns.OpcodeQuery {
		return new(mdns.Msg).SetRcode(req, mdns.RcodeNotImplemented)
	}
	if len(req.Question) != 1 {
		return new(mdns.Msg).SetRcode(req, mdns.RcodeFormatError)
	}
	q := req.Question[0]
	if h.view.inZone(strings.ToLower(q.Name)) {
		if q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY {
			return new(mdns.Msg).SetRcode(req, mdns.RcodeRefused)
		}
		return h.local(req, q)
	}
	if q.Qclass == mdns.ClassINET {
		if a, ok := h.view.reverse(q.Name, q.Qtype); ok {
			return h.reply(req, a.records, nil)
		}
	}
	resp, err := h.fwd.exchange(h.context(), req)
	if err != nil {
		h.log.Debug("dns forward", "name", q.Name, "type", mdns.TypeToString[q.Qtype], "err", err)
		return new(mdns.Msg).SetRcode(req, mdns.RcodeServerFailure)
	}
	return resp
}

// local answers a name in the cluster domain, authoritatively.
func (h *handler) local(req *mdns.Msg, q mdns.Question) *mdns.Msg {
	a := h.view.lookup(q.Name, q.Qtype)
	m := h.reply(req, a.records, a.extra)
	m.Authoritative = true
	if !a.exists {
		m.Rcode = mdns.RcodeNameError
	}
	if a.chase != "" {
		h.chase(m, a.chase, q.Qtype)
	}
	if len(m.Answer) == 0 || m.Rcode == mdns.RcodeNameError {
		// RFC 2308: the SOA's minimum tells resolvers how long to cache
		// the negative answer.
		m.Ns = []mdns.RR{h.view.SOA()}
	}
	return m
}

// chase follows an ExternalName's CNAME for the type asked: inside the
// cluster domain from the view, outside from upstream. What it finds is
// appended; if upstream fails the CNAME alone is the answer and the
// client's resolver may follow it itself.
func (h *handler) chase(m *mdns.Msg, target string, qtype uint16) {
	for range maxChase {
		if !h.view.inZone(target) {
			q := new(mdns.Msg).SetQuestion(target, qtype)
			resp, err := h.fwd.exchange(h.context(), q)
			if err != nil {
				h.log.Debug("dns chase", "name", target, "err", err)
				return
			}
			m.Answer = append(m.Answer, resp.Answer...)
			m.Rcode = resp.Rcode
			return
		}
		a := h.view.lookup(target, qtype)
		m.Answer = append(m.Answer, a.records...)
		m.Extra = append(m.Extra, a.extra...)
		if !a.exists {
			m.Rcode = mdns.RcodeNameError
		}
		if a.chase == "" {
			return
		}
		target = a.chase
	}
}

func (h *handler) reply(req *mdns.Msg, answer, extra []mdns.RR) *mdns.Msg {
	m := new(mdns.Msg).SetReply(req)
	m.RecursionAvailable = true
	m.Compress = true
	m.Answer, m.Extra = answer, extra
	if opt := req.IsEdns0(); opt != nil {
		// RFC 6891: a query with OPT gets an OPT back.
		m.SetEdns0(ednsSize, opt.Do())
	}
	return m
}

func (h *handler) context() context.Context {
	if h.ctx == nil {
		return context.Background()
	}
	return h.ctx
}

// forwarder sends queries to the upstream resolvers in order, over UDP,
// again over TCP when the answer comes back truncated.
type forwarder struct {
	upstreams []string
	udp, tcp  *mdns.Client
}

var errNoUpstreams = errors.New("no upstream resolvers")

func newForwarder(upstreams []string, timeout time.Duration) *forwarder {
	return &forwarder{
		upstreams: upstreams,
		// A receive buffer beyond 512 bytes keeps an upstream that
		// ignores the requester's size from making its answer unreadable.
		udp: &mdns.Client{Net: "udp", Timeout: timeout, UDPSize: mdns.DefaultMsgSize},
		tcp: &mdns.Client{Net: "tcp", Timeout: timeout},
	}
}

// exchange returns the first upstream answer; an upstream that does not
// answer is skipped, one that answers with an error code is believed.
func (f *forwarder) exchange(ctx context.Context, req *mdns.Msg) (*mdns.Msg, error) {
	if len(f.upstreams) == 0 {
		return nil, errNoUpstreams
	}
	var errs []error
	for _, u := range f.upstreams {
		resp, _, err := f.udp.ExchangeContext(ctx, req, u)
		if err == nil && resp.Truncated {
			resp, _, err = f.tcp.ExchangeContext(ctx, req, u)
		}
		if err == nil {
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// upstreams are the configured resolvers with ports, or else the
// nameservers of resolv.conf that do not point back at this server.
func upstreams(cfg Config) ([]string, error) {
	if len(cfg.Upstreams) > 0 {
		out := make([]string, 0, len(cfg.Upstreams))
		for _, u := range cfg.Upstreams {
			ap, err := parseUpstream(u)
			if err != nil {
				return nil, fmt.Errorf("dns: upstream %q: %w", u, err)
			}
			out = append(out, ap.String())
		}
		return out, nil
	}
	rc, err := mdns.ClientConfigFromFile(cfg.ResolvConf)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("dns: read %s: %w", cfg.ResolvConf, err)
	}
	local := localAddrs()
	var out []string
	for _, s := range rc.Servers {
		ap, err := parseUpstream(net.JoinHostPort(s, rc.Port))
		if err != nil || loopsBack(ap, cfg.Listen, local) {
			continue
		}
		out = append(out, ap.String())
	}
	return out, nil
}

// parseUpstream takes "IP" or "IP:port".
func parseUpstream(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, 53), nil
}

// loopsBack reports whether up is one of our own listen addresses: a
// resolv.conf naming the host's own port 53 while we listen there would
// forward every unknown name to ourselves.
func loopsBack(up netip.AddrPort, listen []string, local map[netip.Addr]bool) bool {
	ua := up.Addr().Unmap().WithZone("")
	for _, l := range listen {
		la, err := netip.ParseAddrPort(l)
		if err != nil || la.Port() != up.Port() {
			continue
		}
		a := la.Addr().Unmap()
		if a == ua || (a.IsUnspecified() && (ua.IsLoopback() || local[ua])) {
			return true
		}
	}
	return false
}

// localAddrs are the host's interface addresses.
func localAddrs() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return out
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out[ip.Unmap()] = true
			}
		}
	}
	return out
}
