package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serverProc is a `skiff server` child process on free ports in its own
// data directory.
type serverProc struct {
	cmd     *exec.Cmd
	dataDir string
	logPath string
	port    int
	started time.Time
	exited  chan error
}

// startServer starts bin in a fresh data directory under dir, with extra
// flags appended.
func startServer(ctx context.Context, bin, dir string, extra ...string) (*serverProc, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "data")
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	args := append([]string{"server",
		"--data-dir", dataDir,
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--https-port", strconv.Itoa(ports[0]),
		"--etcd-client-port", strconv.Itoa(ports[1]),
		"--etcd-peer-port", strconv.Itoa(ports[2]),
		"--disable-agent",
	}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so a Ctrl-C meant for the benchmark does not
	// reach the server before the benchmark stops it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &serverProc{cmd: cmd, dataDir: dataDir, logPath: logPath, port: ports[0], exited: make(chan error, 1)}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { p.exited <- cmd.Wait() }()
	slog.InfoContext(ctx, "server started", "pid", cmd.Process.Pid, "port", p.port, "log", logPath)
	return p, nil
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
		case err := <-p.exited:
			return 0, fmt.Errorf("server exited before ready (%v); see %s", err, p.logPath)
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

// memory is a sample of the server's memory from /proc/<pid>/status.
type memory struct {
	RSS, HWM int64 // bytes: resident now, and the peak so far
}

// readMemory reads VmRSS and VmHWM of the server process.
func (p *serverProc) readMemory() (memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return memory{}, err
	}
	defer f.Close()
	var m memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &m.RSS
		case "VmHWM":
			dst = &m.HWM
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return memory{}, fmt.Errorf("parse %s %q: %w", k, v, err)
		}
		*dst = kb << 10
	}
	if m.RSS == 0 {
		return memory{}, errors.New("no VmRSS in /proc status")
	}
	return m, sc.Err()
}

// stop sends SIGTERM, and SIGKILL if the server has not exited after 10 s.
func (p *serverProc) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return fmt.Errorf("server exit: %w", err)
		}
		return err
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return errors.New("server did not stop within 10s of SIGTERM; killed")
	}
}

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
