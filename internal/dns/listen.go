package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
)

// listeners are the sockets of every listen address: one UDP and one TCP
// socket each, on the same port.
type listeners struct {
	udp []net.PacketConn
	tcp []net.Listener
}

// pickPortAttempts bounds the retries when a free UDP port turns out to
// be taken for TCP.
const pickPortAttempts = 20

// listen binds every address over UDP and TCP. Port 0 picks a port free
// for both, since the DNS Service's endpoint names one port for the two.
func listen(addrs []string) (*listeners, error) {
	ls := &listeners{}
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			ls.close()
			return nil, fmt.Errorf("dns: listen address %q: %w", a, err)
		}
		pc, l, err := listenPair(host, port)
		if err != nil {
			ls.close()
			return nil, err
		}
		ls.udp = append(ls.udp, pc)
		ls.tcp = append(ls.tcp, l)
	}
	return ls, nil
}

func listenPair(host, port string) (net.PacketConn, net.Listener, error) {
	for attempt := 1; ; attempt++ {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, port))
		if err != nil {
			return nil, nil, fmt.Errorf("dns: listen udp: %w", err)
		}
		bound := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
		l, err := net.Listen("tcp", net.JoinHostPort(host, bound))
		if err == nil {
			return pc, l, nil
		}
		_ = pc.Close()
		if port != "0" || attempt == pickPortAttempts || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("dns: listen tcp: %w", err)
		}
	}
}

// addrs are the bound addresses, one per listen address.
func (ls *listeners) addrs() []string {
	out := make([]string, 0, len(ls.udp))
	for _, pc := range ls.udp {
		out = append(out, pc.LocalAddr().String())
	}
	return out
}

func (ls *listeners) close() {
	for _, pc := range ls.udp {
		_ = pc.Close()
	}
	for _, l := range ls.tcp {
		_ = l.Close()
	}
}

// serving is the set of DNS servers running on the listeners.
type serving struct {
	servers []*mdns.Server
	conns   []func() // closes each server's socket
	started chan struct{}
	// failed receives each server's end; Run watches it to notice a
	// socket failing on its own.
	failed  chan error
	stopped int
	once    sync.Once
}

// serve starts one server per socket.
func (ls *listeners) serve(h mdns.Handler, log *slog.Logger) *serving {
	s := &serving{started: make(chan struct{}, len(ls.udp)+len(ls.tcp))}
	for _, pc := range ls.udp {
		s.servers = append(s.servers, &mdns.Server{PacketConn: pc, Handler: h})
		s.conns = append(s.conns, func() { _ = pc.Close() })
	}
	for _, l := range ls.tcp {
		s.servers = append(s.servers, &mdns.Server{Listener: l, Handler: h})
		s.conns = append(s.conns, func() { _ = l.Close() })
	}
	s.failed = make(chan error, len(s.servers))
	for _, srv := range s.servers {
		srv.NotifyStartedFunc = func() { s.started <- struct{}{} }
		// Invalid packets are the sender's problem; logging them would
		// let anyone fill the log.
		srv.MsgInvalidFunc = func([]byte, error) {}
		go func() {
			err := srv.ActivateAndServe()
			if err == nil {
				err = errors.New("stopped")
			}
			log.Debug("dns listener stopped", "err", err)
			s.failed <- err
		}()
	}
	return s
}

// waitStarted waits until every server reads its socket.
func (s *serving) waitStarted(ctx context.Context) error {
	for range s.servers {
		select {
		case <-s.started:
		case err := <-s.failed:
			s.stopped++
			return fmt.Errorf("dns: serve: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// wait returns nil when ctx ends, or the error of a server that stopped on
// its own.
func (s *serving) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.failed:
		s.stopped++
		return err
	}
}

// stop shuts every server down and waits for them.
func (s *serving) stop() {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for i, srv := range s.servers {
			if err := srv.ShutdownContext(ctx); err != nil {
				// Not started yet, or slow to finish: closing the socket
				// ends its serve loop either way.
				s.conns[i]()
			}
		}
		for ; s.stopped < len(s.servers); s.stopped++ {
			<-s.failed
		}
	})
}
