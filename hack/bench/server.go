package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

// serverProc is a `skiff server` child process on free ports in its own
// data directory.
type serverProc struct {
	*proc
	dataDir string
	port    int
}

// startServer starts bin in a fresh data directory under dir, with extra
// flags appended.
func startServer(ctx context.Context, bin, dir string, extra ...string) (*serverProc, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "data")
	args := append([]string{"server",
		"--data-dir", dataDir,
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--https-port", strconv.Itoa(ports[0]),
		"--etcd-client-port", strconv.Itoa(ports[1]),
		"--etcd-peer-port", strconv.Itoa(ports[2]),
		"--disable-agent",
	}, extra...)
	p, err := startProc(ctx, "server", bin, args, filepath.Join(dir, "server.log"), "port", ports[0])
	if err != nil {
		return nil, err
	}
	return &serverProc{proc: p, dataDir: dataDir, port: ports[0]}, nil
}

// waitReady polls /readyz (public, so no credentials are needed) until it
// answers 200, and returns the time since the process was started.
func (p *serverProc) waitReady(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	hc := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // readiness only; the benchmark's clients verify
	}
	defer hc.CloseIdleConnections()
	url := fmt.Sprintf("https://127.0.0.1:%d/readyz", p.port)
	deadline := time.Now().Add(timeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(p.started), nil
			}
		}
		select {
		case <-p.exited:
			return 0, fmt.Errorf("server exited before ready (%v); see %s", p.waitErr, p.logPath)
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("server not ready after %s; see %s", timeout, p.logPath)
		}
	}
}

// kubeconfig is the admin kubeconfig the server wrote.
func (p *serverProc) kubeconfig() string { return filepath.Join(p.dataDir, "admin.kubeconfig") }

// selfReportedReady returns the sinceProcessStart the server logged when
// its API server became ready, or "" if it did not log one.
func (p *serverProc) selfReportedReady() string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	re := regexp.MustCompile(`component=apiserver.*sinceProcessStart=(\S+)`)
	if m := re.FindSubmatch(data); m != nil {
		return string(m[1])
	}
	return ""
}

// readMemory reads the server process's memory.
func (p *serverProc) readMemory() (memory, error) { return readMemory(p.pid()) }

// stop sends SIGTERM, and SIGKILL if the server has not exited after 10 s.
func (p *serverProc) stop() error { return p.proc.stop(10 * time.Second) }

// freePorts returns n distinct TCP ports free on the loopback now. They are
// held open until all are chosen, so that no two are the same.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
