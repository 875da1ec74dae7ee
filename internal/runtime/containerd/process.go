package containerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skiffhq/skiff/internal/runtime/cri"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// maxLogSize is the size beyond which containerd.log is rotated (to
// containerd.log.1) at start, so a long-lived node's log stays bounded.
const maxLogSize = 16 << 20

// process is a started containerd.
type process struct {
	pid  int
	done chan struct{}
	// err is cmd.Wait's result, set before done is closed.
	err error
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// start launches containerd with its output appended to the log file.
func (d *Daemon) start() (*process, error) {
	if err := d.rotateLog(); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(d.p.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("containerd: open log: %w", err)
	}
	defer logf.Close() // the child holds its own descriptor

	// Sockets of a containerd that died without cleaning up would make
	// the new one's listen fail or, worse, be dialled before it is up.
	for _, s := range []string{d.p.sock, d.p.ttrpc} {
		if err := os.Remove(s); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("containerd: remove stale socket: %w", err)
		}
	}

	cmd := exec.Command(d.binary, "--config", d.p.config)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group: a Ctrl-C meant for the agent must not
		// reach containerd before the agent has decided to stop it.
		Setpgid: true,
		// containerd must not outlive the agent, or the next agent would
		// find the database locked. The kernel sends the signal when the
		// thread that forked the child dies, not the process.
		Pdeathsig: syscall.SIGTERM,
	}
	p := &process{done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Locked and never unlocked: the thread that forked containerd
		// must live exactly as long as we wait on it, and when this
		// goroutine returns Go retires the thread instead of reusing it.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		p.pid = cmd.Process.Pid
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	if err := os.WriteFile(d.p.pid, []byte(strconv.Itoa(p.pid)+"\n"), 0o644); err != nil {
		d.stop(p)
		return nil, fmt.Errorf("containerd: write pid file: %w", err)
	}
	return p, nil
}

// stop asks containerd to exit, kills it after StopTimeout, and waits.
func (d *Daemon) stop(p *process) {
	if err := syscall.Kill(p.pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		d.logger.Warn("signal containerd", "pid", p.pid, "err", err)
	}
	timer := time.NewTimer(d.cfg.StopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return
	case <-timer.C:
	}
	d.logger.Warn("containerd ignored SIGTERM; killing it", "pid", p.pid, "timeout", d.cfg.StopTimeout)
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	<-p.done
}

// cleanup removes what a stopped containerd leaves behind outside its
// state: the pid file and the sockets (which it leaves when killed).
func (d *Daemon) cleanup() {
	for _, f := range []string{d.p.pid, d.p.sock, d.p.ttrpc} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.logger.Warn("clean up after containerd", "path", f, "err", err)
		}
	}
	if d.p.sockDir != "" {
		if err := os.Remove(d.p.sockDir); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.logger.Warn("clean up after containerd", "path", d.p.sockDir, "err", err)
		}
	}
}

// stopStale stops a containerd still running from an earlier run on this
// Dir: it holds the database lock, so a new one would hang. Pdeathsig
// makes this rare, but a containerd can hang in shutdown, and one started
// by hand with our config counts too. The pid file alone is not trusted:
// the process must still be a containerd running our config file.
func (d *Daemon) stopStale(ctx context.Context) error {
	data, err := os.ReadFile(d.p.pid)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("containerd: read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 || !runsConfig(pid, d.p.config) {
		return d.removePidFile()
	}
	log := d.logger.With("pid", pid)
	log.Warn("stopping containerd left running by an earlier run")
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if !waitGone(ctx, pid, d.cfg.StopTimeout) {
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("stale containerd ignored SIGTERM; killing it")
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if !waitGone(ctx, pid, d.cfg.StopTimeout) && ctx.Err() == nil {
			return fmt.Errorf("containerd: stale process %d survived SIGKILL", pid)
		}
	}
	return d.removePidFile()
}

func (d *Daemon) removePidFile() error {
	if err := os.Remove(d.p.pid); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("containerd: remove pid file: %w", err)
	}
	return nil
}

// runsConfig reports whether pid is alive and was started with
// "--config config".
func runsConfig(pid int, config string) bool {
	if !alive(pid) {
		return false
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	i := slices.Index(args, "--config")
	return i >= 0 && i+1 < len(args) && args[i+1] == config
}

// alive reports whether pid exists and is not a zombie: a killed child of
// some other process stays in /proc until reaped, but it is gone for us.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and
	// may itself contain ") ".
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	state := stat[i+2]
	return state != 'Z' && state != 'X'
}

// waitGone polls until pid is gone, timeout passes or ctx ends, and
// reports whether it is gone. Polling is the only way to wait for a
// process that is not our child.
func waitGone(ctx context.Context, pid int, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for alive(pid) {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return !alive(pid)
		case <-tick.C:
		}
	}
	return true
}

// waitRuntimeReady polls Status until the RuntimeReady condition holds.
// NetworkReady is not waited for: it turns true only once the agent has
// written a CNI configuration, which needs the node's pod CIDR.
func waitRuntimeReady(ctx context.Context, c *cri.Client) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := c.Runtime.Status(ctx, &runtimeapi.StatusRequest{})
		if status.Code(err) == codes.Unimplemented {
			return fmt.Errorf("CRI Status: %w", err)
		}
		if err == nil {
			for _, cond := range resp.GetStatus().GetConditions() {
				if cond.Type == runtimeapi.RuntimeReady && cond.Status {
					return nil
				}
			}
			err = errors.New("runtime not ready")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("CRI Status: %w (last: %w)", context.Cause(ctx), err)
		case <-tick.C:
		}
	}
}

// exitError describes containerd exiting on its own.
func (d *Daemon) exitError(p *process) error {
	reason := "exit status 0"
	if p.err != nil {
		reason = p.err.Error()
	}
	return fmt.Errorf("containerd exited unexpectedly (%s)%s", reason, d.logTail())
}

// logTail returns the last lines of containerd's log, prefixed for
// appending to an error, or "" if there are none.
func (d *Daemon) logTail() string {
	const maxTail = 4 << 10
	f, err := os.Open(d.p.log)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-maxTail, 0)
	buf, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil || len(buf) == 0 {
		return ""
	}
	if off > 0 {
		// Drop the partial first line.
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	return "; end of " + d.p.log + ":\n" + strings.TrimRight(string(buf), "\n")
}

// rotateLog moves an oversized log aside, keeping one previous file.
func (d *Daemon) rotateLog() error {
	fi, err := os.Stat(d.p.log)
	if err != nil || fi.Size() < maxLogSize {
		return nil
	}
	if err := os.Rename(d.p.log, d.p.log+".1"); err != nil {
		return fmt.Errorf("containerd: rotate log: %w", err)
	}
	return nil
}

// appArmorUnusable reports whether the kernel enforces AppArmor but
// apparmor_parser, which containerd runs to load its default profile, is
// missing. containerd checks the kernel the same way.
func appArmorUnusable() bool {
	enabled, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	if err != nil || !bytes.HasPrefix(enabled, []byte("Y")) {
		return false
	}
	_, err = exec.LookPath("apparmor_parser")
	return err != nil
}

// writeFileAtomic replaces path with data so that a reader never sees a
// partly written file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return os.Chmod(path, perm)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}
