package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// proc is a child process of the benchmark with its output in a log file.
type proc struct {
	name    string // for messages: "server", "agent"
	cmd     *exec.Cmd
	logPath string
	started time.Time
	// exited is closed when the process has exited; waitErr is then what
	// Wait returned.
	exited  chan struct{}
	waitErr error
}

// startProc starts bin with args, its stdout and stderr going to logPath;
// attrs are logged with its start.
func startProc(ctx context.Context, name, bin string, args []string, logPath string, attrs ...any) (*proc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so a Ctrl-C meant for the benchmark does not
	// reach the child before the benchmark stops it in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &proc{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	slog.InfoContext(ctx, name+" started", append([]any{"pid", cmd.Process.Pid, "log", logPath}, attrs...)...)
	return p, nil
}

// pid is the child's process ID.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exitedErr returns an error if the process has exited, nil while it runs.
func (p *proc) exitedErr() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited (%v); see %s", p.name, p.waitErr, p.logPath)
	default:
		return nil
	}
}

// stop sends SIGTERM, and SIGKILL if the process has not exited after
// timeout.
func (p *proc) stop(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		var exit *exec.ExitError
		if errors.As(p.waitErr, &exit) {
			return fmt.Errorf("%s exit: %w; see %s", p.name, p.waitErr, p.logPath)
		}
		return p.waitErr
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.name, timeout)
	}
}

// memory is a sample of a process's memory.
type memory struct {
	RSS, HWM int64 // bytes: resident now (VmRSS), and the peak so far (VmHWM)
	// Anon is the part of RSS that is the process's own (RssAnon): the
	// rest is mostly the binary's pages, shared by every process of it.
	Anon int64
	// PSS is the proportional set size from smaps_rollup: shared pages
	// count divided among their users, so the PSS of processes adds up.
	PSS int64
}

// readMemory reads VmRSS, VmHWM and RssAnon from /proc/<pid>/status and Pss from
// /proc/<pid>/smaps_rollup.
func readMemory(pid int) (memory, error) {
	var m memory
	if err := procKB(fmt.Sprintf("/proc/%d/status", pid), map[string]*int64{"VmRSS": &m.RSS, "VmHWM": &m.HWM, "RssAnon": &m.Anon}); err != nil {
		return memory{}, err
	}
	if m.RSS == 0 {
		return memory{}, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	// smaps_rollup may be missing on old kernels; PSS is then left 0.
	if err := procKB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), map[string]*int64{"Pss": &m.PSS}); err != nil && !errors.Is(err, os.ErrNotExist) {
		return memory{}, err
	}
	return m, nil
}

// procKB reads "Key: N kB" lines of a /proc file into the fields named by
// want, as bytes.
func procKB(path string, want map[string]*int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		dst := want[k]
		if !ok || dst == nil {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return fmt.Errorf("%s: parse %s %q: %w", path, k, v, err)
		}
		*dst = kb << 10
	}
	return sc.Err()
}

// dropPageCache evicts bin's cached pages, so the processes the bench
// starts map it as read from disk (as after an install and a reboot). How
// the pages came to be cached changes RSS by as much as 20 MB: the Go
// linker writes its output through a shared mapping, and a server started
// from a binary just linked maps larger folios of it than one started from
// a binary read back or copied.
func dropPageCache(bin string) error {
	f, err := os.Open(bin)
	if err != nil {
		return err
	}
	defer f.Close()
	// Dirty pages are not dropped; write them back first.
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", bin, err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("drop page cache of %s: %w", bin, err)
	}
	return nil
}
