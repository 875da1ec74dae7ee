package balancer

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
)

// chanSource reports whatever the test sends it.
func chanSource(updates <-chan []string) Source {
	return SourceFunc(func(ctx context.Context, set func([]string)) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case addrs := <-updates:
				set(addrs)
			}
		}
	})
}

// runBalancer starts b until the test ends.
func runBalancer(t *testing.T, b *Balancer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("balancer: %v", err)
		}
	})
}

// TestFailover runs two servers whose certificates each cover only their
// own address, the agent on the first: however the first fails, the
// agent's long request on it ends, and new requests reach the second,
// verified under the second's address.
func TestFailover(t *testing.T) {
	tests := []struct {
		name string
		fail func(t *testing.T, a *fakeServer, updates chan<- []string, b *fakeServer)
	}{
		{
			name: "server dies",
			fail: func(_ *testing.T, a *fakeServer, _ chan<- []string, _ *fakeServer) { a.kill() },
		},
		{
			name: "server turns unready",
			fail: func(_ *testing.T, a *fakeServer, _ chan<- []string, _ *fakeServer) { a.unready.Store(true) },
		},
		{
			name: "server leaves the endpoints",
			fail: func(_ *testing.T, _ *fakeServer, updates chan<- []string, b *fakeServer) {
				updates <- []string{b.addr}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := newTestCA(t)
			cluster := newFakeCluster()
			a := startFakeServer(t, "A", "127.0.0.1", ca, cluster)
			b := startFakeServer(t, "B", "127.0.0.2", ca, cluster)
			updates := make(chan []string, 10)
			bal, err := New(Config{
				REST: ca.restConfig(a.addr), Source: chanSource(updates),
				HealthInterval: 100 * time.Millisecond, Timeout: time.Second, Logger: testLogger(),
			})
			if err != nil {
				t.Fatal(err)
			}
			runBalancer(t, bal)
			updates <- []string{a.addr, b.addr}
			want := []string{a.addr, b.addr}
			slices.Sort(want)
			eventually(t, 5*time.Second, func() bool { return slices.Equal(bal.Addresses(), want) },
				"addresses %v, want %v", bal.Addresses(), want)

			hc, err := rest.HTTPClientFor(bal.RESTConfig())
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			base := "https://" + a.addr
			name, resp, err := get(ctx, hc, base, "/name")
			if err != nil || name != "A" {
				t.Fatalf("first request answered by %q (%v), want A", name, err)
			}
			if resp.ProtoMajor != 2 {
				t.Errorf("API traffic over %s, want HTTP/2 (pinged while idle)", resp.Proto)
			}
			streamOn, done := openStream(t, ctx, hc, base)
			if streamOn != "A" {
				t.Fatalf("stream opened on %q, want A", streamOn)
			}

			start := time.Now()
			tt.fail(t, a, updates, b)
			waitEnded(t, done, 10*time.Second)
			eventually(t, 10*time.Second, func() bool {
				name, _, err := get(ctx, hc, base, "/name")
				return err == nil && name == "B"
			}, "requests never reached B")
			t.Logf("moved to B after %v", time.Since(start).Round(time.Millisecond))
			if got := bal.Current(); got != b.addr {
				t.Errorf("current server %s, want %s", got, b.addr)
			}
			if streamOn, _ := openStream(t, ctx, hc, base); streamOn != "B" {
				t.Errorf("new stream opened on %q, want B", streamOn)
			}
		})
	}
}

// TestPingEndsStreamOnVanishedServer puts the first server behind a link
// that goes silent without closing anything. Health checks are off: HTTP/2
// pings alone must end the long request, and the next dial, which hangs
// in the TLS handshake, must give up and move to the second server.
func TestPingEndsStreamOnVanishedServer(t *testing.T) {
	ca := newTestCA(t)
	cluster := newFakeCluster()
	a := startFakeServer(t, "A", "127.0.0.1", ca, cluster)
	b := startFakeServer(t, "B", "127.0.0.2", ca, cluster)
	link := startFreezer(t, "127.0.0.1", a.addr)
	updates := make(chan []string, 1)
	updates <- []string{link.addr(), b.addr}
	bal, err := New(Config{
		REST: ca.restConfig(link.addr()), Source: chanSource(updates),
		HealthInterval: time.Hour, Timeout: 500 * time.Millisecond,
		PingInterval: 300 * time.Millisecond, PingTimeout: 300 * time.Millisecond,
		Logger: testLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	runBalancer(t, bal)
	eventually(t, 5*time.Second, func() bool { return len(bal.Addresses()) == 2 }, "addresses %v", bal.Addresses())
	hc, err := rest.HTTPClientFor(bal.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	base := "https://" + link.addr()
	streamOn, done := openStream(t, ctx, hc, base)
	if streamOn != "A" {
		t.Fatalf("stream opened on %q, want A", streamOn)
	}
	link.frozen.Store(true)
	// Silence for the ping interval, then the ping's timeout: well under
	// three seconds.
	waitEnded(t, done, 3*time.Second)
	eventually(t, 5*time.Second, func() bool {
		name, _, err := get(ctx, hc, base, "/name")
		return err == nil && name == "B"
	}, "requests never reached B")
	if got := bal.Current(); got != b.addr {
		t.Errorf("current server %s, want %s", got, b.addr)
	}
}

// TestEndpointsWatchResumes uses the default Source, Endpoints
// default/kubernetes watched through the balancer itself by a client-go
// informer: it learns a new server; when its server dies the watch breaks
// and the informer watches through the other one, and changes keep
// arriving.
func TestEndpointsWatchResumes(t *testing.T) {
	ca := newTestCA(t)
	cluster := newFakeCluster()
	a := startFakeServer(t, "A", "127.0.0.1", ca, cluster)
	b := startFakeServer(t, "B", "127.0.0.2", ca, cluster)
	cluster.setEndpoints(t, a.addr)
	bal, err := New(Config{REST: ca.restConfig(a.addr), HealthInterval: 100 * time.Millisecond, Timeout: time.Second, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	runBalancer(t, bal)
	eventually(t, 10*time.Second, func() bool { return a.watches.Load() == 1 }, "no Endpoints watch on A")

	cluster.setEndpoints(t, a.addr, b.addr)
	want := []string{a.addr, b.addr}
	slices.Sort(want)
	eventually(t, 5*time.Second, func() bool { return slices.Equal(bal.Addresses(), want) },
		"addresses %v, want %v", bal.Addresses(), want)
	if b.lists.Load() != 0 || b.watches.Load() != 0 {
		t.Fatalf("B served the Endpoints before A failed")
	}

	start := time.Now()
	a.kill()
	// The informer resumes from the last resourceVersion it saw: both
	// servers share one store, so B serves it without a re-list.
	eventually(t, 15*time.Second, func() bool { return b.watches.Load() == 1 },
		"informer did not watch through B")
	t.Logf("watch resumed on B after %v", time.Since(start).Round(time.Millisecond))

	const newcomer = "127.0.0.3:6443"
	cluster.setEndpoints(t, b.addr, newcomer)
	eventually(t, 5*time.Second, func() bool { return slices.Contains(bal.Addresses(), newcomer) },
		"change after the move not seen: addresses %v", bal.Addresses())
	if got := bal.Current(); got != b.addr {
		t.Errorf("current server %s, want %s", got, b.addr)
	}
}

// TestAddresses checks the candidate list: the first server always
// stays, the Source's addresses are cleaned up, and only a current server
// that was listed counts as having left.
func TestAddresses(t *testing.T) {
	const first, b, c = "10.0.0.1:6443", "10.0.0.2:6443", "10.0.0.3:6443"
	tests := []struct {
		name     string
		sets     [][]string
		want     []string
		wantLeft bool
	}{
		{name: "nothing learned", sets: [][]string{nil}, want: []string{first}},
		{name: "learned and first", sets: [][]string{{c, b}}, want: []string{first, b, c}},
		{name: "first listed once", sets: [][]string{{first, b}}, want: []string{first, b}},
		{name: "duplicates and garbage dropped", sets: [][]string{{b, b, "no-port", ""}}, want: []string{first, b}},
		{name: "first never listed has not left", sets: [][]string{{b}, {c}}, want: []string{first, c}},
		{name: "first listed then gone has left", sets: [][]string{{first, b}, {b}}, want: []string{first, b}, wantLeft: true},
		{name: "back before noticed has not left", sets: [][]string{{first}, {b}, {first, b}}, want: []string{first, b}},
	}
	ca := newTestCA(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bal, err := New(Config{REST: ca.restConfig(first), Source: chanSource(nil), Logger: testLogger()})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.sets {
				bal.setAddresses(s)
			}
			if got := bal.Addresses(); !slices.Equal(got, tt.want) {
				t.Errorf("addresses %v, want %v", got, tt.want)
			}
			if _, left := bal.takeLeft(); left != tt.wantLeft {
				t.Errorf("left = %v, want %v", left, tt.wantLeft)
			}
			for _, from := range tt.want {
				cands := bal.candidates(from)
				rest := slices.DeleteFunc(slices.Clone(tt.want), func(s string) bool { return s == from })
				slices.Sort(cands)
				if !slices.Equal(cands, rest) {
					t.Errorf("candidates from %s = %v, want %v", from, cands, rest)
				}
			}
		})
	}
}

// TestNew checks what New accepts.
func TestNew(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		name    string
		rc      *rest.Config
		initial string
		wantErr string
	}{
		{name: "https URL", rc: ca.restConfig("10.0.0.1:6443"), initial: "10.0.0.1:6443"},
		{name: "default port", rc: &rest.Config{Host: "https://api.example.com", TLSClientConfig: rest.TLSClientConfig{CAData: ca.pem}}, initial: "api.example.com:443"},
		{name: "bare host and port", rc: &rest.Config{Host: "10.0.0.1:6443", TLSClientConfig: rest.TLSClientConfig{CAData: ca.pem}}, initial: "10.0.0.1:6443"},
		{name: "no config", wantErr: "REST config is required"},
		{name: "plain HTTP", rc: &rest.Config{Host: "http://10.0.0.1:8080"}, wantErr: "not HTTPS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bal, err := New(Config{REST: tt.rc, Source: chanSource(nil)})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if bal.Current() != tt.initial {
				t.Errorf("current %s, want %s", bal.Current(), tt.initial)
			}
			rc := bal.RESTConfig()
			if rc.Transport == nil || rc.TLSClientConfig.CAData != nil || rc.Host != tt.rc.Host {
				t.Errorf("REST config not routed through the balancer: %+v", rc)
			}
			if _, err := rest.HTTPClientFor(rc); err != nil {
				t.Errorf("client-go refuses the config: %v", err)
			}
			if _, ok := rc.Transport.(*http.Transport); !ok {
				t.Errorf("transport %T", rc.Transport)
			}
		})
	}
}

// TestEndpointAddresses checks how Endpoints become addresses.
func TestEndpointAddresses(t *testing.T) {
	tests := []struct {
		name string
		ep   corev1.Endpoints
		want []string
	}{
		{name: "empty", want: nil},
		{
			name: "servers on one port",
			ep: corev1.Endpoints{Subsets: []corev1.EndpointSubset{{
				Addresses: []corev1.EndpointAddress{{IP: "10.0.0.1"}, {IP: "10.0.0.2"}},
				Ports:     []corev1.EndpointPort{{Name: "https", Port: 6443, Protocol: corev1.ProtocolTCP}},
			}}},
			want: []string{"10.0.0.1:6443", "10.0.0.2:6443"},
		},
		{
			name: "subsets per port, IPv6, not-ready skipped",
			ep: corev1.Endpoints{Subsets: []corev1.EndpointSubset{
				{Addresses: []corev1.EndpointAddress{{IP: "10.0.0.1"}}, Ports: []corev1.EndpointPort{{Port: 6443}}},
				{
					Addresses:         []corev1.EndpointAddress{{IP: "fd00::1"}},
					NotReadyAddresses: []corev1.EndpointAddress{{IP: "fd00::2"}},
					Ports:             []corev1.EndpointPort{{Port: 7443, Protocol: corev1.ProtocolTCP}},
				},
			}},
			want: []string{"10.0.0.1:6443", "[fd00::1]:7443"},
		},
		{
			name: "non-TCP ports skipped",
			ep: corev1.Endpoints{Subsets: []corev1.EndpointSubset{{
				Addresses: []corev1.EndpointAddress{{IP: "10.0.0.1"}},
				Ports:     []corev1.EndpointPort{{Port: 53, Protocol: corev1.ProtocolUDP}, {Port: 6443, Protocol: corev1.ProtocolTCP}},
			}}},
			want: []string{"10.0.0.1:6443"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := endpointAddresses(&tt.ep); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestSavedAddressesOutliveTheFirstServer: a balancer keeps the servers it
// learned in its state file, and the next one, started on that file while
// the first server is down, reaches the second without learning anything.
func TestSavedAddressesOutliveTheFirstServer(t *testing.T) {
	for _, tt := range []struct {
		name     string
		keep     bool
		wantName string
	}{
		{name: "with the saved list the second server answers", keep: true, wantName: "B"},
		{name: "without it nothing does", keep: false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ca := newTestCA(t)
			cluster := newFakeCluster()
			a := startFakeServer(t, "A", "127.0.0.1", ca, cluster)
			b := startFakeServer(t, "B", "127.0.0.2", ca, cluster)
			state := filepath.Join(t.TempDir(), "api-servers")
			updates := make(chan []string, 1)
			first, err := New(Config{REST: ca.restConfig(a.addr), Source: chanSource(updates), StateFile: state, Logger: testLogger()})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- first.Run(ctx) }()
			updates <- []string{a.addr, b.addr}
			eventually(t, 5*time.Second, func() bool {
				data, _ := os.ReadFile(state)
				return strings.Contains(string(data), a.addr) && strings.Contains(string(data), b.addr)
			}, "state file never listed both servers")
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if !tt.keep {
				if err := os.Remove(state); err != nil {
					t.Fatal(err)
				}
			}

			a.kill()
			// The next run learns nothing: its Source never reports.
			next, err := New(Config{REST: ca.restConfig(a.addr), Source: chanSource(nil), StateFile: state,
				Timeout: time.Second, Logger: testLogger()})
			if err != nil {
				t.Fatal(err)
			}
			hc, err := rest.HTTPClientFor(next.RESTConfig())
			if err != nil {
				t.Fatal(err)
			}
			name, _, err := get(t.Context(), hc, "https://"+a.addr, "/name")
			if name != tt.wantName || (tt.wantName == "" && err == nil) {
				t.Errorf("request with the first server down answered by %q (%v), want %q", name, err, tt.wantName)
			}
		})
	}
}
