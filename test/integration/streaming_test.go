package integration

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffhq/skiff/internal/testutil"
)

// streamingCluster is a control plane with one streaming kubelet and, in
// a fresh namespace, pods "web" (one container, app), "restarted" (app
// with a previous instance), "multi" (containers app and b, init
// container init) and "pending" (not bound to a node).
func streamingCluster(t *testing.T) (*testutil.ControlPlane, *streamKubelet, string) {
	t.Helper()
	cp := startAPIOnly(t)
	k := startStreamKubelet(t, cp, "node-a")
	ns := newNamespace(t, cp.Client)
	k.addPod(t, cp.Client, ns, makePod("web").Obj(), false)
	k.addPod(t, cp.Client, ns, makePod("restarted").Obj(), true)
	multi := makePod("multi").Obj()
	multi.Spec.Containers = append(multi.Spec.Containers, corev1.Container{Name: "b", Image: "nginx"})
	multi.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox"}}
	k.addPod(t, cp.Client, ns, multi, false)
	if _, err := cp.Client.CoreV1().Pods(ns).Create(testCtx(t), makePod("pending").Obj(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return cp, k, ns
}

func TestPodLogs(t *testing.T) {
	cp, k, ns := streamingCluster(t)
	appendLog(t, k.container(ns, "web", "app").LogPath, "line 2", "line 3")
	c := newCLI(t, cp)

	t.Run("kubectl", func(t *testing.T) {
		c := c.in(t)
		tests := []struct {
			name string
			args []string
			want string
		}{
			{name: "logs", args: []string{"web"}, want: "simulated container app started\nline 2\nline 3\n"},
			{name: "tail", args: []string{"web", "--tail=2"}, want: "line 2\nline 3\n"},
			{name: "container flag", args: []string{"multi", "-c", "b"}, want: "simulated container b started\n"},
			{name: "previous", args: []string{"restarted", "--previous"}, want: "crashed\n"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if got := c.in(t).ok(append([]string{"logs", "-n", ns}, tt.args...)...); got != tt.want {
					t.Errorf("got %q, want %q", got, tt.want)
				}
			})
		}
		errs := []struct {
			name string
			args []string
			want string
		}{
			{name: "no previous instance", args: []string{"web", "--previous"},
				want: `Error from server (BadRequest): previous terminated container "app" in pod "web" not found`},
			// kubectl checks the name itself; the server's own check is
			// tested with client-go below.
			{name: "unknown container", args: []string{"web", "-c", "nope"},
				want: "container nope is not valid for pod web"},
			{name: "unbound pod", args: []string{"pending"},
				want: "Error from server (BadRequest): pod pending does not have a host assigned"},
		}
		for _, tt := range errs {
			t.Run(tt.name, func(t *testing.T) {
				wantContains(t, c.in(t).fails(append([]string{"logs", "-n", ns}, tt.args...)...), tt.want)
			})
		}
	})

	t.Run("kubectl follow", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
		defer cancel()
		cmd := c.in(t).command(ctx, "logs", "-n", ns, "-f", "restarted")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewReader(out)
		readLine := func(want string) {
			t.Helper()
			if got, err := lines.ReadString('\n'); err != nil || got != want {
				t.Fatalf("read %q, %v; want %q (stderr %s)", got, err, want, stderr.String())
			}
		}
		readLine("simulated container app started\n")
		ref := k.container(ns, "restarted", "app")
		appendLog(t, ref.LogPath, "appended while following")
		readLine("appended while following\n")
		// The container stops: kubectl's stream ends and it exits.
		if _, err := k.runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ref.ID, Timeout: 1}); err != nil {
			t.Fatal(err)
		}
		if rest, _ := io.ReadAll(lines); len(rest) != 0 {
			t.Errorf("after the container stopped: %q", rest)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("kubectl logs -f: %v (stderr %s)", err, stderr.String())
		}
	})

	t.Run("client-go", func(t *testing.T) {
		pods := cp.Client.CoreV1().Pods(ns)
		// "orphan" is bound to a node that does not exist, "stranded" to
		// one whose kubelet does not answer.
		downNode(t, cp, "down")
		for pod, node := range map[string]string{"orphan": "ghost", "stranded": "down"} {
			if _, err := pods.Create(testCtx(t), makePod(pod).Node(node).Obj(), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		tests := []struct {
			name   string
			pod    string
			opts   corev1.PodLogOptions
			code   int32
			reason metav1.StatusReason
			want   string
		}{
			{name: "container required", pod: "multi", code: 400, reason: metav1.StatusReasonBadRequest,
				want: "a container name must be specified for pod multi, choose one of: [app b] or one of the init containers: [init]"},
			{name: "unknown container", pod: "web", opts: corev1.PodLogOptions{Container: "nope"}, code: 400, reason: metav1.StatusReasonBadRequest,
				want: "container nope is not valid for pod web"},
			{name: "unbound", pod: "pending", code: 400, reason: metav1.StatusReasonBadRequest, want: "pod pending does not have a host assigned"},
			{name: "negative tail", pod: "web", opts: corev1.PodLogOptions{TailLines: ptr(int64(-1))}, code: 422, reason: metav1.StatusReasonInvalid,
				want: "tailLines: Invalid value: -1: must be greater than or equal to 0"},
			{name: "unknown pod", pod: "nope", code: 404, reason: metav1.StatusReasonNotFound, want: `pods "nope" not found`},
			{name: "unknown node", pod: "orphan", code: 404, reason: metav1.StatusReasonNotFound, want: `nodes "ghost" not found`},
			{name: "kubelet down", pod: "stranded", code: 500, reason: metav1.StatusReasonInternalError, want: "error dialing backend"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				// Stream, as kubectl does: DoRaw leaves error bodies undecoded.
				rc, err := pods.GetLogs(tt.pod, &tt.opts).Stream(testCtx(t))
				if err == nil {
					rc.Close()
				}
				st := wantStatusErr(t, err, tt.code, tt.reason)
				if !strings.Contains(st.Message, tt.want) {
					t.Errorf("message %q, want %q", st.Message, tt.want)
				}
			})
		}
		t.Run("options", func(t *testing.T) {
			b, err := pods.GetLogs("web", &corev1.PodLogOptions{Timestamps: true, TailLines: ptr(int64(1)), LimitBytes: ptr(int64(40))}).DoRaw(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			ts, rest, _ := strings.Cut(string(b), " ")
			if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || !strings.HasPrefix("line 3\n", rest) || len(b) > 40 {
				t.Errorf("got %q, want the last line with its timestamp, at most 40 bytes", b)
			}
		})
	})
}

func TestPodExec(t *testing.T) {
	cp, _, ns := streamingCluster(t)
	c := newCLI(t, cp)
	spdyOnly := c.in(t)
	spdyOnly.env = append(slices.Clone(c.env), "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false", "KUBECTL_PORT_FORWARD_WEBSOCKETS=false")
	clis := []struct {
		name string
		cli  *cli
	}{{"websocket", c}, {"spdy", spdyOnly}}

	for _, k := range clis {
		t.Run("kubectl over "+k.name, func(t *testing.T) {
			c := k.cli.in(t)
			t.Run("exec", func(t *testing.T) {
				// -v=4 logs the protocol: WebSocket must not have fallen
				// back to SPDY unnoticed.
				res := c.in(t).run("exec", "-v=4", "-n", ns, "web", "--", "echo", "hi")
				if res.code != 0 || res.stdout != "simulated exec: echo hi\n" {
					t.Errorf("kubectl exec: exit %d, stdout %q, stderr %s", res.code, res.stdout, res.stderr)
				}
				if ws := strings.Contains(res.stderr, `protocol="v5.channel.k8s.io"`); ws != (k.name == "websocket") {
					t.Errorf("kubectl exec over %s: v5 WebSocket negotiated = %v; stderr:\n%s", k.name, ws, res.stderr)
				}
			})
			t.Run("exec with stdin", func(t *testing.T) {
				if got := c.in(t).ok("exec", "-i", "-n", ns, "multi", "-c", "b", "--", "cat"); got != "simulated exec: cat\n" {
					t.Errorf("got %q", got)
				}
			})
			t.Run("cp to the pod", func(t *testing.T) {
				// A megabyte of stdin through exec: the simulated tar reads
				// it to its end, so the copy finishes only if all of it and
				// its end arrive.
				c := c.in(t)
				c.file("big.bin", strings.Repeat("0123456789abcdef", 1<<16))
				if res := c.run("cp", "big.bin", ns+"/web:/tmp/big.bin"); res.code != 0 {
					t.Errorf("kubectl cp: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
				}
			})
			t.Run("exec into unknown container", func(t *testing.T) {
				wantContains(t, c.in(t).fails("exec", "-n", ns, "web", "-c", "nope", "--", "ls"), "nope")
			})
			t.Run("attach", func(t *testing.T) {
				// kubectl warns on stderr that sessions are recorded.
				res := c.in(t).run("attach", "-n", ns, "web")
				if res.code != 0 || res.stdout != "simulated container app started\n" {
					t.Errorf("kubectl attach: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
				}
			})
			t.Run("port-forward", func(t *testing.T) {
				pf := c.in(t).start("port-forward", "-n", ns, "pod/web", "--address", "127.0.0.1", ":8080")
				line := pf.waitLine(t, "Forwarding", "from")
				addr := strings.Fields(line)[2] // Forwarding from 127.0.0.1:PORT -> 8080
				for i := range 2 {
					conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
					if err != nil {
						t.Fatal(err)
					}
					_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
					msg := strings.Repeat("ping ", i+1) + "\n"
					if _, err := io.WriteString(conn, msg); err != nil {
						t.Fatal(err)
					}
					buf := make([]byte, len(msg))
					if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg {
						t.Errorf("echo %q, %v; want %q", buf, err, msg)
					}
					conn.Close()
				}
			})
		})
	}

	t.Run("client-go", func(t *testing.T) {
		executors := map[string]func(pod string, opts *corev1.PodExecOptions) (remotecommand.Executor, error){
			"spdy": func(pod string, opts *corev1.PodExecOptions) (remotecommand.Executor, error) {
				u := cp.Client.CoreV1().RESTClient().Post().Namespace(ns).Resource("pods").Name(pod).SubResource("exec").VersionedParams(opts, scheme.ParameterCodec).URL()
				return remotecommand.NewSPDYExecutor(cp.Config, http.MethodPost, u)
			},
			"websocket": func(pod string, opts *corev1.PodExecOptions) (remotecommand.Executor, error) {
				u := cp.Client.CoreV1().RESTClient().Get().Namespace(ns).Resource("pods").Name(pod).SubResource("exec").VersionedParams(opts, scheme.ParameterCodec).URL()
				return remotecommand.NewWebSocketExecutor(cp.Config, http.MethodGet, u.String())
			},
		}
		for name, newExec := range executors {
			t.Run(name, func(t *testing.T) {
				e, err := newExec("web", &corev1.PodExecOptions{Command: []string{"date"}, Stdout: true, Stderr: true})
				if err != nil {
					t.Fatal(err)
				}
				var stdout bytes.Buffer
				if err := e.StreamWithContext(testCtx(t), remotecommand.StreamOptions{Stdout: &stdout, Stderr: io.Discard}); err != nil {
					t.Fatal(err)
				}
				if stdout.String() != "simulated exec: date\n" {
					t.Errorf("stdout %q", stdout.String())
				}
				e, err = newExec("multi", &corev1.PodExecOptions{Command: []string{"date"}, Stdout: true})
				if err != nil {
					t.Fatal(err)
				}
				err = e.StreamWithContext(testCtx(t), remotecommand.StreamOptions{Stdout: io.Discard})
				if want := "a container name must be specified for pod multi, choose one of: [app b]"; err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("exec without a container in a two-container pod: %v, want %q", err, want)
				}
			})
		}
	})
}

// TestStreamingDiscovery checks that discovery lists the connect
// subresources with upstream's kinds and verbs.
func TestStreamingDiscovery(t *testing.T) {
	cp := startAPIOnly(t)
	list, err := cp.Client.Discovery().ServerResourcesForGroupVersion("v1")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		kind  string
		verbs []string
	}{
		"pods/log":         {"Pod", []string{"get"}},
		"pods/exec":        {"PodExecOptions", []string{"create", "get"}},
		"pods/attach":      {"PodAttachOptions", []string{"create", "get"}},
		"pods/portforward": {"PodPortForwardOptions", []string{"create", "get"}},
	}
	for _, r := range list.APIResources {
		w, ok := want[r.Name]
		if !ok {
			continue
		}
		delete(want, r.Name)
		if r.Kind != w.kind || !slices.Equal(r.Verbs, w.verbs) || !r.Namespaced {
			t.Errorf("%s: kind %s verbs %v namespaced %v, want %s %v true", r.Name, r.Kind, r.Verbs, r.Namespaced, w.kind, w.verbs)
		}
	}
	for name := range want {
		t.Errorf("discovery lacks %s", name)
	}
}

// downNode registers a Node whose kubelet port has nothing listening.
func downNode(t *testing.T, cp *testutil.ControlPlane, name string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	n, err := cp.Client.CoreV1().Nodes().Create(testCtx(t), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(port)
	if _, err := cp.Client.CoreV1().Nodes().UpdateStatus(testCtx(t), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
