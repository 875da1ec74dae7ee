package hae2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/skiffhq/skiff/internal/controller/manager"
	"github.com/skiffhq/skiff/internal/scheduler"
	"github.com/skiffhq/skiff/test/e2eutil"
)

// failoverGoal is how soon after a server dies the API must answer
// through the others and its Leases must have new holders.
const failoverGoal = 15 * time.Second

// nodeFailureGoal is how soon a dead node's pods must run elsewhere
// (docs/node-failure.md).
const nodeFailureGoal = 60 * time.Second

// leases are the leader-elected components' Leases in kube-system.
var leases = []string{scheduler.LeaseName, manager.LeaseName}

// TestServerDeathLosesNoAcknowledgedWrite kills the server that leads
// etcd and holds the scheduler's and controller manager's Leases while a
// client writes numbered ConfigMaps: the API answers through the others,
// each Lease gets a new holder, every acknowledged write is there, and
// the nodes and their pods carry on.
func TestServerDeathLosesNoAcknowledgedWrite(t *testing.T) {
	ctx := context.Background()
	victim := cl.etcdLeader(t)
	for _, name := range leases {
		if holder := cl.leaseHolder(t, victim, name); holder != victim {
			t.Fatalf("server %s leads etcd but server index %d holds Lease %s: the cluster has not settled as started",
				cl.servers[victim].host.name, holder, name)
		}
	}
	survivors := cl.others(victim)
	pods := cl.mustAppPods(t, cl.client(survivors[0]))

	w := startWriter(t, cl, "writes", victim)
	w.waitAcked(t, 20)
	if err := cl.servers[victim].kill(); err != nil {
		t.Fatal(err)
	}
	// From its death on, every acknowledgement came through a survivor.
	killed := time.Now()
	t.Logf("killed server %s (etcd leader, holder of both Leases)", cl.servers[victim].host.name)

	// Each recovery is timed from the kill, each polled on its own so
	// that a slow check does not delay the others' times.
	kube := cl.client(survivors[0])
	victimName := cl.servers[victim].host.name
	conds := map[string]func() bool{
		"API answering a write": func() bool { return w.ackedSince(killed) > 0 },
		"new etcd leader": func() bool {
			resp, err := cl.members(ctx, survivors[0])
			return err == nil && resp.Leader != "" && resp.Leader != victimName
		},
	}
	for _, name := range leases {
		conds["Lease "+name+" taken over"] = func() bool {
			h := cl.leaseHolder(t, survivors[0], name)
			return h >= 0 && h != victim
		}
	}
	for what, at := range firstTimes(t, 30*time.Second, conds) {
		took := at.Sub(killed)
		t.Logf("%s %v after the kill", what, took.Round(time.Millisecond))
		if took > failoverGoal {
			t.Errorf("%s took %v, goal %v", what, took, failoverGoal)
		}
	}

	w.waitAcked(t, len(w.ackedNames())+20)
	acked := w.stop()
	got := cl.configMaps(t, kube, "writes")
	var missing []string
	for _, name := range acked {
		if !got[name] {
			missing = append(missing, name)
		}
	}
	t.Logf("%d writes acknowledged, %d of them after the kill", len(acked), w.ackedSince(killed))
	if len(missing) > 0 {
		t.Errorf("%d acknowledged writes missing: %v", len(missing), missing)
	}

	// The nodes never stopped: their pods are the same and not restarted.
	for _, a := range cl.liveAgents() {
		n, err := kube.CoreV1().Nodes().Get(ctx, nodeName(a.host), metav1.GetOptions{})
		if err != nil || !nodeReady(n) {
			t.Errorf("node %s not Ready after the server's death: %v", nodeName(a.host), err)
		}
	}
	if after := cl.mustAppPods(t, kube); !samePods(pods, after) {
		t.Errorf("pods changed through the server's death:\nbefore %v\nafter  %v", pods, after)
	}

	// An agent restarted while the server it was given is dead still
	// comes up, through the servers it learned before.
	if victim == 0 {
		a := cl.liveAgents()[0]
		if err := a.kill(); err != nil {
			t.Fatal(err)
		}
		restarted := time.Now()
		if err := a.start(cl.bin); err != nil {
			t.Fatal(err)
		}
		back := eventually(t, time.Minute, "the restarted agent renewing its Lease", func() (bool, string) {
			if !a.running() {
				return false, "agent exited:\n" + e2eutil.Tail(a.logPath(), 3000)
			}
			return leaseRenewedAfter(ctx, kube, "kube-node-lease", nodeName(a.host), restarted), ""
		})
		t.Logf("agent %s restarted with its --server dead: Lease renewed %v later", a.host.name, back.Sub(restarted).Round(time.Millisecond))
	}

	// The killed server comes back as a member and the cluster is whole.
	if err := cl.servers[victim].start(cl.bin); err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := cl.waitServer(waitCtx, victim); err != nil {
		t.Fatal(err)
	}
}

// TestCutOffServerRefusesWrites pulls the link of the server leading
// etcd: the other two keep accepting writes, the cut-off one accepts none
// (no split brain), and once the link is back it serves what the others
// wrote meanwhile.
func TestCutOffServerRefusesWrites(t *testing.T) {
	ctx := context.Background()
	victim := cl.etcdLeader(t)
	h := cl.servers[victim].host
	survivors := cl.others(victim)
	// Made before the cut, so that the cut-off side gets as far as
	// proposing its write.
	if _, err := cl.client(survivors[0]).CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "partition"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the namespace on the server to be cut off", func() (bool, string) {
		out, err := cl.kubectlOn(t, victim, "get", "namespace", "partition", "-o", "name")
		return err == nil, out
	})
	if err := h.setLink(false); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	healed := false
	heal := func() {
		if !healed {
			healed = true
			if err := h.setLink(true); err != nil {
				t.Error(err)
			}
		}
	}
	defer heal()
	t.Logf("cut off server %s (etcd leader)", h.name)

	majority := cl.clientWithTimeout(survivors[0], 2*time.Second)
	took := eventually(t, 30*time.Second, "the majority accepting a write", func() (bool, string) {
		err := createConfigMap(ctx, majority, "partition", "during-cut")
		return err == nil || apierrors.IsAlreadyExists(err), fmt.Sprint(err)
	}).Sub(cut)
	t.Logf("the majority accepted a write %v after the cut", took.Round(time.Millisecond))

	// From inside the cut-off host, its own API server must refuse.
	// Refused for want of a quorum: it times out, never succeeds.
	out, err := cl.kubectlOn(t, victim, "--request-timeout=10s", "-n", "partition", "create", "configmap", "refused")
	switch {
	case err == nil:
		t.Errorf("the cut-off server accepted a write:\n%s", out)
	case !timedOut(out):
		t.Errorf("the cut-off server's write failed, but not for want of a quorum: %s", out)
	default:
		t.Logf("the cut-off server refused a write: %s", strings.TrimSpace(out))
	}

	heal()
	healedAt := time.Now()
	// Asked from its own host, over a new connection each time: the test's
	// pooled connection may sit on a TCP session that died with the link.
	back := eventually(t, 60*time.Second, "the healed server serving the majority's write", func() (bool, string) {
		out, err := cl.kubectlOn(t, victim, "--request-timeout=2s", "-n", "partition", "get", "configmap", "during-cut", "-o", "name")
		return err == nil, out
	})
	t.Logf("the healed server served the majority's write %v after the link came back", back.Sub(healedAt).Round(time.Millisecond))
	// The refused write was not applied later either, on either side.
	if _, err := cl.client(survivors[0]).CoreV1().ConfigMaps("partition").Get(ctx, "refused", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("server %s: the refused write: %v, want NotFound", cl.servers[survivors[0]].host.name, err)
	}
	if out, err := cl.kubectlOn(t, victim, "-n", "partition", "get", "configmap", "refused"); err == nil || !strings.Contains(out, "NotFound") {
		t.Errorf("server %s: the refused write: %v %s, want NotFound", h.name, err, out)
	}
	eventually(t, 60*time.Second, "all three members with one leader", func() (bool, string) {
		resp, err := cl.members(ctx, victim)
		return err == nil && resp.Leader != "" && len(resp.Members) == 3, fmt.Sprintf("%+v %v", resp, err)
	})
	// Still not there once the cluster is whole again: the refused
	// proposal was dropped, not held back and applied late.
	if _, err := cl.client(survivors[1]).CoreV1().ConfigMaps("partition").Get(ctx, "refused", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the refused write, after the heal: %v, want NotFound", err)
	}
}

// timedOut says whether kubectl's output reports a request that ran out
// of time, on the client or in the API server's storage.
func timedOut(out string) bool {
	for _, s := range []string{"Timeout", "timed out", "deadline exceeded", "ServiceUnavailable", "unavailable"} {
		if strings.Contains(out, s) {
			return true
		}
	}
	return false
}

// TestDeadNodePodsMoveElsewhere kills a node, its agent, runtime and
// containers at once, and pulls its link: its pods run on the other node
// within the node-failure goal and the Deployment is back to full
// strength.
func TestDeadNodePodsMoveElsewhere(t *testing.T) {
	ctx := context.Background()
	kube := cl.client(0)
	// The node with the most of the app's pods dies.
	count := map[string]int{}
	for _, p := range cl.mustAppPods(t, kube) {
		count[p.node]++
	}
	var victim *proc
	for _, a := range cl.liveAgents() {
		if victim == nil || count[nodeName(a.host)] > count[nodeName(victim.host)] {
			victim = a
		}
	}
	dead := nodeName(victim.host)
	if count[dead] == 0 {
		t.Fatalf("no pod of the app on any node: %v", count)
	}
	if err := victim.host.setLink(false); err != nil {
		t.Fatal(err)
	}
	cgroups, err := victim.host.killAll()
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	victim.dead = true
	if err := victim.waitExit(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	cl.deadPodCgroups = append(cl.deadPodCgroups, cgroups...)
	t.Logf("killed node %s with %d of the app's pods", dead, count[dead])
	t.Cleanup(func() { cl.forgetNode(t, victim) })

	took := eventually(t, 2*nodeFailureGoal, "the app fully ready on the other nodes", func() (bool, string) {
		pods, err := cl.appPods(kube)
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, p := range pods {
			if p.ready && p.node != dead {
				ready++
			}
		}
		return ready == appReplicas && deploymentReady(ctx, kube), fmt.Sprintf("%d ready elsewhere; pods %v", ready, pods)
	}).Sub(killed)
	t.Logf("the dead node's pods ran elsewhere and the Deployment was fully ready %v after the kill", took.Round(time.Millisecond))
	if took > nodeFailureGoal {
		t.Errorf("pods moved after %v, goal %v", took, nodeFailureGoal)
	}
	live := cl.liveAgents()[0].host
	moved := map[string]bool{}
	for _, p := range cl.mustAppPods(t, kube) {
		moved[p.name] = true
	}
	eventually(t, 30*time.Second, "the app answering through the surviving node's NodePort", func() (bool, string) {
		name, err := appAnswers(live)
		return err == nil && moved[name], fmt.Sprintf("%q %v", name, err)
	})
}

// TestWholeClusterRestartLosesNothing kills every process of the cluster
// at once (servers, agents and the agents' containerd; the containers
// live on in their shims, as through any agent restart) and starts them
// all again: every object comes back unchanged, and the app runs at full
// strength.
func TestWholeClusterRestartLosesNothing(t *testing.T) {
	ctx := context.Background()
	before := cl.objects(t, cl.client(0))
	procs := append(append([]*proc{}, cl.servers...), cl.liveAgents()...)
	pids := []int{}
	for _, p := range procs {
		pids = append(pids, p.pid())
	}
	for _, a := range cl.liveAgents() {
		pids = append(pids, a.host.named("containerd")...)
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, p := range procs {
		if err := p.waitExit(10 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	stopped := time.Now()
	for _, p := range procs {
		if err := p.start(cl.bin); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("killed %d processes and restarted the %d skiff ones", len(pids), len(procs))
	kube := cl.client(0)
	apiBack := eventually(t, 2*time.Minute, "the API answering", func() (bool, string) {
		_, err := kube.CoreV1().Namespaces().Get(ctx, appNamespace, metav1.GetOptions{})
		for _, p := range procs {
			if !p.running() {
				return false, p.host.name + " exited:\n" + e2eutil.Tail(p.logPath(), 3000)
			}
		}
		return err == nil, fmt.Sprint(err)
	})
	t.Logf("API answered %v after the restart", apiBack.Sub(stopped).Round(time.Millisecond))
	// Fresh evidence that every part works again, not the status it had
	// before: each node renews its Lease, the scheduler and controller
	// manager renew theirs, the Deployment's ReplicaSet is at full
	// strength, and the app answers through the node's proxy.
	conds := map[string]func() bool{
		"the app at full strength": func() bool { return deploymentReady(ctx, kube) },
	}
	for _, a := range cl.liveAgents() {
		conds["node "+nodeName(a.host)+" renewing its Lease"] = func() bool {
			return leaseRenewedAfter(ctx, kube, "kube-node-lease", nodeName(a.host), stopped)
		}
		conds["the app answering on "+nodeName(a.host)] = func() bool {
			_, err := appAnswers(a.host)
			return err == nil
		}
	}
	for _, name := range leases {
		conds["Lease "+name+" renewed"] = func() bool {
			return leaseRenewedAfter(ctx, kube, "kube-system", name, stopped)
		}
	}
	for what, at := range firstTimes(t, 2*time.Minute, conds) {
		t.Logf("%s %v after the restart", what, at.Sub(stopped).Round(time.Millisecond))
	}
	after := cl.objects(t, kube)
	for key, uid := range before {
		if after[key] != uid {
			t.Errorf("%s (uid %s) lost: now %q", key, uid, after[key])
		}
	}
	waitCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for i := range cl.servers {
		if err := cl.waitServer(waitCtx, i); err != nil {
			t.Fatal(err)
		}
	}
}

// writer creates numbered ConfigMaps one after the other, moving to the
// next server whenever one fails, and logs every write acknowledged.
type writer struct {
	mu     sync.Mutex
	ack    []string
	at     []time.Time
	cancel context.CancelFunc
	done   chan struct{}
}

func startWriter(t *testing.T, c *cluster, ns string, first int) *writer {
	if _, err := c.client(first).CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{cancel: cancel, done: make(chan struct{})}
	// A write takes milliseconds; one stuck longer (proposed to a leader
	// that died) is given up and tried on the next server, as a patient
	// client would.
	clients := make([]kubernetes.Interface, len(c.servers))
	for i := range clients {
		clients[i] = c.clientWithTimeout(i, 2*time.Second)
	}
	go func() {
		defer close(w.done)
		cur := first
		for n := 0; ctx.Err() == nil; {
			name := fmt.Sprintf("w-%06d", n)
			err := createConfigMap(ctx, clients[cur], ns, name)
			// AlreadyExists: an attempt that failed had in fact been
			// written, which a retry confirms.
			if err == nil || apierrors.IsAlreadyExists(err) {
				w.mu.Lock()
				w.ack, w.at = append(w.ack, name), append(w.at, time.Now())
				w.mu.Unlock()
				n++
				continue
			}
			cur = (cur + 1) % len(clients)
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond): // a pause between failed attempts, not a wait for anything
			}
		}
	}()
	t.Cleanup(func() { w.stop() })
	return w
}

func (w *writer) ackedNames() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.ack)
}

func (w *writer) ackedSince(t0 time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, at := range w.at {
		if at.After(t0) {
			n++
		}
	}
	return n
}

// waitAcked waits until n writes are acknowledged.
func (w *writer) waitAcked(t *testing.T, n int) {
	t.Helper()
	eventually(t, time.Minute, fmt.Sprintf("%d acknowledged writes", n), func() (bool, string) {
		got := len(w.ackedNames())
		return got >= n, fmt.Sprintf("%d acknowledged", got)
	})
}

// stop ends the writer and returns every acknowledged write.
func (w *writer) stop() []string {
	w.cancel()
	<-w.done
	return w.ackedNames()
}

func createConfigMap(ctx context.Context, kube kubernetes.Interface, ns, name string) error {
	_, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Data:       map[string]string{"n": name},
	}, metav1.CreateOptions{})
	return err
}

// etcdLeader is the index of the server leading etcd.
func (c *cluster) etcdLeader(t *testing.T) int {
	t.Helper()
	name := c.etcdLeaderName(t, 0)
	for i, s := range c.servers {
		if s.host.name == name {
			return i
		}
	}
	t.Fatalf("etcd leader %q is none of the servers", name)
	return -1
}

func (c *cluster) etcdLeaderName(t *testing.T, via int) string {
	t.Helper()
	var name string
	eventually(t, 30*time.Second, "an etcd leader", func() (bool, string) {
		resp, err := c.members(context.Background(), via)
		name = resp.Leader
		return err == nil && name != "", fmt.Sprint(err)
	})
	return name
}

// leaseHolder is the index of the server whose process holds Lease name,
// read through server via; -1 when none does.
func (c *cluster) leaseHolder(t *testing.T, via int, name string) int {
	t.Helper()
	l, err := c.client(via).CoordinationV1().Leases("kube-system").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return -1
	}
	// Identities are host_pid_nanos; the hosts share a name here.
	parts := strings.Split(*l.Spec.HolderIdentity, "_")
	if len(parts) < 3 {
		return -1
	}
	pid, _ := strconv.Atoi(parts[len(parts)-2])
	for i, s := range c.servers {
		if s.running() && s.pid() == pid {
			return i
		}
	}
	return -1
}

// others are the indexes of the servers other than i.
func (c *cluster) others(i int) []int {
	var out []int
	for j := range c.servers {
		if j != i {
			out = append(out, j)
		}
	}
	return out
}

func (c *cluster) liveAgents() []*proc {
	var out []*proc
	for _, a := range c.agents {
		if !a.dead {
			out = append(out, a)
		}
	}
	return out
}

// kubectlOn runs `skiff kubectl` inside server i's host against its own
// API server on the loopback.
func (c *cluster) kubectlOn(t *testing.T, i int, args ...string) (string, error) {
	t.Helper()
	s := c.servers[i]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + s.host.netns(), c.bin,
		"kubectl", "--kubeconfig", filepath.Join(s.dir, "admin.kubeconfig")}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// podState is what the tests compare of a pod.
type podState struct {
	uid, name, node string
	ready           bool
	restarts        int32
}

func (p podState) String() string {
	return fmt.Sprintf("%s@%s(ready=%v,restarts=%d)", p.name, p.node, p.ready, p.restarts)
}

// mustAppPods is appPods, failing the test on an error.
func (c *cluster) mustAppPods(t *testing.T, kube kubernetes.Interface) []podState {
	t.Helper()
	pods, err := c.appPods(kube)
	if err != nil {
		t.Fatal(err)
	}
	return pods
}

// appPods are the app's live pods (not being deleted), by name.
func (c *cluster) appPods(kube kubernetes.Interface) ([]podState, error) {
	pods, err := kube.CoreV1().Pods(appNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + appName})
	if err != nil {
		return nil, fmt.Errorf("list the app's pods: %w", err)
	}
	var out []podState
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		s := podState{uid: string(p.UID), name: p.Name, node: p.Spec.NodeName}
		for _, cs := range p.Status.ContainerStatuses {
			s.ready, s.restarts = cs.Ready, s.restarts+cs.RestartCount
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b podState) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

func samePods(a, b []podState) bool {
	return slices.EqualFunc(a, b, func(x, y podState) bool { return x.uid == y.uid && x.restarts == y.restarts })
}

func (c *cluster) configMaps(t *testing.T, kube kubernetes.Interface, ns string) map[string]bool {
	t.Helper()
	list, err := kube.CoreV1().ConfigMaps(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list ConfigMaps: %v", err)
	}
	out := map[string]bool{}
	for _, cm := range list.Items {
		out[cm.Name] = true
	}
	return out
}

// objects maps every object of the kinds a user declares (and the pods
// and nodes that run them) to its UID.
func (c *cluster) objects(t *testing.T, kube kubernetes.Interface) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	add := func(kind string, items []metav1.Object, err error) {
		if err != nil {
			t.Fatalf("list %s: %v", kind, err)
		}
		for _, o := range items {
			out[kind+"/"+o.GetNamespace()+"/"+o.GetName()] = string(o.GetUID())
		}
	}
	ns, err := kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	add("namespace", ptrs(ns, err, func(l *corev1.NamespaceList) []corev1.Namespace { return l.Items }), err)
	cms, err := kube.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{})
	add("configmap", ptrs(cms, err, func(l *corev1.ConfigMapList) []corev1.ConfigMap { return l.Items }), err)
	svcs, err := kube.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	add("service", ptrs(svcs, err, func(l *corev1.ServiceList) []corev1.Service { return l.Items }), err)
	nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	add("node", ptrs(nodes, err, func(l *corev1.NodeList) []corev1.Node { return l.Items }), err)
	pods, err := kube.CoreV1().Pods(appNamespace).List(ctx, metav1.ListOptions{})
	add("pod", ptrs(pods, err, func(l *corev1.PodList) []corev1.Pod { return l.Items }), err)
	deps, err := kube.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list deployments: %v", err)
	}
	for _, d := range deps.Items {
		out["deployment/"+d.Namespace+"/"+d.Name] = string(d.UID)
	}
	rss, err := kube.AppsV1().ReplicaSets("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list replicasets: %v", err)
	}
	for _, r := range rss.Items {
		out["replicaset/"+r.Namespace+"/"+r.Name] = string(r.UID)
	}
	return out
}

// ptrs turns a list's items into metav1.Objects.
func ptrs[L any, T any, PT interface {
	*T
	metav1.Object
}](list L, err error, items func(L) []T) []metav1.Object {
	if err != nil {
		return nil
	}
	it := items(list)
	out := make([]metav1.Object, len(it))
	for i := range it {
		out[i] = PT(&it[i])
	}
	return out
}

// forgetNode removes a dead node from the cluster and its host from the
// machine, as an operator would once the machine is gone for good.
func (c *cluster) forgetNode(t *testing.T, a *proc) {
	ctx := context.Background()
	kube := c.client(0)
	_ = kube.CoreV1().Nodes().Delete(ctx, nodeName(a.host), metav1.DeleteOptions{})
	pods, err := kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + nodeName(a.host)})
	if err == nil {
		for _, p := range pods.Items {
			_ = kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		}
	}
	if err := unmountUnder(a.dir); err != nil {
		t.Error(err)
	}
	a.host.remove()
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// deploymentReady says whether the app's Deployment has all its replicas
// updated, ready and available.
func deploymentReady(ctx context.Context, kube kubernetes.Interface) bool {
	d, err := kube.AppsV1().Deployments(appNamespace).Get(ctx, appName, metav1.GetOptions{})
	if err != nil {
		return false
	}
	s := d.Status
	return s.ObservedGeneration == d.Generation && s.Replicas == appReplicas && s.UpdatedReplicas == appReplicas &&
		s.ReadyReplicas == appReplicas && s.AvailableReplicas == appReplicas
}

func intOrPort(p int) intstr.IntOrString { return intstr.FromInt32(int32(p)) }

// leaseRenewedAfter says whether Lease ns/name was renewed after t0.
func leaseRenewedAfter(ctx context.Context, kube kubernetes.Interface, ns, name string, t0 time.Time) bool {
	l, err := kube.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
	return err == nil && l.Spec.RenewTime != nil && l.Spec.RenewTime.After(t0)
}

// firstTimes polls every condition every 100 ms, each in a goroutine of
// its own, until each has held once, and returns when each first did; it
// fails the test after timeout.
func firstTimes(t *testing.T, timeout time.Duration, conds map[string]func() bool) map[string]time.Time {
	t.Helper()
	var mu sync.Mutex
	out := map[string]time.Time{}
	var wg sync.WaitGroup
	deadline := time.Now().Add(timeout)
	for what, cond := range conds {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if cond() {
					mu.Lock()
					out[what] = time.Now()
					mu.Unlock()
					return
				}
				time.Sleep(100 * time.Millisecond) // the polling pace
			}
		})
	}
	wg.Wait()
	var missing []string
	for what := range conds {
		if _, ok := out[what]; !ok {
			missing = append(missing, what)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("timed out after %s waiting for %v\n%s", timeout, missing, cl.logTails())
	}
	return out
}

// appAnswers fetches the app through its NodePort on a node and returns
// the pod's name that answered.
func appAnswers(h *host) (string, error) {
	hc := http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + h.ip + ":" + strconv.Itoa(appNodePort) + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(body)), err
}

// eventually polls cond every 100 ms until it holds, and returns when it
// did; it fails the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last: %s\n%s", timeout, what, state, cl.logTails())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
