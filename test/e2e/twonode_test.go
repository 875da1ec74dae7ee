package e2e

import (
	"context"
	"fmt"
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
	"k8s.io/utils/ptr"

	"github.com/skiffhq/skiff/test/e2eutil"
)

// The second host is a network namespace joined to this one by a veth
// pair: the server is reached at secondHostGateway, the agent's node
// address is secondHostIP.
const (
	secondHostNetns   = "skiff-e2e-n2"
	secondHostGateway = "10.99.0.1"
	secondHostIP      = "10.99.0.2"
	secondNodeName    = "e2e-node-2"
	// hostServerPort is where a hostNetwork pod on the second host serves.
	hostServerPort = "18080"
)

// addrCGI prefixes httpdScript: it adds /cgi-bin/addr, which answers with
// the client's address as the server sees it.
const addrCGI = `mkdir -p /www/cgi-bin && printf '#!/bin/sh\necho Content-Type: text/plain\necho\necho "$REMOTE_ADDR"\n' > /www/cgi-bin/addr && chmod +x /www/cgi-bin/addr && `

// makeSecondHost makes the second host's network namespace, joined to
// this one by a veth pair whose host end is the first node's address, as
// two machines on one network would be.
func makeSecondHost() error {
	removeSecondHost()
	for _, args := range [][]string{
		{"ip", "netns", "add", secondHostNetns},
		{"ip", "link", "add", "skiff-e2e-h", "type", "veth", "peer", "name", "eth0", "netns", secondHostNetns},
		{"ip", "addr", "add", secondHostGateway + "/24", "dev", "skiff-e2e-h"},
		{"ip", "link", "set", "skiff-e2e-h", "up"},
		{"ip", "netns", "exec", secondHostNetns, "ip", "addr", "add", secondHostIP + "/24", "dev", "eth0"},
		{"ip", "netns", "exec", secondHostNetns, "ip", "link", "set", "eth0", "up"},
		{"ip", "netns", "exec", secondHostNetns, "ip", "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			removeSecondHost()
			return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

func removeSecondHost() {
	_ = exec.Command("ip", "link", "del", "skiff-e2e-h").Run()
	_ = exec.Command("ip", "netns", "del", secondHostNetns).Run()
}

func TestPodsOnTwoNodesReachEachOther(t *testing.T) {
	ns := namespace(t)
	token, err := os.ReadFile(filepath.Join(cl.dir, "node-token"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	registryHost, _, _ := strings.Cut(cl.image, "/")
	// The agent pulls from the test registry on this host's loopback,
	// which it cannot reach from its namespace: it goes through a mirror
	// address instead.
	// nsenter, not `ip netns exec`: the latter also makes a mount
	// namespace with a fresh /sys, hiding the cgroup mounts runc needs.
	agent := exec.Command("nsenter", "--net=/run/netns/"+secondHostNetns, cl.bin, "agent",
		"--server", "https://"+secondHostGateway+":"+strconv.Itoa(cl.ports["https"]),
		"--token", strings.TrimSpace(string(token)),
		"--data-dir", dir, "--node-name", secondNodeName, "--node-ip", secondHostIP,
		"--kubelet-port", strconv.Itoa(cl.ports["kubelet"]),
		"--registry-mirror", registryHost+"=http://"+secondHostGateway+":"+registryPort(),
		"--insecure-registry", registryHost,
	)
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	agent.Stdout, agent.Stderr = logf, logf
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t.Cleanup(func() {
		// Remove the pods while the agent still runs, so it tears their
		// containers down; then stop it and forget the node.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, name := range []string{"server", "client", "hostsrv"} {
			_ = cl.client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)})
		}
		_ = cl.waitFor(ctx, "pods of the two-node test removed", func(ctx context.Context) (bool, error) {
			pods, err := cl.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			return err == nil && len(pods.Items) == 0, nil
		})
		_ = agent.Process.Signal(syscall.SIGTERM)
		_ = agent.Wait()
		logf.Close()
		if t.Failed() {
			t.Logf("--- second agent's log (tail) ---\n%s", tail(filepath.Join(dir, "agent.log")))
			out, _ := kubectlErr(t, nil, "-n", ns, "get", "events")
			t.Logf("--- events ---\n%s", out)
		}
		_ = cl.client.CoreV1().Nodes().Delete(ctx, secondNodeName, metav1.DeleteOptions{})
	})
	eventually(t, 90*time.Second, "second node Ready", func() (bool, string) {
		n, err := cl.client.CoreV1().Nodes().Get(ctx, secondNodeName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error() + "\n" + tail(filepath.Join(dir, "agent.log"))
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && n.Spec.PodCIDR != "" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("conditions %+v", n.Status.Conditions)
	})

	server := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "server"},
		Spec:       corev1.PodSpec{NodeName: secondNodeName, Containers: []corev1.Container{busybox("httpd", addrCGI+httpdScript)}},
	}
	// A server on the second host itself: outside the pod network.
	hostServer := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hostsrv"},
		Spec: corev1.PodSpec{NodeName: secondNodeName, HostNetwork: true,
			Containers: []corev1.Container{busybox("httpd", addrCGI+strings.Replace(httpdScript, "-p 8080", "-p "+hostServerPort, 1))}},
	}
	client := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "client"},
		Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{busybox("c", "exec sleep 3600")}},
	}
	createPod(t, ns, server)
	createPod(t, ns, client)
	createPod(t, ns, hostServer)
	running := func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" }
	srv := waitPod(t, ns, "server", 90*time.Second, "running on the second node", running)
	cli := waitPod(t, ns, "client", 60*time.Second, "running on the first node", running)
	if srv.Status.HostIP != secondHostIP {
		t.Errorf("server hostIP %s, want %s", srv.Status.HostIP, secondHostIP)
	}
	if srv.Status.PodIP[:7] == cli.Status.PodIP[:7] && srv.Status.PodIP == cli.Status.PodIP {
		t.Fatalf("both pods have IP %s", srv.Status.PodIP)
	}
	url := "http://" + srv.Status.PodIP + ":8080/"
	eventually(t, 30*time.Second, "client pod reaching the server pod by pod IP", func() (bool, string) {
		out, err := kubectlErr(t, nil, "-n", ns, "exec", "client", "--", "timeout", "3", "wget", "-qO-", url)
		return err == nil && strings.TrimSpace(out) == "hello from server", out
	})
	// No NAT between pods: the server sees the client pod's own address.
	// Leaving the pod network, the client is masqueraded to the first
	// node's address on the link, so a host without routes to pod CIDRs
	// could answer.
	waitPod(t, ns, "hostsrv", 60*time.Second, "running on the second host's network", running)
	for _, tc := range []struct{ what, url, want string }{
		{"a pod on another node", url + "cgi-bin/addr", cli.Status.PodIP},
		{"a host outside the pod network", "http://" + secondHostIP + ":" + hostServerPort + "/cgi-bin/addr", secondHostGateway},
	} {
		var got string
		eventually(t, 30*time.Second, "client pod reaching "+tc.what, func() (bool, string) {
			out, err := kubectlErr(t, nil, "-n", ns, "exec", "client", "--", "timeout", "3", "wget", "-qO-", tc.url)
			// httpd listens on IPv6 too and writes IPv4 peers mapped:
			// "[::ffff:10.42.0.2]".
			got = strings.TrimPrefix(strings.Trim(strings.TrimSpace(out), "[]"), "::ffff:")
			return err == nil, out
		})
		if got != tc.want {
			t.Errorf("%s sees the client pod (%s) as %q, want %q", tc.what, cli.Status.PodIP, got, tc.want)
		}
	}
	// And back: exec on the second node goes through its own kubelet.
	out := kubectl(t, "-n", ns, "exec", "server", "--", "hostname")
	if strings.TrimSpace(out) != "server" {
		t.Errorf("exec on the second node: %q", out)
	}
}

func tail(path string) string { return e2eutil.Tail(path, 3000) }

// registryPort is the test registry's port.
func registryPort() string {
	_, port, _ := strings.Cut(strings.SplitN(cl.image, "/", 2)[0], ":")
	return port
}
