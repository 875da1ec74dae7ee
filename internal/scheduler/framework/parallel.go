package framework

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
)

// Parallelizer spreads per-node work over goroutines.
type Parallelizer struct {
	workers int
}

// NewParallelizer uses workers goroutines; 0 means GOMAXPROCS, at most 16.
func NewParallelizer(workers int) Parallelizer {
	if workers <= 0 {
		workers = min(runtime.GOMAXPROCS(0), 16)
	}
	return Parallelizer{workers: workers}
}

// Until calls fn(i) for every i in [0, n) and returns when all are done
// or ctx ended. Work is handed out in chunks so that cheap per-node calls
// do not pay a channel operation each.
func (p Parallelizer) Until(ctx context.Context, n int, fn func(i int)) {
	if n == 0 {
		return
	}
	workers := max(min(p.workers, n), 1)
	if workers == 1 || n < 8 {
		for i := 0; i < n && ctx.Err() == nil; i++ {
			fn(i)
		}
		return
	}
	chunk := max(n/(workers*4), 1)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				start := int(next.Add(int64(chunk))) - chunk
				if start >= n {
					return
				}
				for i := start; i < min(start+chunk, n); i++ {
					fn(i)
				}
			}
		}()
	}
	wg.Wait()
}
