// Package e2e runs the built skiff binary as a real one-node cluster — its
// own containerd, real containers from images the project builds, kernel
// networking — and checks what a user of kubectl and client-go sees.
//
// One cluster serves the whole package, so the tests run one after the
// other (none is parallel): a second cluster on the same host would share
// its pod bridge. The tests need root, containerd, runc, the CNI plugins
// and busybox-static, which the test command installs; without them the
// package is skipped as a whole.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// cl is the package's cluster, started by TestMain.
var cl *cluster

func TestMain(m *testing.M) {
	if reason := missingPrerequisite(); reason != "" {
		fmt.Fprintln(os.Stderr, "skipping end-to-end tests:", reason)
		os.Exit(0)
	}
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "skiff-e2e-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	bin, err := build(dir)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := startCluster(ctx, bin, filepath.Join(dir, "cluster"))
	if err != nil {
		return 0, err
	}
	cl = c
	code := m.Run()
	if err := c.stop(); err != nil {
		return 0, err
	}
	return code, nil
}

// missingPrerequisite says why real containers cannot run here, if so.
func missingPrerequisite() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	for _, bin := range []string{"containerd", "runc", "ip", "nsenter"} {
		if _, err := exec.LookPath(bin); err != nil {
			return bin + " not installed"
		}
	}
	for _, f := range []string{"/bin/busybox", "/usr/lib/cni/bridge"} {
		if _, err := os.Stat(f); err != nil {
			return f + " missing"
		}
	}
	return ""
}

// build compiles the skiff binary into dir, through hack/build.sh as
// `make build` does.
func build(dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "skiff")
	cmd := exec.Command("./hack/build.sh", out)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("hack/build.sh: %w\n%s", err, b)
	}
	return out, nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
