package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiffhq/skiff/internal/image"
	"github.com/skiffhq/skiff/internal/image/registry"
	"github.com/skiffhq/skiff/internal/network"
	"github.com/skiffhq/skiff/test/e2eutil"
)

// nodeName is the test cluster's node.
const nodeName = "e2e-node"

// cluster is a `skiff server` process with its embedded agent, on free
// ports and a data dir of its own, plus the image registry its pods pull
// from.
type cluster struct {
	bin, dir   string
	kubeconfig string
	client     kubernetes.Interface
	// image is Debian's busybox-static as an image on the test registry.
	image string
	ports map[string]int
	cmd   *exec.Cmd
	exit  chan error
	// stopRegistry ends the registry's server.
	stopRegistry context.CancelFunc
}

func startCluster(ctx context.Context, bin, dir string) (*cluster, error) {
	c := &cluster{bin: bin, dir: dir, kubeconfig: filepath.Join(dir, "admin.kubeconfig"), ports: map[string]int{}}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for _, p := range []string{"https", "etcd-client", "etcd-peer", "kubelet", "dns"} {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		c.ports[p] = port
	}
	if err := c.serveImages(); err != nil {
		return nil, err
	}
	if err := makeSecondHost(); err != nil {
		c.stopRegistry()
		return nil, err
	}
	if err := c.start(ctx); err != nil {
		c.stopRegistry()
		removeSecondHost()
		return nil, err
	}
	return c, nil
}

// serveImages starts a registry on the loopback holding the busybox
// image, so pods pull it through the runtime's real pull path.
func (c *cluster) serveImages() error {
	img, err := image.Busybox("")
	if err != nil {
		return err
	}
	reg := registry.New(nil)
	if err := reg.Push(context.Background(), "e2e/busybox:1", img); err != nil {
		return err
	}
	// On every address, so the second node's namespace reaches it too;
	// pods name it by the loopback.
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.stopRegistry = cancel
	go func() { _ = reg.Serve(ctx, ln) }()
	c.image = "127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) + "/e2e/busybox:1"
	return nil
}

// start runs the server and waits until its node is Ready.
func (c *cluster) start(ctx context.Context) error {
	logf, err := os.OpenFile(filepath.Join(c.dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	registryHost, _, _ := strings.Cut(c.image, "/")
	c.cmd = exec.Command(c.bin, "server",
		"--data-dir", c.dir,
		"--https-port", strconv.Itoa(c.ports["https"]),
		"--etcd-client-port", strconv.Itoa(c.ports["etcd-client"]),
		"--etcd-peer-port", strconv.Itoa(c.ports["etcd-peer"]),
		"--kubelet-port", strconv.Itoa(c.ports["kubelet"]),
		"--cluster-dns-port", strconv.Itoa(c.ports["dns"]),
		"--node-name", nodeName,
		"--insecure-registry", registryHost,
		"--node-ip", secondHostGateway,
	)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start server: %w", err)
	}
	c.exit = make(chan error, 1)
	go func() { c.exit <- c.cmd.Wait(); logf.Close() }()

	if err := c.waitFor(ctx, "node Ready", func(ctx context.Context) (bool, error) {
		if c.client == nil {
			if _, err := os.Stat(c.kubeconfig); err != nil {
				return false, nil
			}
			rc, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
			if err != nil {
				return false, err
			}
			if c.client, err = kubernetes.NewForConfig(rc); err != nil {
				return false, err
			}
		}
		n, err := c.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue && n.Spec.PodCIDR != "" {
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		_ = c.kill()
		return err
	}
	return nil
}

// waitFor polls cond until it is true, the server exits, or ctx ends.
func (c *cluster) waitFor(ctx context.Context, what string, cond func(context.Context) (bool, error)) error {
	var exited error
	err := e2eutil.Poll(ctx, 100*time.Millisecond, func(ctx context.Context) (bool, error) {
		select {
		case exited = <-c.exit:
			c.exit <- exited
			return false, errServerExited
		default:
		}
		return cond(ctx)
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errServerExited):
		return fmt.Errorf("wait for %s: server exited: %v\n%s", what, exited, c.logTail())
	case err == ctx.Err():
		return fmt.Errorf("wait for %s: %w\n%s", what, err, c.logTail())
	}
	return fmt.Errorf("wait for %s: %w", what, err)
}

// errServerExited ends a waitFor whose server has exited.
var errServerExited = errors.New("server exited")

// restart stops the server (its agent leaves the pods running) and
// starts it again on the same data dir.
func (c *cluster) restart(ctx context.Context) error {
	if err := c.terminate(); err != nil {
		return err
	}
	return c.start(ctx)
}

// terminate stops the server with SIGTERM and waits for it.
func (c *cluster) terminate() error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.exit:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			return err
		}
		return nil
	case <-time.After(30 * time.Second):
		return c.kill()
	}
}

func (c *cluster) kill() error {
	_ = c.cmd.Process.Kill()
	<-c.exit
	return errors.New("server did not stop in time")
}

// stop deletes every test namespace and waits until the node has removed
// their pods, so nothing runs once the server is gone; then stops it.
func (c *cluster) stop() error {
	defer c.stopRegistry()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nss, err := c.client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: "skiff-e2e=true"})
	if err == nil {
		for _, ns := range nss.Items {
			_ = c.client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
		}
	}
	waitErr := c.waitFor(ctx, "test pods removed", func(ctx context.Context) (bool, error) {
		pods, err := c.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		return err == nil && len(pods.Items) == 0, nil
	})
	err = errors.Join(waitErr, c.terminate(), cleanupHost())
	removeSecondHost()
	return err
}

// cleanupHost removes what the node leaves on the host by design: the
// pod bridge, and the masquerade of pod traffic (which pods outliving
// their agent still need).
func cleanupHost() error {
	if out, err := exec.Command("ip", "link", "del", "skiff0").CombinedOutput(); err != nil && !bytes.Contains(out, []byte("Cannot find device")) {
		return fmt.Errorf("remove pod bridge: %v: %s", err, out)
	}
	if out, err := exec.Command("nft", "delete", "table", "ip", network.MasqueradeTable).CombinedOutput(); err != nil && !bytes.Contains(out, []byte("No such file")) {
		return fmt.Errorf("remove pod masquerade: %v: %s", err, out)
	}
	return nil
}

func (c *cluster) logTail() string {
	data, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
	if len(data) > 6000 {
		data = data[len(data)-6000:]
	}
	return "--- server log (tail) ---\n" + string(data)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// namespace creates a namespace for one test, deleted when it ends.
func namespace(t *testing.T) string {
	t.Helper()
	name := "e2e-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.TrimRight(name, "-") + "-" + rand.String(4)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"skiff-e2e": "true"}}}
	if _, err := cl.client.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = cl.client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// kubectl runs `skiff kubectl` against the cluster and returns its output.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := kubectlErr(t, nil, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func kubectlErr(t *testing.T, stdin []byte, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cl.bin, append([]string{"kubectl", "--kubeconfig", cl.kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// eventually polls cond every 100 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// httpGet fetches url with a short timeout.
func httpGet(url string) (string, error) {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	return b.String(), err
}
