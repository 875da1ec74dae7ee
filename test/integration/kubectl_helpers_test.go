package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testutil"
)

// kubectlTimeout bounds one kubectl invocation, so a command that hangs
// (say, waiting for a deletion no controller will finish) fails the test.
const kubectlTimeout = time.Minute

// cli runs the real `skiff kubectl` binary as a user would, with a HOME of
// its own so the machine's ~/.kube neither helps nor hurts.
type cli struct {
	t          *testing.T
	bin        string
	kubeconfig string // passed as --kubeconfig unless empty
	env        []string
	dir        string // working directory, for files given to -f
}

// result is what the user sees from one command.
type result struct {
	stdout, stderr string
	code           int
}

// newCLI returns a kubectl runner against cp's admin kubeconfig.
func newCLI(t *testing.T, cp *testutil.ControlPlane) *cli {
	t.Helper()
	c := &cli{t: t, bin: skiffBinary(t), kubeconfig: cp.Kubeconfig, dir: t.TempDir()}
	c.env = cleanEnv(t.TempDir())
	return c
}

// cleanEnv is the process environment without anything that points kubectl
// or skiff at a configuration, and with HOME set to home.
func cleanEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME", "KUBECONFIG", "SKIFF_DATA_DIR", "KUBECACHEDIR":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home)
}

// in returns a copy of c that reports to t, for use in a subtest; it
// shares the working directory and HOME (and so kubectl's discovery cache).
func (c *cli) in(t *testing.T) *cli {
	cc := *c
	cc.t = t
	return &cc
}

func (c *cli) command(ctx context.Context, args ...string) *exec.Cmd {
	full := []string{"kubectl"}
	if c.kubeconfig != "" {
		full = append(full, "--kubeconfig", c.kubeconfig)
	}
	cmd := exec.CommandContext(ctx, c.bin, append(full, args...)...)
	cmd.Env = c.env
	cmd.Dir = c.dir
	return cmd
}

// run runs kubectl with args and returns what it printed and its exit code.
func (c *cli) run(args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	cmd := c.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		c.t.Fatalf("kubectl %s: no exit within %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), kubectlTimeout, res.stdout, res.stderr)
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		c.t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// ok runs kubectl, fails the test unless it exits 0 with no error output,
// and returns stdout.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	res := c.run(args...)
	if res.code != 0 || strings.TrimSpace(res.stderr) != "" {
		c.t.Fatalf("kubectl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.code, res.stdout, res.stderr)
	}
	return res.stdout
}

// fails runs kubectl, fails the test unless it exits non-zero, and returns
// stderr.
func (c *cli) fails(args ...string) string {
	c.t.Helper()
	res := c.run(args...)
	if res.code == 0 {
		c.t.Fatalf("kubectl %s: exit 0, want failure\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.stdout, res.stderr)
	}
	return res.stderr
}

// file writes content to name in the runner's working directory.
func (c *cli) file(name, content string) string {
	c.t.Helper()
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return name
}

// stream is a long-running kubectl (get -w) whose output is collected as it
// arrives.
type stream struct {
	mu    sync.Mutex
	lines []string
}

// start runs kubectl in the background; it is killed when the test ends.
func (c *cli) start(args ...string) *stream {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	cmd := c.command(ctx, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	s := &stream{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.mu.Lock()
			s.lines = append(s.lines, sc.Text())
			s.mu.Unlock()
		}
	}()
	c.t.Cleanup(func() {
		cancel()
		<-done
		_ = cmd.Wait()
		if c.t.Failed() {
			c.t.Logf("kubectl %s output:\n%s\nstderr:\n%s", strings.Join(args, " "), strings.Join(s.snapshot(), "\n"), stderr.String())
		}
	})
	return s
}

func (s *stream) snapshot() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// waitLine waits until a line's whitespace-separated fields begin with
// want, and returns that line.
func (s *stream) waitLine(t *testing.T, want ...string) string {
	t.Helper()
	var found string
	testutil.Eventually(t, 20*time.Second, func() bool {
		for _, l := range s.snapshot() {
			if hasPrefixFields(l, want...) {
				found = l
				return true
			}
		}
		return false
	}, "no line starting with %q; got:\n%s", want, strings.Join(s.snapshot(), "\n"))
	return found
}

// hasPrefixFields reports whether line's columns start with want.
func hasPrefixFields(line string, want ...string) bool {
	f := strings.Fields(line)
	if len(f) < len(want) {
		return false
	}
	for i, w := range want {
		if f[i] != w {
			return false
		}
	}
	return true
}

// lineStarting returns the first line of out whose columns begin with want.
func lineStarting(out string, want ...string) (string, bool) {
	for _, l := range strings.Split(out, "\n") {
		if hasPrefixFields(l, want...) {
			return l, true
		}
	}
	return "", false
}

// wantContains fails unless out contains every one of want.
func wantContains(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// demoApp is a user's first manifest: a namespace, a config map, a
// deployment with a named port and a service targeting that port by name.
const demoApp = `apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: demo
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels:
    app: web
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: busybox
        command: ["httpd", "-f", "-p", "8080"]
        ports:
        - name: http
          containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: http
`
