package dns

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

// testServer runs a Server on 127.0.0.1:0 over a fake clientset holding
// objs. Upstreams are none unless mutate sets some.
func testServer(t testing.TB, objs []runtime.Object, mutate ...func(*Config)) (*Server, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset(objs...)
	// The fake watch drops what is created between the informers' list
	// and their watch: tests that change objects wait for both watches,
	// signalled once the tracker has registered them.
	watching := make(chan struct{}, 2)
	client.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		var opts metav1.ListOptions
		if wa, ok := a.(k8stesting.WatchActionImpl); ok {
			opts = wa.ListOptions
		}
		w, err := client.Tracker().Watch(a.GetResource(), a.GetNamespace(), opts)
		if err == nil {
			select {
			case watching <- struct{}{}:
			default: // a later re-watch
			}
		}
		return true, w, err
	})
	cfg := Config{
		Client:     client,
		Listen:     []string{"127.0.0.1:0"},
		ResolvConf: filepath.Join(t.TempDir(), "no-resolv.conf"),
		Logger:     testLogger(),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	deadline := time.After(10 * time.Second)
	for range 2 {
		select {
		case <-watching:
		case err := <-done:
			t.Fatalf("Run ended early: %v", err)
		case <-deadline:
			t.Fatal("informers did not watch within 10s")
		}
	}
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("Run ended early: %v", err)
	case <-deadline:
		t.Fatal("not ready within 10s")
	}
	return s, client
}

// exchange asks addr one question over network ("udp" or "tcp"), with
// EDNS0 if size is not zero.
func exchange(t testing.TB, network, addr, name string, qtype uint16, size uint16) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg).SetQuestion(name, qtype)
	if size > 0 {
		m.SetEdns0(size, false)
	}
	c := &mdns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, mdns.TypeToString[qtype], network, err)
	}
	if r.Id != m.Id {
		t.Fatalf("reply id %d, want %d", r.Id, m.Id)
	}
	return r
}

// rrs renders records as "name type data", sorted, TTLs dropped unless
// withTTL: the tables read as zone files.
func rrs(list []mdns.RR, withTTL bool) []string {
	var out []string
	for _, rr := range list {
		if rr.Header().Rrtype == mdns.TypeOPT {
			continue
		}
		f := strings.Fields(rr.String())
		// name ttl class type data...
		line := append([]string{f[0]}, f[2:]...)
		if withTTL {
			line = f
		}
		out = append(out, strings.Join(line, " "))
	}
	slices.Sort(out)
	return out
}

func svc(ns, name, clusterIP string, mutate ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{ClusterIP: clusterIP},
	}
	if clusterIP != "" && clusterIP != corev1.ClusterIPNone {
		s.Spec.ClusterIPs = []string{clusterIP}
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

func withPorts(ports ...corev1.ServicePort) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.Ports = ports }
}

type ep struct {
	ip, hostname string
	ready        bool
}

func endpointSlice(ns, name, service string, family discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: family,
		Ports:       ports,
	}
	for _, e := range eps {
		d := discoveryv1.Endpoint{Addresses: []string{e.ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(e.ready)}}
		if e.hostname != "" {
			d.Hostname = ptr.To(e.hostname)
		}
		s.Endpoints = append(s.Endpoints, d)
	}
	return s
}

func slicePort(name string, port int32, proto corev1.Protocol) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Port: ptr.To(port), Protocol: ptr.To(proto)}
}

// poll retries cond until it holds or the deadline passes.
func poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
