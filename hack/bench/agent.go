package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/skiffhq/skiff/internal/network"
)

// agentConfig is the agent suite's part of the command line.
type agentConfig struct {
	samples int           // pods started one at a time
	burst   int           // pods created at once
	hollow  int           // hollow nodes; 0 skips them
	settle  time.Duration // idle time before a memory reading of the real node
	// hollowSettle is how long the hollow nodes run Ready before their
	// memory is read and their readiness counted again.
	hollowSettle time.Duration
	timeout      time.Duration // how long one step may wait for nodes or pods
}

func (c *agentConfig) flags() {
	flag.IntVar(&c.samples, "agent-samples", 10, "agent suite: pods started one at a time")
	flag.IntVar(&c.burst, "agent-burst", 30, "agent suite: pods created at once")
	flag.IntVar(&c.hollow, "hollow-nodes", 100, "agent suite: hollow nodes run by one `skiff agent --simulate` (0 skips them)")
	flag.DurationVar(&c.settle, "agent-settle", 5*time.Second, "agent suite: how long the node settles before each memory reading")
	flag.DurationVar(&c.hollowSettle, "hollow-settle", 30*time.Second, "agent suite: how long the hollow nodes run Ready before the memory reading")
	flag.DurationVar(&c.timeout, "agent-timeout", 3*time.Minute, "agent suite: how long one step may wait for nodes or pods")
}

// Names of the real node's pieces. The bridge is the agent's default:
// `skiff agent` has no flag for it, so two nodes on one machine collide.
const (
	benchNodeName = "bench-node"
	benchNS       = "bench-agent"
	podBridge     = "skiff0"
)

// runAgentSuite measures a real node, then hollow nodes, and prints the
// report. The real node needs root and containerd; without them only the
// hollow nodes are measured.
func runAgentSuite(ctx context.Context, cfg config, bin string) error {
	rep := &agentReport{samples: cfg.agent.samples, burst: cfg.agent.burst, settle: cfg.agent.settle, hollowSettle: cfg.agent.hollowSettle}
	if rep.skipped = realNodeUnsupported(); rep.skipped != "" {
		slog.WarnContext(ctx, "skipping the real node", "reason", rep.skipped)
	} else if err := runRealNode(ctx, cfg, bin, rep); err != nil {
		return fmt.Errorf("real node: %w", err)
	}
	if cfg.agent.hollow > 0 {
		if err := runHollowNodes(ctx, cfg, bin, rep); err != nil {
			return fmt.Errorf("hollow nodes: %w", err)
		}
	}
	rep.print(os.Stdout)
	return nil
}

// realNodeUnsupported says why this machine cannot run a real node, or "".
func realNodeUnsupported() string {
	if os.Geteuid() != 0 {
		return "needs root"
	}
	if _, err := exec.LookPath("containerd"); err != nil {
		return "no containerd in PATH"
	}
	return ""
}

// realNode is a control plane without a node agent, and a separate
// `skiff agent` joined to it: the node the pods run on.
type realNode struct {
	dir       string
	keep      bool
	srv       *serverProc
	agent     *proc
	cs        kubernetes.Interface
	watcher   *podWatcher
	stopWatch context.CancelFunc
	timeout   time.Duration
	// bridgeShared is set by close when another node's pods were on the
	// pod bridge: that node's work ran beside ours.
	bridgeShared bool
}

// runRealNode starts the node, measures pod start-up and memory, and
// tears everything down again.
func runRealNode(ctx context.Context, cfg config, bin string, rep *agentReport) (err error) {
	if _, err := net.InterfaceByName(podBridge); err == nil {
		return fmt.Errorf("bridge %s exists: another skiff node runs on this machine (stop it first), or one was left behind (ip link del %s)", podBridge, podBridge)
	}
	n := &realNode{keep: cfg.keepData, timeout: cfg.agent.timeout}
	defer func() {
		err = errors.Join(err, n.close(ctx))
		rep.bridgeShared = n.bridgeShared
	}()
	if err := n.start(ctx, bin, rep); err != nil {
		return err
	}
	ac := cfg.agent

	slog.InfoContext(ctx, "node ready; settling before the idle memory reading", "after", rep.nodeReady, "settle", ac.settle)
	if err := sleep(ctx, ac.settle); err != nil {
		return err
	}
	if rep.idle, err = n.memory(); err != nil {
		return err
	}

	rep.load[0] = loadAverage()
	slog.InfoContext(ctx, "first pod on the node")
	lat, err := n.round(ctx, []string{"first"})
	if err != nil {
		return err
	}
	rep.first = lat[0]
	slog.InfoContext(ctx, "pods one at a time", "samples", ac.samples)
	for i := range ac.samples {
		lat, err := n.round(ctx, []string{fmt.Sprintf("one-%02d", i)})
		if err != nil {
			return err
		}
		rep.single = append(rep.single, lat...)
	}

	slog.InfoContext(ctx, "pods at once", "pods", ac.burst)
	names := podNames("burst", ac.burst)
	if rep.burstLat, err = startPods(ctx, n.cs, n.watcher, benchNS, names, n.timeout); err != nil {
		return err
	}
	if err := sleep(ctx, ac.settle); err != nil {
		return err
	}
	rep.load[1] = loadAverage()
	if rep.busy, err = n.memory(); err != nil {
		return err
	}
	return n.deleteAndWait(ctx, names)
}

// start brings up the server and the agent and waits for the node to be
// Ready with a pod CIDR.
func (n *realNode) start(ctx context.Context, bin string, rep *agentReport) (err error) {
	if n.dir, err = os.MkdirTemp("", "skiff-bench-agent-"); err != nil {
		return err
	}
	if n.srv, err = startServer(ctx, bin, n.dir); err != nil {
		return err
	}
	if _, err := n.srv.waitReady(ctx, 60*time.Second); err != nil {
		return err
	}
	base, err := clientcmd.BuildConfigFromFlags("", n.srv.kubeconfig())
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	if n.cs, err = newClientset(base); err != nil {
		return err
	}
	token, err := os.ReadFile(filepath.Join(n.srv.dataDir, "node-token"))
	if err != nil {
		return fmt.Errorf("node token: %w", err)
	}

	// The agent imports every tarball in its images/ at start.
	agentDir := filepath.Join(n.dir, "agent")
	images := filepath.Join(agentDir, "images")
	if err := os.MkdirAll(images, 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, bin, "image", "build", "busybox", "-o", filepath.Join(images, "busybox.tar")).CombinedOutput(); err != nil {
		return fmt.Errorf("skiff image build busybox: %w\n%s", err, out)
	}
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	n.agent, err = startProc(ctx, "agent", bin, []string{"agent",
		"--server", fmt.Sprintf("https://127.0.0.1:%d", n.srv.port),
		"--token", strings.TrimSpace(string(token)),
		"--data-dir", agentDir,
		"--node-name", benchNodeName,
		"--kubelet-port", strconv.Itoa(ports[0]),
	}, filepath.Join(n.dir, "agent.log"))
	if err != nil {
		return err
	}
	err = poll(ctx, n.timeout, 20*time.Millisecond, "node "+benchNodeName+" Ready with a pod CIDR", func() (bool, error) {
		if err := n.agent.exitedErr(); err != nil {
			return false, err
		}
		node, err := n.cs.CoreV1().Nodes().Get(ctx, benchNodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil // not registered yet
		}
		return nodeReady(node) && node.Spec.PodCIDR != "", nil
	})
	if err != nil {
		return err
	}
	rep.nodeReady = time.Since(n.agent.started)

	nsObj, err := n.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create namespace: %w", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	n.stopWatch = cancel
	n.watcher, err = watchPods(wctx, n.cs, benchNS, nsObj.ResourceVersion)
	return err
}

// round starts the named pods at once, then deletes them, and returns
// their start-up latencies.
func (n *realNode) round(ctx context.Context, names []string) ([]time.Duration, error) {
	lat, err := startPods(ctx, n.cs, n.watcher, benchNS, names, n.timeout)
	if err != nil {
		return nil, err
	}
	return lat, n.deleteAndWait(ctx, names)
}

// deleteAndWait deletes pods and waits until they are gone and their
// shims have exited, so that the next round starts on an idle node.
func (n *realNode) deleteAndWait(ctx context.Context, names []string) error {
	if err := deletePods(ctx, n.cs, n.watcher, benchNS, names, n.timeout); err != nil {
		return err
	}
	return n.waitNoShims(ctx, 30*time.Second)
}

// waitNoShims waits until no containerd shim of the node runs.
func (n *realNode) waitNoShims(ctx context.Context, timeout time.Duration) error {
	return poll(ctx, timeout, 20*time.Millisecond, "no containerd shims left", func() (bool, error) {
		return len(shimsOf(n.dir)) == 0, nil
	})
}

// nodeMemory is the memory of a node's processes at one time.
type nodeMemory struct {
	agent, containerd memory
	shims             memory // summed over the pods' shims
	shimCount         int
}

// memory reads the memory of the agent, its containerd and the pods'
// shims.
func (n *realNode) memory() (nodeMemory, error) {
	var m nodeMemory
	var err error
	if m.agent, err = readMemory(n.agent.pid()); err != nil {
		return m, err
	}
	pid, err := childByName(n.agent.pid(), "containerd")
	if err != nil || pid == 0 {
		return m, errors.Join(errors.New("the agent has no containerd child"), err)
	}
	if m.containerd, err = readMemory(pid); err != nil {
		return m, err
	}
	for _, pid := range shimsOf(n.dir) {
		s, err := readMemory(pid)
		if err != nil {
			continue // a shim that just exited
		}
		m.shims.RSS += s.RSS
		m.shims.Anon += s.Anon
		m.shims.PSS += s.PSS
		m.shimCount++
	}
	return m, nil
}

// close removes the pods while the agent still runs (it leaves containers
// running when it stops), stops the agent and the server, removes the pod
// bridge, and checks that no shim or mount of the node remains.
func (n *realNode) close(ctx context.Context) error {
	// Cleaning up must happen even after an interrupt.
	ctx = context.WithoutCancel(ctx)
	var errs []error
	if n.agent != nil && n.agent.exitedErr() == nil && n.cs != nil {
		pods := n.cs.CoreV1().Pods(benchNS)
		err := pods.DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)}, metav1.ListOptions{})
		if err == nil {
			err = poll(ctx, 2*time.Minute, 50*time.Millisecond, "pods of "+benchNS+" gone", func() (bool, error) {
				list, err := pods.List(ctx, metav1.ListOptions{})
				return err == nil && len(list.Items) == 0, nil
			})
		}
		if err == nil {
			err = n.waitNoShims(ctx, time.Minute)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove pods: %w", err))
		}
	}
	if n.stopWatch != nil {
		n.stopWatch()
	}
	if n.agent != nil {
		errs = append(errs, n.agent.stop(30*time.Second))
	}
	if n.srv != nil {
		errs = append(errs, n.srv.stop())
	}
	if n.dir == "" {
		return errors.Join(errs...)
	}
	// Last resort, for a run that failed half-way: anything of the node
	// still alive is ended here, and reported.
	if pids := shimsOf(n.dir); len(pids) > 0 {
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		errs = append(errs, fmt.Errorf("containerd shims %v were left running; killed", pids))
	}
	if mps, err := unmountUnder(n.dir); err != nil || len(mps) > 0 {
		errs = append(errs, errors.Join(fmt.Errorf("mounts left under %s: %v", n.dir, mps), err))
	}
	if n.agent != nil {
		shared, err := removeBridge(ctx)
		n.bridgeShared = shared
		errs = append(errs, err)
	}
	if n.keep {
		slog.InfoContext(ctx, "kept data directory", "dir", n.dir)
	} else if err := os.RemoveAll(n.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeBridge deletes the pod bridge our agent made, and the masquerade
// of its pods' traffic, unless a node that started after ours still has
// pods on it: neither has an owner, and deleting them under another node's
// pods would cut those off. It reports whether the bridge was shared.
func removeBridge(ctx context.Context) (shared bool, err error) {
	ports, err := os.ReadDir(filepath.Join("/sys/class/net", podBridge, "brif"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if len(ports) > 0 {
		slog.WarnContext(ctx, "pod bridge still in use by another skiff node; left in place", "bridge", podBridge, "ports", len(ports))
		return true, nil
	}
	if out, err := exec.Command("ip", "link", "del", podBridge).CombinedOutput(); err != nil {
		return false, fmt.Errorf("ip link del %s: %w: %s", podBridge, err, out)
	}
	if out, err := exec.Command("nft", "delete", "table", "ip", network.MasqueradeTable).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
		return false, fmt.Errorf("nft delete table ip %s: %w: %s", network.MasqueradeTable, err, out)
	}
	return false, nil
}

// nodeReady reports whether the node's Ready condition is true.
func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// poll calls cond every interval until it returns true or an error, or
// timeout passes.
func poll(ctx context.Context, timeout, interval time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		switch {
		case err != nil:
			return fmt.Errorf("waiting for %s: %w", what, err)
		case ok:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		if err := sleep(ctx, interval); err != nil {
			return err
		}
	}
}
