// Package containerd runs containerd as a child process owned by the node
// agent, configured for the CRI with every path under one directory.
//
// The agent owns its runtime, rather than sharing a system containerd, so
// that a node needs nothing but the skiff binary, containerd and runc, and
// so that several agents (test or hollow nodes) can share a host without
// seeing each other's pods. Containers outlive the daemon: their shims are
// not containerd's to kill, so an agent restart starts a new containerd on
// the same directory, which adopts the running pods; the agent does the
// same when containerd dies under it.
package containerd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/skiffhq/skiff/internal/runtime/cri"
)

// Defaults for Config fields left empty.
const (
	DefaultBinary       = "containerd"
	DefaultSandboxImage = "registry.k8s.io/pause:3.6"
	DefaultStartTimeout = 2 * time.Minute
	DefaultStopTimeout  = 10 * time.Second
)

// defaultCNIBinDirs are where Debian's and upstream's CNI plugins live.
func defaultCNIBinDirs() []string { return []string{"/usr/lib/cni", "/opt/cni/bin"} }

// Config describes one containerd instance.
type Config struct {
	// Dir holds all of the instance's state: configuration, images,
	// snapshots, container state and its log. Required.
	Dir string
	// Binary is the containerd executable, a path or a name looked up in
	// PATH (default "containerd").
	Binary string
	// SandboxImage is the pod sandbox ("pause") image. It must be pullable
	// or already imported, or no pod starts (default registry.k8s.io/pause:3.6).
	SandboxImage string
	// CNIBinDirs are searched in order for CNI plugins and the first that
	// exists is used, since containerd 1.6 takes a single directory
	// (default /usr/lib/cni, /opt/cni/bin).
	CNIBinDirs []string
	// Mirrors maps a registry host to mirror endpoints tried before it,
	// e.g. "skiff.local": {"http://127.0.0.1:5123"}.
	Mirrors map[string][]string
	// InsecureRegistries are hosts pulled over plain http, and https
	// mirrors whose certificates are not verified.
	InsecureRegistries []string
	// StartTimeout bounds the wait for the CRI to answer after starting
	// (default 2 min: a first start on a slow disk creates its database).
	StartTimeout time.Duration
	// StopTimeout is how long containerd gets to exit after SIGTERM
	// before it is killed (default 10 s).
	StopTimeout time.Duration
	Logger      *slog.Logger
}

// Daemon is a containerd child process. Create it with New and start it
// with Run, once.
type Daemon struct {
	cfg    Config
	binary string
	p      paths
	// cniBinDir is the first of cfg.CNIBinDirs that exists.
	cniBinDir string
	// hosts is registry host → hosts.toml content.
	hosts   map[string]string
	logger  *slog.Logger
	ready   chan struct{}
	started atomic.Bool
}

// paths are the files and directories of one instance.
type paths struct {
	dir, config, root, state, runcRoot, opt, certs string
	cniConf, cniData, log, pid                     string
	// sockDir holds the sockets when dir is too long for them; it is
	// created at start and removed at stop. Empty when they live in dir.
	sockDir     string
	sock, ttrpc string
}

// maxSockPath leaves room in sun_path (108 bytes with the NUL) for the
// longest socket name, the ".ttrpc" one.
const maxSockPath = 100

func newPaths(dir string) paths {
	p := paths{
		dir:      dir,
		config:   filepath.Join(dir, "config.toml"),
		root:     filepath.Join(dir, "root"),
		state:    filepath.Join(dir, "state"),
		runcRoot: filepath.Join(dir, "runc"),
		opt:      filepath.Join(dir, "opt"),
		certs:    filepath.Join(dir, "certs.d"),
		cniConf:  filepath.Join(dir, "cni", "net.d"),
		cniData:  filepath.Join(dir, "cni", "networks"),
		log:      filepath.Join(dir, "containerd.log"),
		pid:      filepath.Join(dir, "containerd.pid"),
	}
	sockDir := dir
	if len(filepath.Join(dir, "containerd.sock.ttrpc")) > maxSockPath {
		// Derived from dir, so the same instance finds its sockets after
		// a restart and different instances never collide.
		sum := sha256.Sum256([]byte(dir))
		p.sockDir = "/run/skiff-" + hex.EncodeToString(sum[:8])
		sockDir = p.sockDir
	}
	p.sock = filepath.Join(sockDir, "containerd.sock")
	p.ttrpc = p.sock + ".ttrpc"
	return p
}

// New checks cfg and fills in defaults; it starts nothing.
func New(cfg Config) (*Daemon, error) {
	if cfg.Dir == "" {
		return nil, errors.New("containerd: Dir is required")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("containerd: Dir: %w", err)
	}
	cfg.Dir = dir
	if cfg.Binary == "" {
		cfg.Binary = DefaultBinary
	}
	// An absolute path makes the command line, by which a stale process
	// is recognised, independent of PATH.
	binary, err := exec.LookPath(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("containerd: find binary: %w", err)
	}
	if binary, err = filepath.Abs(binary); err != nil {
		return nil, fmt.Errorf("containerd: find binary: %w", err)
	}
	if cfg.SandboxImage == "" {
		cfg.SandboxImage = DefaultSandboxImage
	}
	if len(cfg.CNIBinDirs) == 0 {
		cfg.CNIBinDirs = defaultCNIBinDirs()
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	hosts, err := renderHosts(cfg.Mirrors, cfg.InsecureRegistries)
	if err != nil {
		return nil, fmt.Errorf("containerd: %w", err)
	}
	cniBinDir := ""
	for _, d := range cfg.CNIBinDirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			cniBinDir = d
			break
		}
	}
	if cniBinDir == "" {
		// Not fatal: host-network pods need no plugins, and the plugins
		// may be installed before the first pod needs them.
		cniBinDir = cfg.CNIBinDirs[0]
		cfg.Logger.Warn("no CNI plugin directory found", "dirs", cfg.CNIBinDirs)
	}
	return &Daemon{
		cfg:       cfg,
		binary:    binary,
		p:         newPaths(dir),
		cniBinDir: cniBinDir,
		hosts:     hosts,
		logger:    cfg.Logger,
		ready:     make(chan struct{}),
	}, nil
}

// Ready is closed once containerd's CRI answers and reports the runtime
// ready.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// Endpoint is the CRI endpoint, "unix://" and the socket path.
func (d *Daemon) Endpoint() string { return "unix://" + d.p.sock }

// CNIConfDir is where containerd looks for the pod network configuration.
func (d *Daemon) CNIConfDir() string { return d.p.cniConf }

// CNIDataDir is a directory for host-local IPAM's allocations, private to
// this instance so two agents on one host never hand out the same address.
func (d *Daemon) CNIDataDir() string { return d.p.cniData }

// Run writes the configuration, stops a containerd left behind by an
// earlier run on the same Dir, starts containerd and closes Ready once its
// CRI is up. When ctx ends it stops containerd (SIGTERM, then SIGKILL after
// StopTimeout) and returns nil; running containers are left alone. It
// returns an error, with the end of containerd's log, if containerd fails
// to start or exits on its own.
func (d *Daemon) Run(ctx context.Context) error {
	if !d.started.CompareAndSwap(false, true) {
		return errors.New("containerd: Run called twice")
	}
	if err := d.prepare(); err != nil {
		return err
	}
	if err := d.stopStale(ctx); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	proc, err := d.start()
	if err != nil {
		return err
	}
	defer d.cleanup()
	log := d.logger.With("pid", proc.pid)
	log.Info("started containerd", "endpoint", d.Endpoint(), "dir", d.p.dir)

	version, err := d.waitReady(ctx, proc)
	if err != nil {
		crashed := proc.exited()
		d.stop(proc)
		if ctx.Err() != nil && !crashed {
			return nil // cancelled while starting: a clean stop
		}
		return err
	}
	log.Info("containerd ready", "version", version)
	close(d.ready)

	select {
	case <-ctx.Done():
		d.stop(proc)
		log.Info("stopped containerd")
		return nil
	case <-proc.done:
		return d.exitError(proc)
	}
}

// prepare creates the directories and writes the configuration files.
func (d *Daemon) prepare() error {
	for _, dir := range []string{d.p.dir, d.p.root, d.p.state} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("containerd: create %s: %w", dir, err)
		}
	}
	for _, dir := range []string{d.p.runcRoot, d.p.opt, d.p.certs, d.p.cniConf, d.p.cniData} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("containerd: create %s: %w", dir, err)
		}
	}
	if d.p.sockDir != "" {
		if err := os.MkdirAll(d.p.sockDir, 0o700); err != nil {
			return fmt.Errorf("containerd: create socket dir: %w", err)
		}
	}
	conf := renderConfig(configParams{
		Root:            d.p.root,
		State:           d.p.state,
		Address:         d.p.sock,
		TTRPC:           d.p.ttrpc,
		RuncRoot:        d.p.runcRoot,
		OptDir:          d.p.opt,
		SandboxImage:    d.cfg.SandboxImage,
		CNIBinDir:       d.cniBinDir,
		CNIConfDir:      d.p.cniConf,
		CertsDir:        d.p.certs,
		DisableAppArmor: appArmorUnusable(),
	})
	if err := writeFileAtomic(d.p.config, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("containerd: write config: %w", err)
	}
	if err := d.writeHosts(); err != nil {
		return fmt.Errorf("containerd: write registry hosts: %w", err)
	}
	return nil
}

// writeHosts makes certs.d hold exactly one <host>/hosts.toml per
// configured registry host; the directory is ours, so anything else in
// it is a leftover from an earlier configuration.
func (d *Daemon) writeHosts() error {
	entries, err := os.ReadDir(d.p.certs)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, ok := d.hosts[e.Name()]; !ok {
			if err := os.RemoveAll(filepath.Join(d.p.certs, e.Name())); err != nil {
				return err
			}
		}
	}
	for host, content := range d.hosts {
		dir := filepath.Join(d.p.certs, host)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(dir, "hosts.toml"), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// waitReady waits until the CRI answers Version and Status reports the
// runtime ready, and returns the runtime version. It gives up when ctx
// ends, the process exits or StartTimeout passes.
func (d *Daemon) waitReady(ctx context.Context, proc *process) (string, error) {
	rctx, cancel := context.WithTimeout(ctx, d.cfg.StartTimeout)
	defer cancel()
	go func() {
		select {
		case <-proc.done:
			cancel()
		case <-rctx.Done():
		}
	}()
	fail := func(err error) (string, error) {
		if proc.exited() {
			return "", d.exitError(proc)
		}
		return "", fmt.Errorf("containerd not ready: %w%s", err, d.logTail())
	}
	c, err := cri.Dial(rctx, d.Endpoint())
	if err != nil {
		return fail(err)
	}
	defer func() { _ = c.Close() }()
	if err := waitRuntimeReady(rctx, c); err != nil {
		return fail(err)
	}
	return c.RuntimeVersion(), nil
}
