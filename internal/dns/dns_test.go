package dns

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"k8s.io/client-go/kubernetes/fake"
)

func TestNewRejects(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no client", Config{}, "no client"},
		{"listen without port", Config{Client: client, Listen: []string{"127.0.0.1"}}, "listen address"},
		{"listen on a name", Config{Client: client, Listen: []string{"localhost:53"}}, "listen address"},
		{"bad domain", Config{Client: client, Domain: "a..b"}, "not a domain name"},
		{"bad upstream", Config{Client: client, Upstreams: []string{"dns.example"}}, "upstream"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.cfg.Logger = testLogger()
			if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("New: %v, want an error about %q", err, c.want)
			}
		})
	}
}

// TestRunPortInUse checks that a taken port fails Run at once, for UDP
// and for TCP alike, rather than serving half the transports.
func TestRunPortInUse(t *testing.T) {
	t.Parallel()
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			var addr string
			if network == "udp" {
				pc, err := net.ListenPacket("udp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = pc.Close() })
				addr = pc.LocalAddr().String()
			} else {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = l.Close() })
				addr = l.Addr().String()
			}
			s, err := New(Config{Client: fake.NewClientset(), Listen: []string{addr}, Upstreams: []string{"10.0.0.2"}, Logger: testLogger()})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.Run(ctx); !errors.Is(err, syscall.EADDRINUSE) {
				t.Errorf("Run on a taken %s port: %v, want EADDRINUSE", network, err)
			}
			select {
			case <-s.Ready():
				t.Error("Ready closed")
			default:
			}
		})
	}
}

// TestRunStops checks that Run returns once ctx ends and lets go of its
// sockets.
func TestRunStops(t *testing.T) {
	t.Parallel()
	s, err := New(Config{Client: fake.NewClientset(), Listen: []string{"127.0.0.1:0"}, Upstreams: []string{"10.0.0.2"}, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready within 10s")
	}
	addr := s.Addrs()[0]
	if r := exchange(t, "tcp", addr, "x.cluster.local.", mdns.TypeA, 0); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("answer %v, want NXDOMAIN", r)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of its context ending")
	}
	ls, err := listen([]string{addr})
	if err != nil {
		t.Fatalf("port still held after Run: %v", err)
	}
	ls.close()
	if err := s.Run(context.Background()); err == nil {
		t.Error("second Run accepted")
	}
}
