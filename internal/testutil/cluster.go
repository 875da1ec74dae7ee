package testutil

import (
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/server"
)

// StartClusterInit starts the first server of a cluster of several: its
// etcd serves peers over TLS, so others can join it with
// StartJoiningControlPlane.
func StartClusterInit(t testing.TB, mutate ...func(*server.Config)) *ControlPlane {
	t.Helper()
	return StartControlPlane(t, append([]func(*server.Config){func(c *server.Config) {
		c.ClusterInit = true
	}}, mutate...)...)
}

// StartJoiningControlPlane starts another server that joins the cluster
// of via, on its own free ports and data directory: it fetches the CA and
// token from via, becomes an etcd member, and runs its own API server,
// scheduler and controllers. Any server of the cluster can be via.
func StartJoiningControlPlane(t testing.TB, via *ControlPlane, mutate ...func(*server.Config)) *ControlPlane {
	t.Helper()
	url, token := via.srv.URL(), via.srv.Bundle().NodeToken
	return StartControlPlane(t, append([]func(*server.Config){func(c *server.Config) {
		c.JoinURL, c.Token = url, token
	}}, mutate...)...)
}

// ServerConfig returns the configuration the server was started with.
func (cp *ControlPlane) ServerConfig() server.Config { return cp.cfg }

// Start starts a stopped control plane again on the same data directory
// and ports, and returns the error if it does not become ready (as a
// removed etcd member's server does not).
func (cp *ControlPlane) Start() error {
	cp.t.Helper()
	if cp.cancel != nil {
		cp.t.Fatal("Start: the control plane is running")
	}
	return cp.start()
}

// WaitStopped waits up to timeout for the server to stop by itself (its
// etcd member removed, say) and returns the error it stopped with.
func (cp *ControlPlane) WaitStopped(timeout time.Duration) error {
	cp.t.Helper()
	if cp.cancel == nil {
		cp.t.Fatal("WaitStopped: the control plane is not running")
	}
	select {
	case err := <-cp.done:
		cp.cancel()
		cp.cancel = nil
		return err
	case <-time.After(timeout):
		cp.t.Fatalf("server still running after %v", timeout)
		return nil
	}
}

// RestartWith stops the server, adjusts its configuration with mutate,
// and starts it again on the same data directory and ports.
func (cp *ControlPlane) RestartWith(mutate ...func(*server.Config)) {
	cp.t.Helper()
	cp.Stop()
	for _, m := range mutate {
		m(&cp.cfg)
	}
	if err := cp.start(); err != nil {
		cp.t.Fatal(err)
	}
}
