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
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiffhq/skiff/test/e2eutil"
)

// cl is the package's cluster, started by TestMain.
var cl *cluster

func TestMain(m *testing.M) {
	e2eutil.SkipIfMissing("end-to-end tests")
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
	bin, err := e2eutil.Build(dir)
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
