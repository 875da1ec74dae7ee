package kubelet

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/skiffhq/skiff/internal/kubelet/prober"
	"github.com/skiffhq/skiff/internal/runtime/sim"
)

// harness is a kubelet over a real simulated runtime (real gRPC, real CRI
// semantics) and a fake API client, driven sync by sync from the test.
type harness struct {
	t      *testing.T
	ctx    context.Context
	k      *Kubelet
	rt     runtimeapi.RuntimeServiceClient // the runtime, bypassing the recorder
	rec    *recordingRuntime
	client *fake.Clientset
	clock  *clocktesting.FakeClock
	vols   *recordingVolumes
}

var testNodeIP = net.IPv4(192, 0, 2, 10)

func newHarness(t *testing.T) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	clk := clocktesting.NewFakeClock(time.Unix(1_700_000_000, 0))
	conn, err := sim.New(sim.Config{Clock: clk, Logger: log}).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	rec := &recordingRuntime{RuntimeServiceClient: rt}
	client := fake.NewClientset()
	vols := &recordingVolumes{}
	k, err := New(Config{
		NodeName: "node-1", NodeIP: testNodeIP,
		Client: client, Informers: informers.NewSharedInformerFactory(client, 0),
		Runtime: rec, Images: runtimeapi.NewImageServiceClient(conn),
		RootDir: t.TempDir(), Volumes: vols, Machine: fixedMachine{"4", "8Gi"},
		// A cgroup root no host has, so that cleanup touches nothing real.
		CgroupRoot: "/skiff-kubelet-test-" + strconv.Itoa(int(time.Now().UnixNano())),
		Recorder:   &record.FakeRecorder{}, Clock: clk, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	k.setupInformers(ctx)
	k.probes = prober.NewManager(prober.Config{Runtime: rt, Clock: clk, Logger: log})
	t.Cleanup(k.probes.Stop)
	return &harness{t: t, ctx: ctx, k: k, rt: rt, rec: rec, client: client, clock: clk, vols: vols}
}

// testPod is a pod bound to the harness node with one container per name.
func testPod(name string, policy corev1.RestartPolicy, containers ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), ResourceVersion: "1"},
		Spec:       corev1.PodSpec{NodeName: "node-1", RestartPolicy: policy},
	}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "example.com/app:1", ImagePullPolicy: corev1.PullIfNotPresent})
	}
	return p
}

// create stores the pod in the fake API server and the kubelet's lister.
func (h *harness) create(p *corev1.Pod) {
	h.t.Helper()
	if _, err := h.client.CoreV1().Pods(p.Namespace).Create(h.ctx, p, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
	if err := h.k.podInf.GetIndexer().Add(p); err != nil {
		h.t.Fatal(err)
	}
}

// apiPod is the pod as the fake API server has it.
func (h *harness) apiPod(p *corev1.Pod) *corev1.Pod {
	h.t.Helper()
	got, err := h.client.CoreV1().Pods(p.Namespace).Get(h.ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return got
}

// state is what runs for the pod.
func (h *harness) state(p *corev1.Pod) *podState {
	h.t.Helper()
	st, err := h.k.podState(h.ctx, p.UID)
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

// exit ends a running container: code 0 (a clean exit) or 137 (killed).
func (h *harness) exit(id string, code int32) {
	h.t.Helper()
	timeout := int64(0)
	if code == 0 {
		timeout = 1 // the simulated process exits 0 on SIGTERM
	}
	if _, err := h.rt.StopContainer(h.ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: timeout}); err != nil {
		h.t.Fatal(err)
	}
}

// recordingRuntime passes calls through to the runtime, noting some.
type recordingRuntime struct {
	runtimeapi.RuntimeServiceClient
	mu    sync.Mutex
	calls []string
}

func (r *recordingRuntime) note(call string) {
	r.mu.Lock()
	r.calls = append(r.calls, call)
	r.mu.Unlock()
}

func (r *recordingRuntime) called(call string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.calls, call)
}

func (r *recordingRuntime) StopPodSandbox(ctx context.Context, in *runtimeapi.StopPodSandboxRequest, opts ...grpc.CallOption) (*runtimeapi.StopPodSandboxResponse, error) {
	r.note("StopPodSandbox " + in.PodSandboxId)
	return r.RuntimeServiceClient.StopPodSandbox(ctx, in, opts...)
}

func (r *recordingRuntime) StopContainer(ctx context.Context, in *runtimeapi.StopContainerRequest, opts ...grpc.CallOption) (*runtimeapi.StopContainerResponse, error) {
	r.note("StopContainer " + strconv.FormatInt(in.Timeout, 10))
	return r.RuntimeServiceClient.StopContainer(ctx, in, opts...)
}

func (r *recordingRuntime) count(call string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		if c == call {
			n++
		}
	}
	return n
}

func (r *recordingRuntime) RunPodSandbox(ctx context.Context, in *runtimeapi.RunPodSandboxRequest, opts ...grpc.CallOption) (*runtimeapi.RunPodSandboxResponse, error) {
	r.note("RunPodSandbox")
	return r.RuntimeServiceClient.RunPodSandbox(ctx, in, opts...)
}

// recordingVolumes is a volume manager with no volumes that notes
// teardowns.
type recordingVolumes struct {
	mu       sync.Mutex
	tornDown []types.UID
}

func (v *recordingVolumes) Setup(context.Context, *corev1.Pod) (map[string]string, error) {
	return map[string]string{}, nil
}

func (v *recordingVolumes) Teardown(uid types.UID) error {
	v.mu.Lock()
	v.tornDown = append(v.tornDown, uid)
	v.mu.Unlock()
	return nil
}

// failFirstStatusUpdate makes the first status update of a pod fail with
// a conflict, after running change on the stored pod, as if another
// writer had updated it in between.
func failFirstStatusUpdate(client *fake.Clientset, change func(*corev1.Pod)) {
	var once sync.Once
	client.PrependReactor("update", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "status" {
			return false, nil, nil
		}
		handled := false
		var err error
		once.Do(func() {
			handled = true
			obj := a.(k8stesting.UpdateAction).GetObject().(*corev1.Pod)
			cur, gerr := client.Tracker().Get(corev1.SchemeGroupVersion.WithResource("pods"), obj.Namespace, obj.Name)
			if gerr != nil {
				err = gerr
				return
			}
			p := cur.(*corev1.Pod).DeepCopy()
			change(p)
			if uerr := client.Tracker().Update(corev1.SchemeGroupVersion.WithResource("pods"), p, p.Namespace); uerr != nil {
				err = uerr
				return
			}
			err = conflict(obj)
		})
		return handled, nil, err
	})
}

func conflict(p *corev1.Pod) error {
	return apierrors.NewConflict(corev1.Resource("pods"), p.Name, errors.New("the object has been modified"))
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}
