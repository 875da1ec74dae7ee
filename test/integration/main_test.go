package integration

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// binDir holds binaries built for this test run; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skiff-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "temp dir:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var (
	skiffOnce sync.Once
	skiffPath string
	skiffErr  error
)

// skiffBinary builds ./cmd/skiff once per test run (on first use, so tests
// that do not need it do not pay for the build) and returns its path, for
// tests that drive the real `skiff kubectl`.
func skiffBinary(t testing.TB) string {
	t.Helper()
	skiffOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			skiffErr = err
			return
		}
		out := filepath.Join(binDir, "skiff")
		// hack/build.sh stamps kubectl's client version, as `make build` does.
		cmd := exec.Command("./hack/build.sh", out)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			skiffErr = fmt.Errorf("hack/build.sh: %w\n%s", err, b)
			return
		}
		skiffPath = out
	})
	if skiffErr != nil {
		t.Fatal(skiffErr)
	}
	return skiffPath
}

// moduleRoot walks up from the working directory (the package directory
// under `go test`) to the directory holding go.mod.
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
