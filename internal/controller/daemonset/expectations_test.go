package daemonset

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

func TestExpectations(t *testing.T) {
	t.Parallel()
	mk := func(name, uid string, deleting bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("u-" + uid)}}
		if deleting {
			now := metav1.NewTime(t0)
			p.DeletionTimestamp = &now
		}
		return p
	}
	tests := []struct {
		name    string
		cached  []*corev1.Pod
		elapsed time.Duration
		want    bool
	}{
		{"nothing seen yet", []*corev1.Pod{mk("old", "1", false)}, 0, false},
		{"create seen, delete not", []*corev1.Pod{mk("old", "1", false), mk("new", "2", false)}, 0, false},
		{"both seen: deleted pod terminating", []*corev1.Pod{mk("old", "1", true), mk("new", "2", false)}, 0, true},
		{"both seen: deleted pod gone", []*corev1.Pod{mk("new", "2", false)}, 0, true},
		{"name reused by another pod", []*corev1.Pod{mk("old", "9", false), mk("new", "2", false)}, 0, true},
		{"expired", nil, expectationTTL, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			now := t0
			e := newExpectations(func() time.Time { return now })
			idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
			for _, p := range tt.cached {
				if err := idx.Add(p); err != nil {
					t.Fatal(err)
				}
			}
			e.expect("ns/ds", "ns", []string{"new"}, []*corev1.Pod{mk("old", "1", false)})
			now = now.Add(tt.elapsed)
			if _, ok := e.satisfied("ns/ds", corelisters.NewPodLister(idx)); ok != tt.want {
				t.Errorf("satisfied = %v, want %v", ok, tt.want)
			}
		})
	}
}
