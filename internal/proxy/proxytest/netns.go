package proxytest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// RequireRoot skips a test that needs to create network namespaces when
// not run as root: such a run cannot test the kernel paths at all.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and nftables")
	}
}

// NewNetns returns a fresh, unnamed network namespace with loopback up;
// it is gone once the handle is closed at cleanup and nothing uses it.
func NewNetns(t testing.TB) netns.NsHandle {
	t.Helper()
	var ns netns.NsHandle
	InNetns(t, 0, func() error {
		var err error
		if ns, err = netns.New(); err != nil {
			return err
		}
		return exec.Command("/bin/busybox", "ip", "link", "set", "lo", "up").Run()
	})
	t.Cleanup(func() { _ = ns.Close() })
	return ns
}

// InNetns runs f on a thread in ns (0: a thread returned to the current
// namespace afterwards, for f to switch itself). Sockets f opens and
// processes it starts belong to ns.
func InNetns(t testing.TB, ns netns.NsHandle, f func() error) {
	t.Helper()
	if err := Do(ns, f); err != nil {
		t.Fatal(err)
	}
}

// Do is InNetns for callers that handle the error themselves, such as
// goroutines, which must not call t.Fatal.
func Do(ns netns.NsHandle, f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if ns != 0 {
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			return err
		}
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		// The thread stays locked, so Go discards it with the goroutine.
		return fmt.Errorf("return to original netns: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// Run runs a command in ns and returns its standard output.
func Run(t testing.TB, ns netns.NsHandle, name string, args ...string) string {
	t.Helper()
	var out []byte
	InNetns(t, ns, func() error {
		var stderr bytes.Buffer
		cmd := exec.Command(name, args...)
		cmd.Stderr = &stderr
		var err error
		if out, err = cmd.Output(); err != nil {
			return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, stderr.String())
		}
		return nil
	})
	return string(out)
}

// NFTChains lists table (family ip) in ns with the nft tool and returns
// each chain's lines: the hook line if any, then its rules, as printed.
// It skips the test if nft is missing.
func NFTChains(t testing.TB, ns netns.NsHandle, table string) map[string][]string {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not installed (apt-get install nftables)")
	}
	out := Run(t, ns, "nft", "list", "table", "ip", table)
	chains := map[string][]string{}
	var cur string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "chain ") && strings.HasSuffix(line, "{"):
			cur = strings.TrimSuffix(strings.TrimPrefix(line, "chain "), " {")
			chains[cur] = []string{}
		case line == "}":
			cur = ""
		case cur != "" && line != "":
			chains[cur] = append(chains[cur], line)
		}
	}
	return chains
}

// Logger is quiet unless SKIFF_TEST_LOG is set, like the control plane's.
func Logger() *slog.Logger {
	var w io.Writer = io.Discard
	if os.Getenv("SKIFF_TEST_LOG") != "" {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
