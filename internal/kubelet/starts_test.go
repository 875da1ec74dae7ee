package kubelet

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// gatedRuntime holds every RunPodSandbox until open is closed, counting
// how many are in flight at once.
type gatedRuntime struct {
	runtimeapi.RuntimeServiceClient
	open     chan struct{}
	mu       sync.Mutex
	inFlight int
	most     int
	arrived  int
}

func (g *gatedRuntime) RunPodSandbox(ctx context.Context, in *runtimeapi.RunPodSandboxRequest, opts ...grpc.CallOption) (*runtimeapi.RunPodSandboxResponse, error) {
	g.mu.Lock()
	g.inFlight++
	g.arrived++
	g.most = max(g.most, g.inFlight)
	g.mu.Unlock()
	<-g.open
	defer func() {
		g.mu.Lock()
		g.inFlight--
		g.mu.Unlock()
	}()
	return g.RuntimeServiceClient.RunPodSandbox(ctx, in, opts...)
}

func (g *gatedRuntime) snapshot() (arrived, most int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.arrived, g.most
}

func TestPodStartsAreBounded(t *testing.T) {
	const pods, slots = 6, 2
	h := newHarness(t)
	gate := &gatedRuntime{RuntimeServiceClient: h.k.cfg.Runtime, open: make(chan struct{})}
	h.k.cfg.Runtime = gate
	h.k.starts = make(chan struct{}, slots)

	var wg sync.WaitGroup
	for i := range pods {
		p := testPod("p"+strconv.Itoa(i), corev1.RestartPolicyAlways, "app")
		h.create(p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.k.syncPod(h.ctx, p, false)
		}()
	}
	eventually(t, 10*time.Second, func() bool { a, _ := gate.snapshot(); return a >= slots }, "the first pods reaching the runtime")
	// Unbounded, every pod would now be inside RunPodSandbox; give them
	// the chance before checking that only the slots' worth did.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if a, _ := gate.snapshot(); a > slots {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if a, _ := gate.snapshot(); a != slots {
		t.Fatalf("%d sandboxes started at once, want %d", a, slots)
	}
	close(gate.open)
	wg.Wait()
	if a, most := gate.snapshot(); a != pods || most > slots {
		t.Errorf("%d sandboxes started, at most %d at once; want %d, at most %d", a, most, pods, slots)
	}
	for i := range pods {
		p := h.apiPod(testPod("p"+strconv.Itoa(i), corev1.RestartPolicyAlways, "app"))
		if p.Status.Phase != corev1.PodRunning {
			t.Errorf("%s: phase %s, want Running", p.Name, p.Status.Phase)
		}
	}
}
