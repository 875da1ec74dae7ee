package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestLogsExecCopyPortForward(t *testing.T) {
	ns := namespace(t)
	createPod(t, ns, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "talk"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{busybox("app",
			`i=0; while true; do echo "line $i"; i=$((i+1)); sleep 0.2; done & `+httpdScript)}},
	})
	waitPod(t, ns, "talk", 60*time.Second, "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })

	t.Run("logs -f streams new lines", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, cl.bin, "kubectl", "--kubeconfig", cl.kubeconfig, "-n", ns, "logs", "-f", "talk")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); _ = cmd.Wait() }()
		sc := bufio.NewScanner(out)
		seen := 0
		for sc.Scan() && seen < 15 {
			if strings.HasPrefix(sc.Text(), "line ") {
				seen++
			}
		}
		if seen < 15 {
			t.Errorf("followed %d lines, want 15", seen)
		}
	})
	t.Run("exec", func(t *testing.T) {
		if out := kubectl(t, "-n", ns, "exec", "talk", "--", "sh", "-c", "echo $((6*7)) && hostname"); out != "42\ntalk\n" {
			t.Errorf("exec output %q", out)
		}
		out, err := kubectlErr(t, []byte("from stdin\n"), "-n", ns, "exec", "-i", "talk", "--", "cat")
		if err != nil || out != "from stdin\n" {
			t.Errorf("exec -i: %q, %v", out, err)
		}
	})
	t.Run("cp both ways", func(t *testing.T) {
		src := filepath.Join(t.TempDir(), "in.txt")
		if err := os.WriteFile(src, []byte("copied in\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		kubectl(t, "-n", ns, "cp", src, "talk:/tmp/in.txt")
		if out := kubectl(t, "-n", ns, "exec", "talk", "--", "cat", "/tmp/in.txt"); out != "copied in\n" {
			t.Errorf("file in the pod: %q", out)
		}
		dst := filepath.Join(t.TempDir(), "out.txt")
		kubectl(t, "-n", ns, "cp", "talk:/tmp/in.txt", dst)
		if data, err := os.ReadFile(dst); err != nil || string(data) != "copied in\n" {
			t.Errorf("copied out: %q, %v", data, err)
		}
	})
	t.Run("port-forward", func(t *testing.T) {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, cl.bin, "kubectl", "--kubeconfig", cl.kubeconfig, "-n", ns, "port-forward", "pod/talk", fmt.Sprintf("%d:8080", port))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); _ = cmd.Wait() }()
		eventually(t, 20*time.Second, "page through the forwarded port", func() (bool, string) {
			body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", port))
			return err == nil && strings.TrimSpace(body) == "hello from talk", fmt.Sprint(body, err)
		})
	})
}

func TestNotReadyPodLeavesEndpoints(t *testing.T) {
	ns := namespace(t)
	c := busybox("app", "touch /tmp/ready; "+httpdScript)
	c.ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/tmp/ready"}}},
		PeriodSeconds: 1, FailureThreshold: 1,
	}
	createPod(t, ns, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{c}},
	})
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	if _, err := cl.client.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := waitPod(t, ns, "web", 60*time.Second, "ready", podReady)
	endpoints := func() (ready, notReady string) {
		ep, err := cl.client.CoreV1().Endpoints(ns).Get(context.Background(), "web", metav1.GetOptions{})
		if err != nil {
			return "", ""
		}
		for _, s := range ep.Subsets {
			for _, a := range s.Addresses {
				ready += a.IP
			}
			for _, a := range s.NotReadyAddresses {
				notReady += a.IP
			}
		}
		return ready, notReady
	}
	eventually(t, 30*time.Second, "pod IP in the service's ready endpoints", func() (bool, string) {
		r, n := endpoints()
		return r == pod.Status.PodIP, "ready " + r + " notReady " + n
	})
	kubectl(t, "-n", ns, "exec", "web", "--", "rm", "/tmp/ready")
	eventually(t, 30*time.Second, "pod IP moved to not-ready endpoints", func() (bool, string) {
		r, n := endpoints()
		return r == "" && n == pod.Status.PodIP, "ready " + r + " notReady " + n
	})
	if p := waitPod(t, ns, "web", 10*time.Second, "not ready", func(p *corev1.Pod) bool { return !podReady(p) }); p.Status.Phase != corev1.PodRunning {
		t.Errorf("phase %s, want Running", p.Status.Phase)
	}
}
