// Package hae2e proves high availability on hosts that really fail: three
// servers and two nodes, each a network namespace with its own address
// on a bridge, each running the built skiff binary. The tests kill their
// processes with SIGKILL and pull their links, and check what a client of
// the API sees.
//
// One cluster serves the package, and the tests run in order, each
// leaving it whole for the next, except the node that TestDeadNode kills.
// They need what test/e2e needs (root, containerd, runc, the CNI plugins,
// busybox-static); without it the package is skipped.
package hae2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/skiffhq/skiff/internal/image"
	"github.com/skiffhq/skiff/internal/image/registry"
	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/test/e2eutil"
)

// The workload the cluster keeps running throughout.
const (
	appNamespace = "ha"
	appName      = "web"
	appReplicas  = 4
	// appNodePort is the app Service's port on every node.
	appNodePort = 30080
)

// cl is the package's cluster, started by TestMain.
var cl *cluster

func TestMain(m *testing.M) {
	e2eutil.SkipIfMissing("HA end-to-end tests")
	code, err := runTests(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hae2e:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func runTests(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "skiff-hae2e-")
	if err != nil {
		return 0, err
	}
	bin, err := e2eutil.Build(dir)
	if err != nil {
		os.RemoveAll(dir)
		return 0, err
	}
	c := &cluster{bin: bin, dir: dir}
	defer func() {
		// Removing a directory something is still mounted in would
		// reach into the mounts: what failed is left to look at.
		if err := c.teardown(); err != nil {
			fmt.Fprintf(os.Stderr, "hae2e teardown: %v; %s left in place\n", err, dir)
			return
		}
		os.RemoveAll(dir)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := c.start(ctx); err != nil {
		return 0, err
	}
	cl = c
	code := m.Run()
	if code != 0 {
		fmt.Fprint(os.Stderr, c.logTails())
	}
	return code, nil
}

// proc is a skiff process on a host.
type proc struct {
	host *host
	// args are skiff's arguments; dir is its data dir.
	args []string
	dir  string
	cmd  *exec.Cmd
	// done is closed when the process has exited.
	done chan struct{}
	// dead is set once the host is gone for good.
	dead bool
}

func (p *proc) logPath() string { return filepath.Join(p.dir, "skiff.log") }

// start runs the process in its host's network namespace. nsenter, not
// `ip netns exec`: the latter also makes a mount namespace with a fresh
// /sys, hiding the cgroup mounts runc needs. nsenter execs skiff, so the
// process is skiff itself, and it dies with the test binary.
func (p *proc) start(bin string) error {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(p.logPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== start %s\n", time.Now().Format(time.RFC3339Nano))
	p.cmd = exec.Command("nsenter", append([]string{"--net=/run/netns/" + p.host.netns(), bin}, p.args...)...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start skiff on %s: %w", p.host.name, err)
	}
	done := make(chan struct{})
	p.done = done
	go func() { _ = p.cmd.Wait(); logf.Close(); close(done) }()
	return nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// running says whether the process has not exited.
func (p *proc) running() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// waitExit waits for the process to exit, at most timeout.
func (p *proc) waitExit(timeout time.Duration) error {
	if p.done == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("skiff on %s (pid %d) still running after %v", p.host.name, p.pid(), timeout)
	}
}

// kill SIGKILLs the process and waits for it.
func (p *proc) kill() error {
	if !p.running() {
		return nil
	}
	_ = p.cmd.Process.Kill()
	return p.waitExit(10 * time.Second)
}

// stop asks the process to stop and kills it if it has not in time.
func (p *proc) stop() error {
	if !p.running() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if p.waitExit(30*time.Second) != nil {
		return p.kill()
	}
	return nil
}

// cluster is three servers and two nodes.
type cluster struct {
	bin, dir string
	servers  []*proc
	agents   []*proc
	// image is busybox on the test's registry, served on the bridge.
	image        string
	stopRegistry context.CancelFunc
	// deadPodCgroups are the cgroups of killed nodes' containers.
	deadPodCgroups []string
	// clients are made once per server and timeout: the tests poll.
	clients sync.Map // clientKey → kubernetes.Interface
}

type clientKey struct {
	server  int
	timeout time.Duration
}

// serverURL is the API address of server i.
func (c *cluster) serverURL(i int) string {
	return "https://" + c.servers[i].host.ip + ":6443"
}

func (c *cluster) start(ctx context.Context) error {
	if err := makeBridge(); err != nil {
		return err
	}
	if err := c.serveImages(); err != nil {
		return err
	}
	for i := range 3 {
		h := &host{name: "s" + strconv.Itoa(i+1), ip: "10.98.0." + strconv.Itoa(11+i)}
		if err := h.create(); err != nil {
			return err
		}
		p := &proc{host: h, dir: filepath.Join(c.dir, h.name)}
		p.args = []string{"server", "--data-dir", p.dir, "--advertise-address", h.ip,
			"--disable-agent", "--etcd-member-name", h.name}
		if i == 0 {
			p.args = append(p.args, "--cluster-init")
		}
		c.servers = append(c.servers, p)
	}
	// The first server founds the cluster; the others join it one after
	// the other, as an operator would.
	for i, s := range c.servers {
		if i > 0 {
			token, err := os.ReadFile(filepath.Join(c.servers[0].dir, "node-token"))
			if err != nil {
				return err
			}
			s.args = append(s.args, "--server", c.serverURL(0), "--token", strings.TrimSpace(string(token)))
		}
		if err := s.start(c.bin); err != nil {
			return err
		}
		if err := c.waitServer(ctx, i); err != nil {
			return err
		}
	}
	token, err := os.ReadFile(filepath.Join(c.servers[0].dir, "node-token"))
	if err != nil {
		return err
	}
	registryHost, _, _ := strings.Cut(c.image, "/")
	for i := range 2 {
		h := &host{name: "n" + strconv.Itoa(i+1), ip: "10.98.0." + strconv.Itoa(21+i)}
		if err := h.create(); err != nil {
			return err
		}
		p := &proc{host: h, dir: filepath.Join(c.dir, h.name)}
		p.args = []string{"agent", "--server", c.serverURL(0), "--token", strings.TrimSpace(string(token)),
			"--data-dir", p.dir, "--node-name", nodeName(h), "--node-ip", h.ip, "--insecure-registry", registryHost}
		c.agents = append(c.agents, p)
		if err := p.start(c.bin); err != nil {
			return err
		}
	}
	kube := c.client(0)
	for _, a := range c.agents {
		if err := c.waitFor(ctx, "node "+nodeName(a.host)+" Ready", func(ctx context.Context) (bool, error) {
			n, err := kube.CoreV1().Nodes().Get(ctx, nodeName(a.host), metav1.GetOptions{})
			return err == nil && nodeReady(n), nil
		}); err != nil {
			return err
		}
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNamespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := kube.AppsV1().Deployments(appNamespace).Create(ctx, c.deployment(), metav1.CreateOptions{}); err != nil {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: appName},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeNodePort,
			Selector: map[string]string{"app": appName},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intOrPort(8080), NodePort: appNodePort}},
		},
	}
	if _, err := kube.CoreV1().Services(appNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "the web Deployment ready", func(ctx context.Context) (bool, error) {
		return deploymentReady(ctx, kube), nil
	}); err != nil {
		return fmt.Errorf("%w\n%s", err, c.describeApp())
	}
	return nil
}

// describeApp is the app's pods and events, for a failure message.
func (c *cluster) describeApp() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kube := c.client(0)
	var b strings.Builder
	if pods, err := kube.CoreV1().Pods(appNamespace).List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			fmt.Fprintf(&b, "pod %s on %q: %s %+v\n", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.ContainerStatuses)
		}
	}
	if evs, err := kube.CoreV1().Events(appNamespace).List(ctx, metav1.ListOptions{}); err == nil {
		for _, e := range evs.Items {
			fmt.Fprintf(&b, "event %s %s: %s\n", e.InvolvedObject.Name, e.Reason, e.Message)
		}
	}
	return b.String()
}

func nodeName(h *host) string { return "ha-" + h.name }

// deployment is the workload: httpd replicas spread over the nodes.
func (c *cluster) deployment() *appsv1.Deployment {
	labels := map[string]string{"app": appName}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: appName},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](appReplicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers: []corev1.Container{{
						Name: "httpd", Image: c.image,
						Command: []string{"sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intOrPort(8080)}},
							PeriodSeconds: 1,
						},
					}},
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
						MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.ScheduleAnyway,
						LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
					}},
				},
			},
		},
	}
}

// serveImages starts a registry on the bridge holding the busybox image,
// so pods pull it through the runtime's real pull path.
func (c *cluster) serveImages() error {
	img, err := image.Busybox("")
	if err != nil {
		return err
	}
	reg := registry.New(nil)
	if err := reg.Push(context.Background(), "e2e/busybox:1", img); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", bridgeIP+":0")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.stopRegistry = cancel
	go func() { _ = reg.Serve(ctx, ln) }()
	c.image = ln.Addr().String() + "/e2e/busybox:1"
	return nil
}

// kubeconfig is an admin kubeconfig that reaches server i at its address
// on the bridge (the servers write theirs for the loopback).
func (c *cluster) kubeconfig(i int) string {
	path := filepath.Join(c.dir, "kubeconfig-"+c.servers[i].host.name)
	if _, err := os.Stat(path); err == nil {
		return path
	}
	cfg, err := clientcmd.LoadFromFile(filepath.Join(c.servers[0].dir, "admin.kubeconfig"))
	if err != nil {
		panic(err)
	}
	for _, cluster := range cfg.Clusters {
		cluster.Server = c.serverURL(i)
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		panic(err)
	}
	return path
}

// client talks to server i only, with a short timeout, so a dead server
// fails a request quickly.
func (c *cluster) client(i int) kubernetes.Interface { return c.clientWithTimeout(i, 5*time.Second) }

// clientWithTimeout is client with another request timeout.
func (c *cluster) clientWithTimeout(i int, timeout time.Duration) kubernetes.Interface {
	key := clientKey{i, timeout}
	if kube, ok := c.clients.Load(key); ok {
		return kube.(kubernetes.Interface)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig(i))
	if err != nil {
		panic(err)
	}
	rc.Timeout = timeout
	rc.QPS, rc.Burst = -1, 0
	kube, _ := c.clients.LoadOrStore(key, kubernetes.NewForConfigOrDie(rc))
	return kube.(kubernetes.Interface)
}

// members lists etcd's members through server i.
func (c *cluster) members(ctx context.Context, i int) (server.MembersResponse, error) {
	cc, err := server.NewClusterClientForKubeconfig(c.kubeconfig(i))
	if err != nil {
		return server.MembersResponse{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return cc.Members(ctx)
}

// waitServer waits until server i is ready and a voting etcd member.
func (c *cluster) waitServer(ctx context.Context, i int) error {
	name := c.servers[i].host.name
	return c.waitFor(ctx, "server "+name+" a voting member", func(ctx context.Context) (bool, error) {
		if !c.servers[i].running() {
			return false, fmt.Errorf("server %s exited:\n%s", name, e2eutil.Tail(c.servers[i].logPath(), 4000))
		}
		if _, err := os.Stat(filepath.Join(c.servers[0].dir, "admin.kubeconfig")); err != nil {
			return false, nil
		}
		resp, err := c.members(ctx, i)
		if err != nil {
			return false, nil
		}
		for _, m := range resp.Members {
			if m.Name == name && !m.Learner {
				// Ready: bootstrapped, not just listening.
				_, err := c.client(i).Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
				return err == nil, nil
			}
		}
		return false, nil
	})
}

// waitFor polls cond every 100 ms until it holds, fails, or ctx ends.
func (c *cluster) waitFor(ctx context.Context, what string, cond func(context.Context) (bool, error)) error {
	err := e2eutil.Poll(ctx, 100*time.Millisecond, cond)
	if err != nil && err == ctx.Err() {
		return fmt.Errorf("wait for %s: %w\n%s", what, err, c.logTails())
	}
	if err != nil {
		return fmt.Errorf("wait for %s: %w", what, err)
	}
	return nil
}

func (c *cluster) logTails() string {
	var b strings.Builder
	for _, p := range append(append([]*proc{}, c.servers...), c.agents...) {
		fmt.Fprintf(&b, "--- %s log (tail) ---\n%s\n", p.host.name, e2eutil.Tail(p.logPath(), 2500))
	}
	return b.String()
}

// teardown removes the workload while the nodes still run, so they tear
// their containers down, then stops every process and removes the hosts
// and what killed ones left behind.
func (c *cluster) teardown() error {
	if len(c.servers) > 0 && c.servers[0].running() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		kube := c.client(0)
		_ = kube.CoreV1().Namespaces().Delete(ctx, appNamespace, metav1.DeleteOptions{})
		_ = c.waitFor(ctx, "the workload's pods removed", func(ctx context.Context) (bool, error) {
			pods, err := kube.CoreV1().Pods(appNamespace).List(ctx, metav1.ListOptions{})
			return err == nil && len(pods.Items) == 0, nil
		})
		cancel()
	}
	var errs []error
	for _, p := range append(append([]*proc{}, c.agents...), c.servers...) {
		if err := p.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range append(append([]*proc{}, c.servers...), c.agents...) {
		cgs, err := p.host.killAll()
		if err != nil {
			errs = append(errs, err)
		}
		c.deadPodCgroups = append(c.deadPodCgroups, cgs...)
		if err := unmountUnder(p.dir); err != nil {
			errs = append(errs, err)
		}
		p.host.remove()
	}
	removeCgroups(c.deadPodCgroups)
	removeBridge()
	if c.stopRegistry != nil {
		c.stopRegistry()
	}
	return errors.Join(errs...)
}
