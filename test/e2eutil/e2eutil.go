// Package e2eutil holds what the test packages that run the built binary
// share: the check that real containers can run here, and building the
// skiff binary the tests run as users would.
package e2eutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// MissingPrerequisite says why real containers cannot run here, if so:
// the tests need root, containerd, runc, iproute2, nsenter, busybox-static
// and the CNI plugins, which the test command installs.
func MissingPrerequisite() string {
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

// RequireEnv names the environment variable that turns a missing
// prerequisite from a skip into a failure. CI sets it, so that a machine
// that lost a package cannot pass by running no end-to-end test.
const RequireEnv = "SKIFF_REQUIRE_E2E"

// SkipIfMissing ends the test binary when real containers cannot run
// here: with status 0 (skipped), or 1 when RequireEnv is set. what names
// the tests in the message.
func SkipIfMissing(what string) {
	reason := MissingPrerequisite()
	if reason == "" {
		return
	}
	if os.Getenv(RequireEnv) != "" {
		fmt.Fprintf(os.Stderr, "%s cannot run, and %s is set: %s\n", what, RequireEnv, reason)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "skipping %s: %s\n", what, reason)
	os.Exit(0)
}

// Build compiles the skiff binary into dir through hack/build.sh, as
// `make build` does, and returns its path.
func Build(dir string) (string, error) {
	root, err := ModuleRoot()
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

// ModuleRoot is the directory of go.mod above the working directory.
func ModuleRoot() (string, error) {
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

// Tail is the end of the file at path (a log), for a failure message.
func Tail(path string, n int) string {
	data, _ := os.ReadFile(path)
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}

// Poll calls cond every interval until it holds or returns an error (which
// Poll returns), or until ctx ends (Poll returns ctx.Err()).
func Poll(ctx context.Context, interval time.Duration, cond func(context.Context) (bool, error)) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		ok, err := cond(ctx)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
