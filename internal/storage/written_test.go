package storage

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// TestWatchGetsPrivateCopyOfWrite checks that a watch handed the object its
// store decoded after a write gets an equal object of its own: the caller
// of Create or GuaranteedUpdate may modify what it got back.
func TestWatchGetsPrivateCopyOfWrite(t *testing.T) {
	t.Parallel()
	s, _ := newPodStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := s.Watch(ctx, podPrefix, WatchOptions{ResourceVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	created := mustCreate(t, s, makePod("ns", "a").label("x", "1").obj())
	updated := mustUpdate(t, s, podKey(created), func(p *corev1.Pod) { p.Labels["x"] = "2" })
	want := []*corev1.Pod{created.DeepCopy(), updated.DeepCopy()}
	// What a caller may do to its result must not reach the watch.
	created.Labels["x"], updated.Labels["x"] = "changed", "changed"
	for i, ev := range collect(t, w, 2, false) {
		got := ev.Object.(*corev1.Pod)
		if !equality.Semantic.DeepEqual(got, want[i]) {
			t.Errorf("event %d: got %v, want %v", i, got, want[i])
		}
	}
	if obj := s.written.take(podKey(created), rvOf(t, updated)); obj != nil {
		t.Error("a written object was handed out twice")
	}
}
