package integration

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/skiffhq/skiff/test/e2eutil"
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

// skiffBinary builds ./cmd/skiff once per test run, as `make build` does
// (on first use, so tests that do not need it do not pay for the build),
// and returns its path, for tests that drive the real `skiff kubectl`.
func skiffBinary(t testing.TB) string {
	t.Helper()
	skiffOnce.Do(func() { skiffPath, skiffErr = e2eutil.Build(binDir) })
	if skiffErr != nil {
		t.Fatal(skiffErr)
	}
	return skiffPath
}
