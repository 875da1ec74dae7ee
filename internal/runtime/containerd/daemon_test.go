package containerd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/runtime/cri"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// needContainerd skips when the binaries the tests run are absent.
func needContainerd(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed: %v", bin, err)
		}
	}
}

// testLogger sends a component's logs to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// running is a Daemon whose Run executes in the background.
type running struct {
	d      *Daemon
	cancel context.CancelFunc
	done   chan error
}

// start runs a Daemon for cfg and waits for Ready. Stopping is left to
// the test (stop), with a cleanup that stops it anyway.
func start(t *testing.T, cfg Config) *running {
	t.Helper()
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{d: d, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- d.Run(ctx) }()
	t.Cleanup(func() { _ = r.stop(t) })
	select {
	case <-d.Ready():
	case err := <-r.done:
		r.done <- err
		t.Fatalf("Run ended before Ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatalf("containerd not ready after 60s")
	}
	return r
}

// stop cancels Run and returns its result; later calls return nil.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("Run did not return 30s after cancel")
		return nil
	}
}

// pid returns the containerd pid from the pid file.
func (r *running) pid(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile(r.d.p.pid)
	if err != nil {
		t.Fatalf("read pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	return pid
}

// processesUsing lists live processes whose command line mentions s:
// containerd runs with --config under its Dir and shims with -address.
func processesUsing(t *testing.T, s string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !alive(pid) {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if strings.Contains(string(cmdline), s) {
			out = append(out, fmt.Sprintf("%d: %s", pid, strings.ReplaceAll(string(cmdline), "\x00", " ")))
		}
	}
	return out
}

// noProcessesLeft asserts at cleanup that nothing runs from dir.
func noProcessesLeft(t *testing.T, dir string) {
	t.Cleanup(func() {
		if left := processesUsing(t, dir); len(left) > 0 {
			t.Errorf("processes left running from %s:\n%s", dir, strings.Join(left, "\n"))
		}
	})
}

// checkCRI asserts that containerd's CRI plugin answers through cri.Dial.
func checkCRI(t *testing.T, endpoint string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cri.Dial(ctx, endpoint)
	if err != nil {
		t.Fatalf("cri.Dial: %v", err)
	}
	defer c.Close()
	if v := c.Version(); v.GetRuntimeName() != "containerd" || v.GetRuntimeApiVersion() != "v1" {
		t.Errorf("Version = %v, want runtime containerd, API v1", v)
	}
	if got := c.RuntimeVersion(); !strings.HasPrefix(got, "containerd://") || len(got) == len("containerd://") {
		t.Errorf("RuntimeVersion() = %q, want containerd://<version>", got)
	}
	resp, err := c.Runtime.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	ready := false
	for _, cond := range resp.GetStatus().GetConditions() {
		if cond.Type == runtimeapi.RuntimeReady {
			ready = cond.Status
		}
	}
	if !ready {
		t.Errorf("Status conditions %v lack RuntimeReady=true", resp.GetStatus().GetConditions())
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

func TestDaemonLifecycle(t *testing.T) {
	needContainerd(t)
	dir := t.TempDir()
	noProcessesLeft(t, dir)
	cfg := Config{Dir: dir, StopTimeout: 5 * time.Second, Logger: testLogger(t)}
	sock := filepath.Join(dir, "containerd.sock")

	var first int
	t.Run("start: CRI answers and runtime is ready", func(t *testing.T) {
		r := start(t, cfg)
		checkCRI(t, r.d.Endpoint())
		first = r.pid(t)
		if !runsConfig(first, filepath.Join(dir, "config.toml")) {
			t.Errorf("pid file names %d, which is not containerd on our config", first)
		}
		if err := r.stop(t); err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
		if alive(first) {
			t.Errorf("containerd %d still alive after Run returned", first)
		}
		for _, f := range []string{sock, sock + ".ttrpc", filepath.Join(dir, "containerd.pid")} {
			if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s left behind (stat err %v)", f, err)
			}
		}
	})

	t.Run("restart on the same Dir", func(t *testing.T) {
		r := start(t, cfg)
		checkCRI(t, r.d.Endpoint())
		if pid := r.pid(t); pid == first {
			t.Errorf("same pid %d as the first run", pid)
		}
		if err := r.stop(t); err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	})

	t.Run("stale containerd from a crashed run is stopped", func(t *testing.T) {
		// A containerd on our config whose owner vanished: started
		// without Pdeathsig, with only the pid file pointing at it.
		stale := exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
		stale.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := stale.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- stale.Wait() }()
		t.Cleanup(func() {
			_ = stale.Process.Kill()
			<-exited
		})
		if err := os.WriteFile(filepath.Join(dir, "containerd.pid"), []byte(strconv.Itoa(stale.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
		checkCRI(t, "unix://"+sock) // it really holds the instance

		r := start(t, cfg)
		// Ready implies the stale process is dead; reaping it is ours.
		select {
		case <-exited:
			exited <- nil // for the cleanup
		case <-time.After(5 * time.Second):
			t.Fatalf("stale containerd %d still running after the new one became ready", stale.Process.Pid)
		}
		checkCRI(t, r.d.Endpoint())
		if pid := r.pid(t); pid == stale.Process.Pid {
			t.Errorf("pid file still names the stale process")
		}
		if err := r.stop(t); err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	})

	t.Run("cancel while starting", func(t *testing.T) {
		d, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		pidFile := filepath.Join(dir, "containerd.pid")
		waitFor(t, "containerd to start", 30*time.Second, func() bool {
			_, err := os.Stat(pidFile)
			return err == nil
		})
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run cancelled while starting = %v, want nil", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
		if left := processesUsing(t, dir); len(left) > 0 {
			t.Errorf("processes left after cancel: %v", left)
		}
	})

	t.Run("unrelated process in the pid file is left alone", func(t *testing.T) {
		other := exec.Command("sleep", "60")
		if err := other.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = other.Process.Kill()
			_ = other.Wait()
		})
		if err := os.WriteFile(filepath.Join(dir, "containerd.pid"), []byte(strconv.Itoa(other.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
		r := start(t, cfg)
		if !alive(other.Process.Pid) {
			t.Errorf("unrelated process %d named by the pid file was killed", other.Process.Pid)
		}
		if err := r.stop(t); err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	})
}

func TestDaemonFailures(t *testing.T) {
	needContainerd(t)
	tests := []struct {
		name string
		cfg  func(t *testing.T, dir string) Config
		// crash, if set, is done to the running containerd.
		crash   func(t *testing.T, r *running)
		wantErr string
	}{
		{
			name: "containerd killed while running",
			cfg:  func(t *testing.T, dir string) Config { return Config{Dir: dir, Logger: testLogger(t)} },
			crash: func(t *testing.T, r *running) {
				if err := syscall.Kill(r.pid(t), syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "containerd exited unexpectedly (signal: killed); end of",
		},
		{
			name: "binary exits at once",
			cfg: func(t *testing.T, dir string) Config {
				script := filepath.Join(dir, "fake-containerd")
				if err := os.WriteFile(script, []byte("#!/bin/sh\necho fake containerd gives up >&2\nexit 3\n"), 0o755); err != nil {
					t.Fatal(err)
				}
				return Config{Dir: dir, Binary: script, Logger: testLogger(t)}
			},
			wantErr: "fake containerd gives up",
		},
		{
			name:    "binary missing",
			cfg:     func(t *testing.T, dir string) Config { return Config{Dir: dir, Binary: filepath.Join(dir, "nope")} },
			wantErr: "find binary",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			noProcessesLeft(t, dir)
			var err error
			if tt.crash != nil {
				r := start(t, tt.cfg(t, dir))
				tt.crash(t, r)
				select {
				case err = <-r.done:
					r.done <- nil // for the cleanup
				case <-time.After(30 * time.Second):
					t.Fatal("Run did not return after containerd died")
				}
			} else {
				var d *Daemon
				if d, err = New(tt.cfg(t, dir)); err == nil {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					err = d.Run(ctx)
				}
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestDaemonLongDir(t *testing.T) {
	needContainerd(t)
	dir := filepath.Join(t.TempDir(), strings.Repeat("long-directory-name-", 5))
	noProcessesLeft(t, dir)
	r := start(t, Config{Dir: dir, Logger: testLogger(t)})
	if r.d.p.sockDir == "" || !strings.HasPrefix(r.d.Endpoint(), "unix:///run/skiff-") {
		t.Fatalf("Endpoint() = %s, want a socket under /run/skiff-*", r.d.Endpoint())
	}
	checkCRI(t, r.d.Endpoint())
	if err := r.stop(t); err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
	if _, err := os.Stat(r.d.p.sockDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket dir %s left behind (stat err %v)", r.d.p.sockDir, err)
	}
	if err := r.d.Run(context.Background()); err == nil {
		t.Errorf("second Run on one Daemon succeeded, want an error")
	}
}

// helperDirEnv makes the test binary, re-executed, run a Daemon in the
// named directory until killed; see TestDaemonDiesWithOwner.
const helperDirEnv = "SKIFF_TEST_CONTAINERD_OWNER_DIR"

func TestHelperOwner(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		t.Skip("helper process for TestDaemonDiesWithOwner")
	}
	d, err := New(Config{Dir: dir, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		<-d.Ready()
		fmt.Println("ready")
	}()
	t.Fatal(d.Run(context.Background()))
}

// TestDaemonDiesWithOwner kills the agent's process outright and checks
// that its containerd goes too (Pdeathsig), so a restarted agent is never
// locked out by an orphan.
func TestDaemonDiesWithOwner(t *testing.T) {
	needContainerd(t)
	dir := t.TempDir()
	noProcessesLeft(t, dir)
	owner := exec.Command(os.Args[0], "-test.run=^TestHelperOwner$")
	owner.Env = append(os.Environ(), helperDirEnv+"="+dir)
	owner.Stderr = testWriter{t}
	out, err := owner.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = owner.Process.Kill()
		_ = owner.Wait()
	})
	line := make(chan string, 1)
	go func() {
		buf := make([]byte, 64)
		n, _ := out.Read(buf)
		line <- string(buf[:n])
	}()
	select {
	case l := <-line:
		if !strings.Contains(l, "ready") {
			t.Fatalf("owner said %q, want ready", l)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("owner's containerd not ready after 60s")
	}
	data, err := os.ReadFile(filepath.Join(dir, "containerd.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || !alive(pid) {
		t.Fatalf("pid file %q names no live process", data)
	}
	if err := owner.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = owner.Wait()
	waitFor(t, "containerd to exit after its owner was killed", 15*time.Second, func() bool { return !alive(pid) })
}
