package balancer

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// testCA signs serving certificates that cover exactly one IP each, as a
// server's advertised address: a server dialled under another server's
// name fails verification.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) serving(t *testing.T, ip string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "apiserver " + ip},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP(ip)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// restConfig is a client config for the server at addr, trusting ca.
func (ca *testCA) restConfig(addr string) *rest.Config {
	return &rest.Config{Host: "https://" + addr, TLSClientConfig: rest.TLSClientConfig{CAData: ca.pem}}
}

// fakeCluster is the state fake API servers share, as servers on one etcd
// do: Endpoints default/kubernetes, and the watches on it.
type fakeCluster struct {
	mu   sync.Mutex
	rv   int
	ep   *corev1.Endpoints
	subs map[chan watch.Event]struct{}
}

func newFakeCluster() *fakeCluster {
	return &fakeCluster{subs: map[chan watch.Event]struct{}{}}
}

// setEndpoints lists addrs (host:port) in the Endpoints and tells every
// watch.
func (c *fakeCluster) setEndpoints(t *testing.T, addrs ...string) {
	t.Helper()
	ep := &corev1.Endpoints{
		TypeMeta:   metav1.TypeMeta{Kind: "Endpoints", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"},
	}
	for _, a := range addrs {
		host, p, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(p)
		ep.Subsets = append(ep.Subsets, corev1.EndpointSubset{
			Addresses: []corev1.EndpointAddress{{IP: host}},
			Ports:     []corev1.EndpointPort{{Name: "https", Port: int32(port), Protocol: corev1.ProtocolTCP}},
		})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rv++
	ep.ResourceVersion = strconv.Itoa(c.rv)
	typ := watch.Modified
	if c.ep == nil {
		typ = watch.Added
	}
	c.ep = ep
	for ch := range c.subs {
		ch <- watch.Event{Type: typ, Object: ep.DeepCopy()}
	}
}

func (c *fakeCluster) subscribe() chan watch.Event {
	ch := make(chan watch.Event, 100)
	c.mu.Lock()
	c.subs[ch] = struct{}{}
	c.mu.Unlock()
	return ch
}

func (c *fakeCluster) unsubscribe(ch chan watch.Event) {
	c.mu.Lock()
	delete(c.subs, ch)
	c.mu.Unlock()
}

// fakeServer is one API server: /readyz, /name (which server answered),
// /stream (a long request that writes the name and then waits, as a watch
// does), and list and watch of Endpoints.
type fakeServer struct {
	name    string
	addr    string
	srv     *httptest.Server
	cluster *fakeCluster
	unready atomic.Bool
	lists   atomic.Int32 // Endpoints lists served
	watches atomic.Int32 // Endpoints watches open
}

func startFakeServer(t *testing.T, name, ip string, ca *testCA, cluster *fakeCluster) *fakeServer {
	t.Helper()
	s := &fakeServer{name: name, cluster: cluster}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.Listener = ln
	s.srv.EnableHTTP2 = true
	s.srv.Config.ErrorLog = slog.NewLogLogger(testLogger().Handler(), slog.LevelDebug)
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.serving(t, ip)}}
	s.srv.StartTLS()
	s.addr = ln.Addr().String()
	t.Cleanup(s.kill)
	return s
}

// kill stops the server at once, closing every connection.
func (s *fakeServer) kill() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

func (s *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/readyz":
		if s.unready.Load() {
			http.Error(w, "not ready", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	case "/name":
		_, _ = io.WriteString(w, s.name)
	case "/stream":
		_, _ = io.WriteString(w, s.name+"\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	case "/api/v1/namespaces/default/endpoints":
		if r.URL.Query().Get("watch") == "true" {
			s.watch(w, r)
			return
		}
		s.list(w)
	default:
		http.NotFound(w, r)
	}
}

func (s *fakeServer) list(w http.ResponseWriter) {
	s.lists.Add(1)
	c := s.cluster
	c.mu.Lock()
	list := &corev1.EndpointsList{TypeMeta: metav1.TypeMeta{Kind: "EndpointsList", APIVersion: "v1"},
		ListMeta: metav1.ListMeta{ResourceVersion: strconv.Itoa(c.rv)}}
	if c.ep != nil {
		list.Items = append(list.Items, *c.ep.DeepCopy())
	}
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(list)
}

// watch streams changes. Streaming lists (sendInitialEvents) are refused
// as an older server would, so client-go lists instead.
func (s *fakeServer) watch(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("sendInitialEvents") == "true" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(&metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status: metav1.StatusFailure, Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest, Message: "no streaming lists"})
		return
	}
	ch := s.cluster.subscribe()
	defer s.cluster.unsubscribe(ch)
	s.watches.Add(1)
	defer s.watches.Add(-1)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-ch:
			raw, err := json.Marshal(ev.Object)
			if err != nil {
				return
			}
			if enc.Encode(&metav1.WatchEvent{Type: string(ev.Type), Object: runtime.RawExtension{Raw: raw}}) != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}
}

// freezer forwards TCP connections to a server until frozen; then it
// swallows every byte and closes nothing, as a host that dropped off the
// network does.
type freezer struct {
	ln     net.Listener
	target string
	frozen atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startFreezer(t *testing.T, ip, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target}
	f.wg.Go(f.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			_ = c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *freezer) addr() string { return f.ln.Addr().String() }

func (f *freezer) keep(c net.Conn) {
	f.mu.Lock()
	f.conns = append(f.conns, c)
	f.mu.Unlock()
}

func (f *freezer) accept() {
	for {
		in, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.keep(in)
		out, err := net.Dial("tcp", f.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		f.keep(out)
		f.wg.Go(func() { f.pipe(out, in) })
		f.wg.Go(func() { f.pipe(in, out) })
	}
}

// pipe copies src to dst while not frozen.
func (f *freezer) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !f.frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !f.frozen.Load() {
				_ = dst.Close()
			}
			return
		}
	}
}

// get fetches path through the client and returns the body. The host
// named is the first server's, whichever answers.
func get(ctx context.Context, hc *http.Client, base, path string) (string, *http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return "", nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp, err
}

// eventually polls cond every 20 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: "+msg, append([]any{timeout}, args...)...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testLogger is quiet unless SKIFF_TEST_LOG is set.
func testLogger() *slog.Logger {
	var w io.Writer = io.Discard
	if os.Getenv("SKIFF_TEST_LOG") != "" {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// openStream starts a long request to /stream, as a watch is, and returns
// the server that answered and a channel that gets the error ending it.
func openStream(t *testing.T, ctx context.Context, hc *http.Client, base string) (string, <-chan error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	br := bufio.NewReader(resp.Body)
	name, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("read stream: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		defer resp.Body.Close()
		_, err := io.Copy(io.Discard, br)
		if err == nil {
			err = errors.New("stream ended cleanly")
		}
		done <- err
	}()
	return strings.TrimSpace(name), done
}

// waitEnded fails unless the stream ends within timeout.
func waitEnded(t *testing.T, done <-chan error, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case err := <-done:
		t.Logf("stream ended after %v: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(timeout):
		t.Fatalf("stream on the old server still open after %v", timeout)
	}
	return time.Since(start)
}
