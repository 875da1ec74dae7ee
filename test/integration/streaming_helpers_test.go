package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	kubeletserver "github.com/skiffhq/skiff/internal/kubelet/server"
	"github.com/skiffhq/skiff/internal/pki"
	"github.com/skiffhq/skiff/internal/runtime/sim"
	"github.com/skiffhq/skiff/internal/testutil"
)

// streamKubelet is a node for the streaming tests: the kubelet's HTTPS
// API in front of the simulated runtime, registered as a Node whose
// InternalIP and kubelet port lead the API server to it. Pods are added
// to the runtime and to the API by addPod, standing in for the kubelet
// core that would normally run them.
type streamKubelet struct {
	node    string
	runtime runtimeapi.RuntimeServiceClient
	logDir  string

	mu         sync.Mutex
	sandboxes  map[string]string                     // namespace/pod
	containers map[string]kubeletserver.ContainerRef // namespace/pod/container
}

func (k *streamKubelet) Container(ns, pod, ctr string) (kubeletserver.ContainerRef, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.sandboxes[ns+"/"+pod]; !ok {
		return kubeletserver.ContainerRef{}, kubeletserver.ErrPodNotFound
	}
	ref, ok := k.containers[ns+"/"+pod+"/"+ctr]
	if !ok {
		return kubeletserver.ContainerRef{}, kubeletserver.ErrContainerNotFound
	}
	return ref, nil
}

func (k *streamKubelet) PodSandbox(ns, pod string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	id, ok := k.sandboxes[ns+"/"+pod]
	if !ok {
		return "", kubeletserver.ErrPodNotFound
	}
	return id, nil
}

// startStreamKubelet starts a kubelet server named node on the loopback,
// with a serving certificate from the control plane's CA, and registers
// its Node.
func startStreamKubelet(t *testing.T, cp *testutil.ControlPlane, node string) *streamKubelet {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})

	streams := sim.NewStreamServer(log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = streams.Serve(ctx, ln) })
	<-streams.Ready()
	conn, err := sim.New(sim.Config{Streaming: streams, Logger: log}).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runtimeapi.NewImageServiceClient(conn).PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatal(err)
	}
	k := &streamKubelet{
		node: node, runtime: runtimeapi.NewRuntimeServiceClient(conn), logDir: t.TempDir(),
		sandboxes: map[string]string{}, containers: map[string]kubeletserver.ContainerRef{},
	}

	caPool, serving := kubeletServingCert(t, cp.DataDir)
	srv, err := kubeletserver.New(kubeletserver.Config{
		Addr: "127.0.0.1:0",
		TLS: &tls.Config{
			Certificates: []tls.Certificate{serving},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    caPool,
			MinVersion:   tls.VersionTLS12,
		},
		Pods: k, Runtime: k.runtime, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		if err := srv.Run(ctx); err != nil {
			t.Errorf("kubelet server: %v", err)
		}
	})
	<-srv.Ready()
	_, port, _ := net.SplitHostPort(srv.Addr())
	p, _ := strconv.Atoi(port)
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}
	n, err = cp.Client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "localhost"}, {Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(p)
	if _, err := cp.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return k
}

// kubeletServingCert issues a serving certificate for 127.0.0.1 from the
// CA in a control plane's data directory, as a node's agent would get
// one.
func kubeletServingCert(t *testing.T, dataDir string) (*x509.CertPool, tls.Certificate) {
	t.Helper()
	read := func(name string) *pem.Block {
		b, err := os.ReadFile(filepath.Join(dataDir, pki.TLSDirName, name))
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(b)
		if block == nil {
			t.Fatalf("%s: no PEM block", name)
		}
		return block
	}
	ca, err := x509.ParseCertificate(read(pki.CACertFile).Bytes)
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := x509.ParseECPrivateKey(read(pki.CAKeyFile).Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "kubelet"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// addPod runs pod's containers on the simulated runtime (each writes its
// start line to its log) and creates the pod, bound to this node. With
// previous, each container also has a previous instance whose log says
// "crashed".
func (k *streamKubelet) addPod(t *testing.T, cs kubernetes.Interface, ns string, pod *corev1.Pod, previous bool) {
	t.Helper()
	ctx := testCtx(t)
	sbCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: pod.Name, Namespace: ns, Uid: ns + "-" + pod.Name},
		LogDirectory: filepath.Join(k.logDir, ns+"_"+pod.Name),
	}
	sb, err := k.runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sbCfg})
	if err != nil {
		t.Fatal(err)
	}
	k.mu.Lock()
	k.sandboxes[ns+"/"+pod.Name] = sb.PodSandboxId
	k.mu.Unlock()
	for _, c := range pod.Spec.Containers {
		resp, err := k.runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
			PodSandboxId: sb.PodSandboxId, SandboxConfig: sbCfg,
			Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: c.Name},
				Image:    &runtimeapi.ImageSpec{Image: "busybox"},
				LogPath:  c.Name + "/1.log",
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
			t.Fatal(err)
		}
		ref := kubeletserver.ContainerRef{ID: resp.ContainerId, LogPath: filepath.Join(sbCfg.LogDirectory, c.Name, "1.log")}
		if previous {
			ref.PreviousID, ref.PreviousLogPath = "exited-"+c.Name, filepath.Join(sbCfg.LogDirectory, c.Name, "0.log")
			appendLog(t, ref.PreviousLogPath, "crashed")
		}
		k.mu.Lock()
		k.containers[ns+"/"+pod.Name+"/"+c.Name] = ref
		k.mu.Unlock()
	}
	pod = pod.DeepCopy()
	pod.Spec.NodeName = k.node
	pod, err = cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Report it running, as the kubelet core would: kubectl port-forward
	// refuses other pods.
	pod.Status.Phase = corev1.PodRunning
	if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// container returns the runtime container behind a pod's container.
func (k *streamKubelet) container(ns, pod, ctr string) kubeletserver.ContainerRef {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.containers[ns+"/"+pod+"/"+ctr]
}

// appendLog writes lines to a CRI log file as the runtime would.
func appendLog(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		if _, err := io.WriteString(f, fmt.Sprintf("%s stdout F %s\n", time.Now().UTC().Format(time.RFC3339Nano), l)); err != nil {
			t.Fatal(err)
		}
	}
}
