package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// schedConfig is the scheduler suite's part of the command line.
type schedConfig struct {
	pods        int
	nodeCounts  []int
	replicas    int
	deployNodes int
	benchtime   string
	clients     int
	timeout     time.Duration
}

func (c *schedConfig) flags() {
	c.nodeCounts = []int{1000, 5000}
	flag.IntVar(&c.pods, "sched-pods", 1000, "scheduler suite: pods created per workload through the API server")
	flag.Func("sched-nodes", "scheduler suite: comma-separated Node counts for the API runs (default 1000,5000)", func(s string) error {
		c.nodeCounts = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return fmt.Errorf("bad node count %q", f)
			}
			c.nodeCounts = append(c.nodeCounts, n)
		}
		return nil
	})
	flag.IntVar(&c.replicas, "sched-replicas", 3000, "scheduler suite: replicas of the end-to-end Deployment")
	flag.IntVar(&c.deployNodes, "sched-deploy-nodes", 100, "scheduler suite: Node objects for the Deployment run")
	flag.StringVar(&c.benchtime, "sched-benchtime", "2x", "scheduler suite: -benchtime of the in-memory Go benchmark (empty skips it)")
	flag.IntVar(&c.clients, "sched-clients", 16, "scheduler suite: concurrent clients creating pods and nodes")
	flag.DurationVar(&c.timeout, "sched-timeout", 3*time.Minute, "scheduler suite: how long one run may wait for its pods to be bound")
}

// workloads are issue 3's four scenarios, as the Go benchmark in
// internal/scheduler builds them: 100m/128Mi pods, in 50 groups.
var workloads = []string{"requests", "anti-affinity", "affinity", "spread"}

// benchPod is pod i of a workload.
func benchPod(workload string, i int) *corev1.Pod {
	group := fmt.Sprintf("g%d", i%50)
	zero := int64(0)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%05d", i), Labels: map[string]string{"app": "bench", "group": group}},
		Spec: corev1.PodSpec{
			// No kubelet will ever stop these: deleting them must be immediate.
			TerminationGracePeriodSeconds: &zero,
			Containers: []corev1.Container{{Name: "c", Image: "pause", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi"),
			}}}},
		},
	}
	term := func(key string) corev1.PodAffinityTerm {
		return corev1.PodAffinityTerm{TopologyKey: key, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"group": group}}}
	}
	switch workload {
	case "anti-affinity":
		p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{term(corev1.LabelHostname)}}}
	case "affinity":
		p.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{term(corev1.LabelTopologyZone)}}}
	case "spread":
		p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: corev1.LabelTopologyZone,
			WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "bench"}}}}
	}
	return p
}

// benchNode is Node object i: 32 CPUs, 128Gi, 110 pods, in one of three
// zones, Ready.
func benchNode(i int) *corev1.Node {
	name := fmt.Sprintf("node-%05d", i)
	rl := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("128Gi"),
		corev1.ResourcePods: resource.MustParse("110"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			corev1.LabelHostname: name, corev1.LabelTopologyZone: fmt.Sprintf("zone-%d", i%3),
		}},
		Status: corev1.NodeStatus{Capacity: rl, Allocatable: rl, Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}
}

// schedResult is one measured run.
type schedResult struct {
	workload string
	nodes    int
	pods     int
	api      float64       // pods/s, first create to last binding through the API server
	created  time.Duration // how long creating the pods took (the client's share)
	bound    time.Duration // first create to last binding
}

// runScheduler is the scheduler suite.
func runScheduler(ctx context.Context, cfg config, bin string) error {
	sc := cfg.sched
	rep := &schedReport{}
	if sc.benchtime != "" {
		slog.InfoContext(ctx, "scheduler alone: go test -bench BenchmarkSchedule", "benchtime", sc.benchtime)
		alone, err := benchInMemory(ctx, sc.benchtime)
		if err != nil {
			return err
		}
		rep.alone = alone
	}
	// The Deployment run gets a server of its own, so that it sees exactly
	// its 100 nodes and nothing left by the other runs.
	err := withServer(ctx, cfg, bin, func(cs []kubernetes.Interface) error {
		if err := ensureNodes(ctx, cs, 0, sc.deployNodes); err != nil {
			return err
		}
		r, err := runDeployment(ctx, cs[0], sc.replicas, sc.deployNodes, sc.timeout)
		rep.deploy = r
		if err != nil {
			return err
		}
		rep.deployRequests, err = requestStats(ctx, cs[0])
		return err
	})
	if err != nil {
		return fmt.Errorf("deployment run: %w", err)
	}
	err = withServer(ctx, cfg, bin, func(cs []kubernetes.Interface) error {
		have := 0
		for _, n := range sc.nodeCounts {
			if err := ensureNodes(ctx, cs, have, n); err != nil {
				return err
			}
			have = max(have, n)
			for _, w := range workloads {
				r, err := runPods(ctx, cs, w, n, sc.pods, sc.timeout)
				if err != nil {
					return fmt.Errorf("%s at %d nodes: %w", w, n, err)
				}
				rep.api = append(rep.api, r)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pod runs: %w", err)
	}
	rep.print(os.Stdout)
	return nil
}

// withServer runs fn against a fresh server with no node lifecycle or
// IPAM controllers (the nodes are plain objects no kubelet heartbeats for;
// tainting them unreachable would stop scheduling).
func withServer(ctx context.Context, cfg config, bin string, fn func(cs []kubernetes.Interface) error) (err error) {
	dir, err := os.MkdirTemp("", "skiff-bench-sched-")
	if err != nil {
		return err
	}
	if cfg.keepData {
		defer slog.InfoContext(ctx, "kept data directory", "dir", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	srv, err := startServer(ctx, bin, dir, "--disable-controllers", "nodelifecycle,nodeipam")
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := srv.stop(); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	if _, err := srv.waitReady(ctx, 60*time.Second); err != nil {
		return err
	}
	base, err := clientcmd.BuildConfigFromFlags("", srv.kubeconfig())
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cs := make([]kubernetes.Interface, max(cfg.sched.clients, 1))
	for i := range cs {
		if cs[i], err = newClientset(base); err != nil {
			return err
		}
	}
	return fn(cs)
}

// benchLine is a result line of BenchmarkSchedule.
var benchLine = regexp.MustCompile(`^BenchmarkSchedule/([^/]+)/(\d+)nodes/(\d+)pods\S*\s+\d+\s+\d+ ns/op\s+([\d.]+) pods/s`)

// benchInMemory runs the scheduler's Go benchmark at 1,000 and 5,000
// nodes and returns pods/s by workload and node count.
func benchInMemory(ctx context.Context, benchtime string) (map[string]float64, error) {
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "BenchmarkSchedule/.*/(1000|5000)nodes/",
		"-benchtime", benchtime, "./internal/scheduler")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go test -bench: %w\n%s", err, out)
	}
	res := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if m := benchLine.FindStringSubmatch(sc.Text()); m != nil {
			v, _ := strconv.ParseFloat(m[4], 64)
			res[m[1]+"/"+m[2]] = v
		}
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("no BenchmarkSchedule results in:\n%s", out)
	}
	return res, nil
}

// ensureNodes creates nodes [from, to). The last is created alone, after
// the others, and a probe pod pinned to it is scheduled: once it is bound
// the scheduler's informer has delivered every node before it.
func ensureNodes(ctx context.Context, cs []kubernetes.Interface, from, to int) error {
	if to <= from {
		return nil
	}
	slog.InfoContext(ctx, "creating nodes", "from", from, "to", to)
	if _, _, err := runSplit(ctx, cs, to-from-1, func(ctx context.Context, c kubernetes.Interface, i int) error {
		_, err := c.CoreV1().Nodes().Create(ctx, benchNode(from+i), metav1.CreateOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("create nodes: %w", err)
	}
	last := benchNode(to - 1)
	if _, err := cs[0].CoreV1().Nodes().Create(ctx, last, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create node: %w", err)
	}
	probe := benchPod("requests", 0)
	probe.Name = fmt.Sprintf("probe-%d", to)
	probe.Spec.NodeSelector = map[string]string{corev1.LabelHostname: last.Name}
	pods := cs[0].CoreV1().Pods(metav1.NamespaceDefault)
	if _, err := pods.Create(ctx, probe, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create probe pod: %w", err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		p, err := pods.Get(ctx, probe.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("probe pod: %w", err)
		}
		if p.Spec.NodeName != "" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("probe pod for %s not bound after 2m", last.Name)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return pods.Delete(ctx, probe.Name, metav1.DeleteOptions{})
}

// boundWatcher counts the pods of a namespace that have a node, from a
// watch started before any of them existed.
type boundWatcher struct {
	mu        sync.Mutex
	bound     map[string]bool
	seen      map[string]bool
	want      int
	lastBound time.Time
	allSeen   time.Time
	done      chan struct{}
	err       error
}

func watchBound(ctx context.Context, cs kubernetes.Interface, ns, rv string, want int) (*boundWatcher, func(), error) {
	wctx, cancel := context.WithCancel(ctx)
	b := &boundWatcher{bound: map[string]bool{}, seen: map[string]bool{}, want: want, done: make(chan struct{})}
	w, err := cs.CoreV1().Pods(ns).Watch(wctx, metav1.ListOptions{ResourceVersion: rv})
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("watch pods: %w", err)
	}
	go func() {
		defer close(b.done)
		for {
			var closed bool
			rv, closed = b.drain(w, rv)
			if !closed {
				return
			}
			// The server may end a watch (a slow reader, a restart of its
			// cache): resume from the last revision seen, or relist when
			// that is gone.
			if w, err = cs.CoreV1().Pods(ns).Watch(wctx, metav1.ListOptions{ResourceVersion: rv}); err != nil {
				if wctx.Err() != nil {
					b.err = wctx.Err()
					return
				}
				list, lerr := cs.CoreV1().Pods(ns).List(wctx, metav1.ListOptions{})
				if lerr != nil {
					b.err = fmt.Errorf("relist pods: %w", lerr)
					return
				}
				for i := range list.Items {
					b.record(&list.Items[i], time.Now())
				}
				rv = list.ResourceVersion
				if w, err = cs.CoreV1().Pods(ns).Watch(wctx, metav1.ListOptions{ResourceVersion: rv}); err != nil {
					b.err = fmt.Errorf("watch pods: %w", err)
					return
				}
			}
		}
	}()
	return b, cancel, nil
}

// drain reads w until every pod is bound (closed false) or it ends
// (closed true), returning the last resource version seen.
func (b *boundWatcher) drain(w watch.Interface, rv string) (string, bool) {
	defer w.Stop()
	for ev := range w.ResultChan() {
		now := time.Now()
		p, ok := ev.Object.(*corev1.Pod)
		if !ok {
			return rv, true // an error event: resume
		}
		rv = p.ResourceVersion
		if ev.Type == watch.Deleted {
			continue
		}
		if b.record(p, now) {
			return rv, false
		}
	}
	return rv, true
}

// record notes a pod's state at now and reports whether all are bound.
func (b *boundWatcher) record(p *corev1.Pod, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.seen[p.Name] {
		b.seen[p.Name] = true
		if len(b.seen) == b.want {
			b.allSeen = now
		}
	}
	if p.Spec.NodeName != "" && !b.bound[p.Name] {
		b.bound[p.Name] = true
		b.lastBound = now
	}
	return len(b.bound) >= b.want
}

// wait returns when every pod is bound, or with an error at timeout.
func (b *boundWatcher) wait(ctx context.Context, timeout time.Duration) error {
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		b.mu.Lock()
		defer b.mu.Unlock()
		return fmt.Errorf("%d of %d pods bound after %s", len(b.bound), b.want, timeout)
	}
}

// runPods creates n pods of a workload in a fresh namespace, as fast as
// the clients go, and times them from the first create to the last
// binding; then deletes them so the next run starts from the same nodes.
func runPods(ctx context.Context, cs []kubernetes.Interface, workload string, nodes, n int, timeout time.Duration) (schedResult, error) {
	ns := fmt.Sprintf("sched-%s-%d", workload, nodes)
	slog.InfoContext(ctx, "scheduling through the API server", "workload", workload, "nodes", nodes, "pods", n)
	nsObj, err := cs[0].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil {
		return schedResult{}, fmt.Errorf("create namespace: %w", err)
	}
	b, stop, err := watchBound(ctx, cs[0], ns, nsObj.ResourceVersion, n)
	if err != nil {
		return schedResult{}, err
	}
	defer stop()
	start := time.Now()
	_, created, err := runSplit(ctx, cs, n, func(ctx context.Context, c kubernetes.Interface, i int) error {
		_, err := c.CoreV1().Pods(ns).Create(ctx, benchPod(workload, i), metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return schedResult{}, fmt.Errorf("create pods: %w", err)
	}
	if err := b.wait(ctx, timeout); err != nil {
		return schedResult{}, err
	}
	bound := b.lastBound.Sub(start)
	r := schedResult{workload: workload, nodes: nodes, pods: n, created: created, bound: bound, api: float64(n) / bound.Seconds()}
	// Pods have a zero grace period, so this removes them at once.
	if err := cs[0].CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return r, fmt.Errorf("delete pods: %w", err)
	}
	return r, nil
}

// runDeployment creates a Deployment of replicas pods and times it from
// the create to the last pod bound; the pods are made by the Deployment
// and ReplicaSet controllers, so this is the whole control plane's rate.
func runDeployment(ctx context.Context, cs kubernetes.Interface, replicas, nodes int, timeout time.Duration) (schedResult, error) {
	const ns = "sched-deployment"
	slog.InfoContext(ctx, "deployment end to end", "replicas", replicas, "nodes", nodes)
	nsObj, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil {
		return schedResult{}, fmt.Errorf("create namespace: %w", err)
	}
	b, stop, err := watchBound(ctx, cs, ns, nsObj.ResourceVersion, replicas)
	if err != nil {
		return schedResult{}, err
	}
	defer stop()
	tmpl := benchPod("requests", 0)
	tmpl.Labels = map[string]string{"app": "web"}
	tmpl.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")}
	n := int32(replicas)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &n,
			Selector: &metav1.LabelSelector{MatchLabels: tmpl.Labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: tmpl.Labels}, Spec: tmpl.Spec},
		},
	}
	start := time.Now()
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return schedResult{}, fmt.Errorf("create deployment: %w", err)
	}
	if err := b.wait(ctx, timeout); err != nil {
		return schedResult{}, fmt.Errorf("deployment: %w", err)
	}
	bound := b.lastBound.Sub(start)
	b.mu.Lock()
	created := b.allSeen.Sub(start)
	b.mu.Unlock()
	return schedResult{workload: "deployment", nodes: nodes, pods: replicas, created: created, bound: bound, api: float64(replicas) / bound.Seconds()}, nil
}

// requestStat is one kind of API request the server served: how many and
// their mean latency, from its apiserver_request_duration_seconds.
type requestStat struct {
	kind  string // "create pods", "create pods/binding", …
	count float64
	mean  time.Duration
}

var metricLine = regexp.MustCompile(`^apiserver_request_duration_seconds_(sum|count)\{(.*)\} (\S+)$`)
var labelPair = regexp.MustCompile(`(\w+)="([^"]*)"`)

// requestStats reads the server's request metrics, busiest kinds first:
// where a run's API time went.
func requestStats(ctx context.Context, cs kubernetes.Interface) ([]requestStat, error) {
	data, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	sums, counts := map[string]float64{}, map[string]float64{}
	for _, line := range strings.Split(string(data), "\n") {
		m := metricLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		l := map[string]string{}
		for _, kv := range labelPair.FindAllStringSubmatch(m[2], -1) {
			l[kv[1]] = kv[2]
		}
		kind := l["verb"] + " " + l["resource"]
		if l["subresource"] != "" {
			kind += "/" + l["subresource"]
		}
		v, _ := strconv.ParseFloat(m[3], 64)
		if m[1] == "sum" {
			sums[kind] += v
		} else {
			counts[kind] += v
		}
	}
	var out []requestStat
	for k, c := range counts {
		if c > 0 {
			out = append(out, requestStat{kind: k, count: c, mean: time.Duration(sums[k] / c * float64(time.Second))})
		}
	}
	slices.SortFunc(out, func(a, b requestStat) int { return int(b.count - a.count) })
	return out, nil
}
