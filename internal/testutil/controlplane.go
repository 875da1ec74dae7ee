// Package testutil holds what tests share: an in-process control plane on
// free ports in a temporary directory, and helpers to poll for a condition.
package testutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

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
	for attempt := 1; ; attempt++ {
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
		err := cp.start()
		// FreePort's ports are free when probed and unique in this
		// process, but another process (a second test binary, another
		// developer's run) may bind one before the server does: start
		// again on fresh ports and a fresh directory.
		if err != nil && attempt < 3 && isAddrInUse(err) {
			t.Logf("control plane start on busy port, retrying: %v", err)
			continue
		}
		if err != nil {
			cp.Stop()
			t.Fatal(err)
		}
		t.Cleanup(cp.Stop)
		return cp
	}
}

// isAddrInUse reports whether a start failed because a port was taken.
// etcd does not always wrap the listener's error, so the text is
// checked too.
func isAddrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

// startTimeout bounds a start on a loaded machine; a start usually takes
// a second or two.
const startTimeout = 60 * time.Second

func (cp *ControlPlane) start() error {
	srv, err := server.New(cp.cfg)
	if err != nil {
		return fmt.Errorf("server config: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		return fmt.Errorf("server stopped before ready: %w", err)
	case <-time.After(startTimeout):
		cancel()
		<-done
		return fmt.Errorf("server not ready within %v", startTimeout)
	}
	cp.srv, cp.cancel, cp.done = srv, cancel, done
	cp.Kubeconfig = srv.AdminKubeconfig()
	rc, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig)
	if err != nil {
		return fmt.Errorf("admin kubeconfig: %w", err)
	}
	rc.QPS, rc.Burst = 1000, 2000
	cp.Config = rc
	cp.Client = kubernetes.NewForConfigOrDie(rc)
	return nil
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
	if err := cp.start(); err != nil {
		cp.t.Fatal(err)
	}
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

// testLogger is quiet unless SKIFF_TEST_LOG is set. The first call also
// routes klog, through which client-go logs (leader election retries,
// informer watch errors at shutdown), to the same place: otherwise those
// lines go to stderr and drown go test's output.
func testLogger() *slog.Logger {
	var w io.Writer = io.Discard
	if os.Getenv("SKIFF_TEST_LOG") != "" {
		w = os.Stderr
	}
	l := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	klogOnce.Do(func() { klog.SetSlogLogger(l) })
	return l
}

// Logger returns the logger to give components a test builds itself, so
// they are as quiet as the control plane unless SKIFF_TEST_LOG is set.
func Logger() *slog.Logger { return testLogger() }

// klogOnce guards klog's process-wide logger.
var klogOnce sync.Once

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
