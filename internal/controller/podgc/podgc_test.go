package podgc

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/skiffhq/skiff/internal/controller"
)

var base = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// pod builds a test pod created age before base.
func pod(name, node string, phase corev1.PodPhase, age time.Duration, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name),
			CreationTimestamp: metav1.NewTime(base.Add(-age))},
		Spec:   corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Phase: phase},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func node(name string) *corev1.Node { return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}} }

func terminating(p *corev1.Pod) {
	p.DeletionTimestamp = &metav1.Time{Time: base}
	p.Finalizers = []string{"example.com/hold"}
}

func TestSync(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		threshold int
		objs      []runtime.Object
		// elapsed is how long after the first pass the second runs.
		elapsed     time.Duration
		wantDeleted []string
		wantFailed  []string
	}{
		{
			name:      "terminated beyond threshold, oldest and evicted first",
			threshold: 2,
			objs: []runtime.Object{node("n1"),
				pod("old", "n1", corev1.PodSucceeded, 3*time.Hour),
				pod("older", "n1", corev1.PodFailed, 4*time.Hour),
				pod("young", "n1", corev1.PodFailed, time.Hour),
				pod("evicted", "n1", corev1.PodFailed, time.Minute, func(p *corev1.Pod) { p.Status.Reason = "Evicted" }),
				pod("running", "n1", corev1.PodRunning, 9*time.Hour)},
			wantDeleted: []string{"evicted", "older"},
		},
		{
			name: "threshold not reached", threshold: 5,
			objs: []runtime.Object{node("n1"), pod("a", "n1", corev1.PodSucceeded, time.Hour), pod("b", "n1", corev1.PodFailed, time.Hour)},
		},
		{
			name: "negative threshold keeps every terminated pod", threshold: -1,
			objs: []runtime.Object{node("n1"), pod("a", "n1", corev1.PodSucceeded, time.Hour)},
		},
		{
			name: "missing node within quarantine", threshold: 10, elapsed: 10 * time.Second,
			objs: []runtime.Object{pod("lost", "gone", corev1.PodRunning, time.Hour)},
		},
		{
			name: "missing node past quarantine", threshold: 10, elapsed: DefaultQuarantine,
			objs: []runtime.Object{node("n1"),
				pod("lost", "gone", corev1.PodRunning, time.Hour),
				pod("lost-done", "gone", corev1.PodSucceeded, time.Hour),
				pod("fine", "n1", corev1.PodRunning, time.Hour)},
			wantDeleted: []string{"lost", "lost-done"},
			wantFailed:  []string{"lost"},
		},
		{
			name: "unscheduled terminating pod", threshold: 10,
			objs: []runtime.Object{node("n1"),
				pod("never-bound", "", corev1.PodPending, time.Hour, terminating),
				pod("bound-terminating", "n1", corev1.PodRunning, time.Hour, terminating),
				pod("pending", "", corev1.PodPending, time.Hour)},
			wantDeleted: []string{"never-bound"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			client := fake.NewClientset(tc.objs...)
			now := base
			inf := informers.NewSharedInformerFactory(client, 0)
			c, err := New(&controller.Context{Client: client, Informers: inf}, Config{
				TerminatedPodThreshold: tc.threshold, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			defer c.queue.ShutDown()
			inf.Start(ctx.Done())
			if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
				t.Fatal("caches not synced")
			}
			if err := c.sync(ctx); err != nil {
				t.Fatalf("first pass: %v", err)
			}
			now = now.Add(tc.elapsed)
			if err := c.sync(ctx); err != nil {
				t.Fatalf("second pass: %v", err)
			}
			var deleted, failed []string
			for _, a := range client.Actions() {
				switch a := a.(type) {
				case k8stesting.DeleteAction:
					deleted = append(deleted, a.GetName())
				case k8stesting.UpdateAction:
					if p, ok := a.GetObject().(*corev1.Pod); ok && a.GetSubresource() == "status" && p.Status.Phase == corev1.PodFailed {
						failed = append(failed, p.Name)
					}
				}
			}
			// The fake's informer may not yet show a deletion when the
			// second pass runs: count each pod once.
			slices.Sort(deleted)
			deleted = slices.Compact(deleted)
			if !slices.Equal(deleted, tc.wantDeleted) {
				t.Errorf("deleted %v, want %v", deleted, tc.wantDeleted)
			}
			if !slices.Equal(failed, tc.wantFailed) {
				t.Errorf("marked failed %v, want %v", failed, tc.wantFailed)
			}
		})
	}
}
