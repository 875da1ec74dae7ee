package sim

import (
	"context"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// footprint is what one connected, idle runtime costs.
type footprint struct {
	heapBytes, stackBytes, goroutines float64
}

// measure starts n runtimes, each connected in-process and having answered
// one call on each service, as a hollow kubelet's would at start, and
// returns their cost per runtime. Everything is gone when it returns.
func measure(tb testing.TB, n int) footprint {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	goroutines0 := runtime.NumGoroutine()
	defer func() {
		cancel()
		deadline := time.Now().Add(30 * time.Second)
		for runtime.NumGoroutine() > goroutines0 {
			if time.Now().After(deadline) {
				tb.Errorf("%d goroutines left after stopping %d runtimes (%d before)", runtime.NumGoroutine(), n, goroutines0)
				return
			}
			time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
		}
	}()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	logger := slog.New(slog.DiscardHandler)
	conns := make([]*grpc.ClientConn, n)
	for i := range conns {
		conn, err := New(Config{Logger: logger}).Connect(ctx)
		if err != nil {
			tb.Fatalf("Connect: %v", err)
		}
		if _, err := runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
			tb.Fatalf("Version: %v", err)
		}
		if _, err := runtimeapi.NewImageServiceClient(conn).ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{}); err != nil {
			tb.Fatalf("ImageFsInfo: %v", err)
		}
		conns[i] = conn
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(conns)
	return footprint{
		heapBytes:  (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(n),
		stackBytes: (float64(after.StackInuse) - float64(before.StackInuse)) / float64(n),
		goroutines: float64(runtime.NumGoroutine()-goroutines0) / float64(n),
	}
}

// BenchmarkRuntimeMemory reports what each of 1,000 connected runtimes
// costs, the scale of `skiff agent --simulate 1000`.
func BenchmarkRuntimeMemory(b *testing.B) {
	const n = 1000
	var f footprint
	for b.Loop() {
		f = measure(b, n)
	}
	b.ReportMetric(f.heapBytes, "heap-bytes/runtime")
	b.ReportMetric(f.stackBytes, "stack-bytes/runtime")
	b.ReportMetric(f.goroutines, "goroutines/runtime")
}

// TestRuntimeMemory keeps the per-runtime cost within its share of the
// budget: 1,000 runtimes and their kubelets must fit in 2 GiB, and a
// runtime may take an eighth of that.
func TestRuntimeMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts hundreds of runtimes")
	}
	const budget = 256 << 10
	f := measure(t, 200)
	t.Logf("per runtime: %.0f heap bytes, %.0f stack bytes, %.1f goroutines", f.heapBytes, f.stackBytes, f.goroutines)
	if total := f.heapBytes + f.stackBytes; total > budget {
		t.Errorf("a connected runtime costs %.0f bytes, over the %d budget", total, budget)
	}
}
