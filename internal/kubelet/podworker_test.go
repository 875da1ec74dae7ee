package kubelet

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"
)

// idleWorker registers a worker with no goroutine, so that tests see its
// wake-ups instead of syncs.
func idleWorker(k *Kubelet, uid types.UID) *podWorker {
	w := &podWorker{k: k, uid: uid, pod: &corev1.Pod{}, kick: make(chan struct{}, 1)}
	k.workersMu.Lock()
	k.workers[uid] = w
	k.workersMu.Unlock()
	return w
}

func woken(w *podWorker) bool {
	select {
	case <-w.kick:
		return true
	default:
		return false
	}
}

func TestWorkerRetire(t *testing.T) {
	tests := []struct {
		name        string
		pendingWake bool
		replaced    bool // another worker took the UID meanwhile
		wantRetired bool
		wantInMap   bool
	}{
		{"idle worker leaves", false, false, true, false},
		{"an update that arrived while finishing keeps it", true, false, false, true},
		{"a newer worker for the UID stays", false, true, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			w := idleWorker(h.k, "uid")
			if tt.pendingWake {
				h.k.dispatch(h.ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "uid"}}, false)
			}
			if tt.replaced {
				idleWorker(h.k, "uid")
			}
			if got := w.retire(); got != tt.wantRetired {
				t.Errorf("retire = %v, want %v", got, tt.wantRetired)
			}
			if _, ok := h.k.workers["uid"]; ok != tt.wantInMap {
				t.Errorf("worker registered = %v, want %v", ok, tt.wantInMap)
			}
		})
	}
}

func TestDispatchDeletedUnknownPod(t *testing.T) {
	h := newHarness(t)
	h.k.dispatch(h.ctx, testPod("never-seen", corev1.RestartPolicyAlways, "app"), true)
	if n := len(h.k.workers); n != 0 {
		t.Errorf("%d workers started for a pod deleted before it was seen", n)
	}
}

// stuckImages never finishes a pull until its context ends.
type stuckImages struct {
	runtimeapi.ImageServiceClient
	once    sync.Once
	started chan struct{}
}

func (s *stuckImages) PullImage(ctx context.Context, _ *runtimeapi.PullImageRequest, _ ...grpc.CallOption) (*runtimeapi.PullImageResponse, error) {
	s.once.Do(func() { close(s.started) })
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestDeletionAbortsStuckSync(t *testing.T) {
	tests := []struct {
		name   string
		delete func(h *harness, p *corev1.Pod)
	}{
		{"graceful deletion", func(h *harness, p *corev1.Pod) {
			d := p.DeepCopy()
			d.DeletionTimestamp = ptr.To(metav1.NewTime(h.clock.Now()))
			d.DeletionGracePeriodSeconds = ptr.To[int64](30)
			h.k.dispatch(h.ctx, d, false)
		}},
		{"forced deletion", func(h *harness, p *corev1.Pod) {
			h.k.dispatch(h.ctx, p, true)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			images := &stuckImages{ImageServiceClient: h.k.cfg.Images, started: make(chan struct{})}
			h.k.cfg.Images = images
			events := record.NewFakeRecorder(100)
			h.k.recorder = events
			p := testPod("stuck", corev1.RestartPolicyAlways, "app")
			h.create(p)
			h.k.dispatch(h.ctx, p, false)
			select {
			case <-images.started:
			case <-time.After(5 * time.Second):
				t.Fatal("the worker never pulled")
			}
			tt.delete(h, p)
			eventually(t, 5*time.Second, func() bool {
				h.k.workersMu.Lock()
				defer h.k.workersMu.Unlock()
				return len(h.k.workers) == 0
			}, "the worker to clean up and end")
			h.k.wg.Wait()
			if st := h.state(p); len(st.sandboxes) != 0 {
				t.Errorf("%d sandboxes left", len(st.sandboxes))
			}
			close(events.Events)
			for e := range events.Events {
				if strings.Contains(e, "Failed") {
					t.Errorf("the aborted sync reported a failure: %s", e)
				}
			}
		})
	}
}
