package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRuntimeLossMakesNodeNotReady kills the agent's containerd and checks
// that the node reports it, that the agent starts a new one, and that the
// new one adopts the containers the old one ran.
//
// The kubelet computes node status every 10 s and a restart takes about
// two, so a single kill would usually go unseen. The test keeps the
// runtime down instead: it kills every containerd the agent starts until
// the node says NotReady, which also drives the agent's restart back-off
// (1, 2, 4, 8 s) as a crash-looping runtime would.
func TestRuntimeLossMakesNodeNotReady(t *testing.T) {
	ns := namespace(t)
	createPod(t, ns, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "survivor"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{busybox("web", httpdScript)}},
	})
	before := waitPod(t, ns, "survivor", 60*time.Second, "running and ready", func(p *corev1.Pod) bool {
		return podReady(p) && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil
	})
	podIP := before.Status.PodIP
	if body, err := httpGet("http://" + podIP + ":8080/"); err != nil || strings.TrimSpace(body) != "hello from survivor" {
		t.Fatalf("GET before the runtime loss: %q, %v", body, err)
	}

	server := cl.cmd.Process.Pid
	first := runtimePID(server)
	if first == 0 {
		t.Fatalf("no containerd child of the server (pid %d)", server)
	}

	killed := map[int]bool{}
	var killedMu sync.Mutex
	ctx, stopKilling := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if pid := runtimePID(server); pid != 0 {
				killedMu.Lock()
				if !killed[pid] {
					killed[pid] = true
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
				killedMu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	stop := func() { stopKilling(); wg.Wait() }
	t.Cleanup(stop)

	eventually(t, 40*time.Second, "node NotReady because of its runtime", func() (bool, string) {
		rc := nodeReadyCondition(t)
		return rc.Status == corev1.ConditionFalse && rc.Reason == "KubeletNotReady" &&
			strings.Contains(rc.Message, "container runtime"), fmt.Sprintf("%+v", rc)
	})
	stop()
	// One kill is enough when the kubelet's status check falls inside the
	// outage; more mean it kept restarting (the back-off has unit tests).
	t.Logf("node NotReady after killing %d containerd processes", len(killed))

	down := time.Now()
	eventually(t, 60*time.Second, "node Ready again", func() (bool, string) {
		rc := nodeReadyCondition(t)
		return rc.Status == corev1.ConditionTrue, fmt.Sprintf("%+v", rc)
	})
	t.Logf("node Ready again %s later", time.Since(down).Round(time.Second))
	if pid := runtimePID(server); pid == 0 || killed[pid] {
		t.Errorf("containerd now %d; killed %v", pid, killed)
	}

	// While the node was NotReady the node lifecycle controller will have
	// marked the pod not ready (it checks every 5 s); the kubelet must
	// mark it ready again.
	var after *corev1.Pod
	eventually(t, 30*time.Second, "pod Ready again after the controller marked it not ready", func() (bool, string) {
		p, err := cl.client.CoreV1().Pods(ns).Get(context.Background(), "survivor", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		after = p
		return podReady(p), fmt.Sprintf("conditions %+v; container statuses %+v", p.Status.Conditions, p.Status.ContainerStatuses)
	})
	b, a := before.Status.ContainerStatuses[0], after.Status.ContainerStatuses[0]
	if a.ContainerID != b.ContainerID || a.RestartCount != 0 || a.State.Running == nil ||
		!a.State.Running.StartedAt.Equal(&b.State.Running.StartedAt) || after.Status.PodIP != podIP {
		t.Errorf("container changed across the runtime restart:\nbefore %+v\nafter  %+v", b, a)
	}
	if body, err := httpGet("http://" + podIP + ":8080/"); err != nil || strings.TrimSpace(body) != "hello from survivor" {
		t.Errorf("GET after the runtime restart: %q, %v", body, err)
	}
	// Exec goes through the new containerd's streaming server: the
	// kubelet's CRI connection found it without being replaced.
	if out := kubectl(t, "-n", ns, "exec", "survivor", "--", "cat", "/www/index.html"); strings.TrimSpace(out) != "hello from survivor" {
		t.Errorf("exec after the runtime restart: %q", out)
	}
	// The not-ready taints go once the node is Ready, so later tests'
	// pods schedule.
	eventually(t, 30*time.Second, "not-ready taints removed", func() (bool, string) {
		n, err := cl.client.CoreV1().Nodes().Get(context.Background(), nodeName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, taint := range n.Spec.Taints {
			if taint.Key == corev1.TaintNodeNotReady || taint.Key == corev1.TaintNodeUnreachable {
				return false, fmt.Sprintf("%+v", n.Spec.Taints)
			}
		}
		return true, ""
	})
}

// nodeReadyCondition returns the test node's Ready condition.
func nodeReadyCondition(t *testing.T) corev1.NodeCondition {
	t.Helper()
	n, err := cl.client.CoreV1().Nodes().Get(context.Background(), nodeName, metav1.GetOptions{})
	if err != nil {
		return corev1.NodeCondition{Message: err.Error()}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c
		}
	}
	return corev1.NodeCondition{Message: "no Ready condition"}
}

// runtimePID returns the pid of the live containerd that is a child of
// the process parent, or 0 if there is none.
func runtimePID(parent int) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may contain spaces.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[0] == "Z" || f[1] != strconv.Itoa(parent) {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		argv0, _, _ := bytes.Cut(cmdline, []byte{0})
		if filepath.Base(string(argv0)) == "containerd" {
			return pid
		}
	}
	return 0
}
