package image

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestPauseELFParses(t *testing.T) {
	for _, tc := range []struct {
		goarch  string
		machine elf.Machine
	}{
		{"amd64", elf.EM_X86_64},
		{"arm64", elf.EM_AARCH64},
	} {
		t.Run(tc.goarch, func(t *testing.T) {
			b, err := pauseELF(tc.goarch)
			if err != nil {
				t.Fatal(err)
			}
			f, err := elf.NewFile(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("debug/elf: %v", err)
			}
			if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB || f.Type != elf.ET_EXEC || f.Machine != tc.machine {
				t.Fatalf("header = %v %v %v %v", f.Class, f.Data, f.Type, f.Machine)
			}
			var load, stack *elf.Prog
			for _, p := range f.Progs {
				switch p.Type {
				case elf.PT_LOAD:
					load = p
				case elf.PT_GNU_STACK:
					stack = p
				}
			}
			if load == nil || stack == nil {
				t.Fatalf("want PT_LOAD and PT_GNU_STACK, got %v", f.Progs)
			}
			if load.Off != 0 || load.Filesz != uint64(len(b)) || load.Flags != elf.PF_R|elf.PF_X {
				t.Errorf("PT_LOAD = %+v, want whole file read+execute", load.ProgHeader)
			}
			if f.Entry < load.Vaddr+elfCodeOffset || f.Entry >= load.Vaddr+load.Memsz {
				t.Errorf("entry %#x outside code of segment at %#x", f.Entry, load.Vaddr)
			}
			if stack.Flags&elf.PF_X != 0 {
				t.Errorf("stack is executable: %v", stack.Flags)
			}
		})
	}
	if _, err := pauseELF("riscv64"); err == nil || !strings.Contains(err.Error(), "riscv64") {
		t.Errorf("riscv64: err = %v, want a clear unsupported error", err)
	}
}

// TestPauseSignals runs the pause program on this machine, plainly and as
// PID 1 of a pid namespace (as in a pod): it must settle with SIGCHLD
// ignored and SIGTERM/SIGINT caught, keep running through a SIGCHLD, and
// exit 0 promptly on the stop signal.
func TestPauseSignals(t *testing.T) {
	prog, err := pauseELF(runtime.GOARCH)
	if err != nil {
		t.Skipf("no pause program for this machine: %v", err)
	}
	path := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(path, prog, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
		pid1 bool // in a new pid namespace, where the kernel drops unhandled signals
	}{
		{"SIGTERM", syscall.SIGTERM, false},
		{"SIGINT", syscall.SIGINT, false},
		{"SIGTERM as PID 1", syscall.SIGTERM, true},
		{"SIGINT as PID 1", syscall.SIGINT, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(path)
			if tc.pid1 {
				if os.Geteuid() != 0 {
					t.Skip("a new pid namespace needs root")
				}
				cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
			}
			p := startPause(t, cmd)
			waitFor(t, "pause to install its handlers and sleep", func() bool {
				st := procStatus(t, p.cmd.Process.Pid)
				return strings.HasPrefix(st["State"], "S") &&
					sigSet(t, st["SigIgn"], syscall.SIGCHLD) &&
					sigSet(t, st["SigCgt"], syscall.SIGTERM) && sigSet(t, st["SigCgt"], syscall.SIGINT)
			})
			if err := p.cmd.Process.Signal(syscall.SIGCHLD); err != nil {
				t.Fatal(err)
			}
			select {
			case <-p.done:
				t.Fatalf("pause exited on SIGCHLD: %v", p.err)
			case <-time.After(200 * time.Millisecond):
			}
			p.stop(t, tc.sig)
		})
	}
}

// TestPauseARM64Emulated runs the arm64 program under qemu user emulation,
// whose -strace output says when the program has reached its sleep.
func TestPauseARM64Emulated(t *testing.T) {
	qemu, err := exec.LookPath("qemu-aarch64-static")
	if err != nil {
		if qemu, err = exec.LookPath("qemu-aarch64"); err != nil {
			t.Skip("qemu-aarch64(-static) not installed (Debian qemu-user-static)")
		}
	}
	prog, err := pauseELF("arm64")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(path, prog, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
	}{
		{"SIGTERM", syscall.SIGTERM},
		{"SIGINT", syscall.SIGINT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var trace lockedBuffer
			cmd := exec.Command(qemu, "-strace", path)
			cmd.Stderr = &trace
			p := startPause(t, cmd)
			waitFor(t, "pause to reach ppoll", func() bool { return strings.Contains(trace.String(), "ppoll(") })
			if n := strings.Count(trace.String(), "rt_sigaction("); n != 3 {
				t.Fatalf("%d rt_sigaction calls, want 3:\n%s", n, trace.String())
			}
			p.stop(t, tc.sig)
		})
	}
}

type pauseProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done closes
}

func startPause(t *testing.T, cmd *exec.Cmd) *pauseProc {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &pauseProc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// stop sends sig and expects a prompt exit with status 0.
func (p *pauseProc) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("pause still running 5s after %v", sig)
	}
	if p.err != nil {
		var ee *exec.ExitError
		if errors.As(p.err, &ee) {
			t.Fatalf("after %v: %v (status %v)", sig, p.err, ee.Sys())
		}
		t.Fatalf("after %v: %v", sig, p.err)
	}
}

// procStatus returns /proc/<pid>/status as a map.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// sigSet reports whether sig is in a /proc status signal mask.
func sigSet(t *testing.T, mask string, sig syscall.Signal) bool {
	t.Helper()
	v, err := strconv.ParseUint(mask, 16, 64)
	if err != nil {
		t.Fatalf("signal mask %q: %v", mask, err)
	}
	return v&(1<<(uint(sig)-1)) != 0
}

// waitFor polls cond until it holds, failing the test after 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockedBuffer is a bytes.Buffer that exec's copying goroutine and the
// test can share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
