// Package testutil holds what tests share: an in-process control plane on
// free ports in a temporary directory, and helpers to poll for a condition.
package testutil

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiffhq/skiff/internal/server"
)

// ControlPlane is a `skiff server` running inside the test process.
type ControlPlane struct {
	t       testing.TB
	cfg     server.Config
	srv     *server.Server
	cancel  context.CancelFunc
	done    chan error
	DataDir string
	// Kubeconfig is the admin kubeconfig's path.
	Kubeconfig string
	// Config is a client-go config for the admin user.
	Config *rest.Config
	// Client is a typed clientset for the admin user.
	Client kubernetes.Interface
}

// StartControlPlane starts a control plane that stops when the test ends.
// mutate, if given, adjusts the server configuration first.
func StartControlPlane(t testing.TB, mutate ...func(*server.Config)) *ControlPlane {
	t.Helper()
	cfg := server.Config{
		DataDir:          t.TempDir(),
		BindAddress:      "127.0.0.1",
		AdvertiseAddress: "127.0.0.1",
		HTTPSPort:        FreePort(t),
		EtcdClientPort:   FreePort(t),
		EtcdPeerPort:     FreePort(t),
		Logger:           testLogger(),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	cp := &ControlPlane{t: t, cfg: cfg, DataDir: cfg.DataDir}
	cp.start()
	t.Cleanup(cp.Stop)
	return cp
}

func (cp *ControlPlane) start() {
	cp.t.Helper()
	srv, err := server.New(cp.cfg)
	if err != nil {
		cp.t.Fatalf("server config: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		cp.t.Fatalf("server stopped before ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		cp.t.Fatalf("server not ready within 30s")
	}
	cp.srv, cp.cancel, cp.done = srv, cancel, done
	cp.Kubeconfig = srv.AdminKubeconfig()
	rc, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig)
	if err != nil {
		cp.t.Fatalf("admin kubeconfig: %v", err)
	}
	rc.QPS, rc.Burst = 1000, 2000
	cp.Config = rc
	cp.Client = kubernetes.NewForConfigOrDie(rc)
}

// EtcdEndpoint returns the embedded etcd's client URL, for tests that
// reach under the API server (to compact history, say).
func (cp *ControlPlane) EtcdEndpoint() string {
	return fmt.Sprintf("http://127.0.0.1:%d", cp.cfg.EtcdClientPort)
}

// Server returns the running server.
func (cp *ControlPlane) Server() *server.Server { return cp.srv }

// Stop shuts the server down and waits for it; it is safe to call twice.
func (cp *ControlPlane) Stop() {
	if cp.cancel == nil {
		return
	}
	cp.cancel()
	select {
	case err := <-cp.done:
		if err != nil {
			cp.t.Errorf("server stopped with error: %v", err)
		}
	case <-time.After(30 * time.Second):
		cp.t.Errorf("server did not stop within 30s")
	}
	cp.cancel = nil
}

// Restart stops the server and starts it again on the same data directory
// and ports, as an operator restarting the process would.
func (cp *ControlPlane) Restart() {
	cp.t.Helper()
	cp.Stop()
	cp.start()
}

// FreePort returns a TCP port on 127.0.0.1 that is free and that no other
// caller in this process has been given. Ports come from below the kernel's
// ephemeral range (32768 and up), so an outgoing connection cannot take one
// while a server restarts on it.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := 20000 + rand.IntN(12000)
		if portsGiven[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		portsGiven[p] = true
		return p
	}
	t.Fatalf("no free port found")
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// testLogger is quiet unless SKIFF_TEST_LOG is set.
func testLogger() *slog.Logger {
	var w io.Writer = io.Discard
	if os.Getenv("SKIFF_TEST_LOG") != "" {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// Eventually polls cond every 20 ms until it returns true or timeout passes,
// then fails the test with msg.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", timeout, fmt.Sprintf(msg, args...))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
