package nodelifecycle

import (
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/skiffhq/skiff/internal/controller"
)

func TestEvictAt(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	added := metav1.NewTime(now.Add(-100 * time.Second))
	unreachable := []corev1.Taint{{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute, TimeAdded: &added}}
	tol := func(secs *int64) []corev1.Toleration {
		return []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: secs}}
	}
	cases := []struct {
		name      string
		tols      []corev1.Toleration
		wantEvict bool
		wantAt    time.Time
	}{
		{name: "no toleration: now", wantEvict: true, wantAt: now},
		{name: "forever", tols: tol(nil)},
		{name: "300s from when the taint was added", tols: tol(ptr.To[int64](300)), wantEvict: true, wantAt: added.Add(300 * time.Second)},
		{name: "already overdue", tols: tol(ptr.To[int64](30)), wantEvict: true, wantAt: added.Add(30 * time.Second)},
		{name: "other key does not help", tols: []corev1.Toleration{{Key: "x", Operator: corev1.TolerationOpExists}}, wantEvict: true, wantAt: now},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			at, evict := evictAt(&corev1.Pod{Spec: corev1.PodSpec{Tolerations: tc.tols}}, unreachable, now)
			if evict != tc.wantEvict || (evict && !at.Equal(tc.wantAt)) {
				t.Errorf("evictAt = %v, %v; want %v, %v", at, evict, tc.wantAt, tc.wantEvict)
			}
		})
	}
}

func TestNextTaints(t *testing.T) {
	t.Parallel()
	now := metav1.Now()
	user := corev1.Taint{Key: "dedicated", Value: "x", Effect: corev1.TaintEffectNoSchedule}
	cases := []struct {
		name string
		cur  []corev1.Taint
		want []corev1.Taint
		keys []string
	}{
		{name: "unreachable added beside user taint", cur: []corev1.Taint{user}, want: unreachableTaints,
			keys: []string{"dedicated", corev1.TaintNodeUnreachable, corev1.TaintNodeUnreachable}},
		{name: "not-ready replaces unreachable", cur: append([]corev1.Taint{user}, unreachableTaints...), want: notReadyTaints,
			keys: []string{"dedicated", corev1.TaintNodeNotReady, corev1.TaintNodeNotReady}},
		{name: "healthy clears", cur: append([]corev1.Taint{user}, notReadyTaints...), keys: []string{"dedicated"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := nextTaints(tc.cur, tc.want, now)
			var keys []string
			for _, g := range got {
				keys = append(keys, g.Key)
				if g.Effect == corev1.TaintEffectNoExecute && g.TimeAdded == nil {
					t.Errorf("NoExecute taint without timeAdded")
				}
			}
			if len(keys) != len(tc.keys) {
				t.Fatalf("keys %v, want %v", keys, tc.keys)
			}
			for i := range keys {
				if keys[i] != tc.keys[i] {
					t.Errorf("keys %v, want %v", keys, tc.keys)
				}
			}
		})
	}
}

// TestSilent drives the heartbeat record with a fake clock: renewals keep
// a node alive, silence beyond the grace period does not.
func TestSilent(t *testing.T) {
	t.Parallel()
	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	client := fake.NewClientset()
	f := informers.NewSharedInformerFactory(client, 0)
	c, err := New(&controller.Context{Client: client, Informers: f}, Config{GracePeriod: 40 * time.Second, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	leases := f.Coordination().V1().Leases().Informer().GetIndexer()
	renew := func() {
		rt := metav1.NewMicroTime(clock)
		_ = leases.Add(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "n1", Namespace: LeaseNamespace}, Spec: coordinationv1.LeaseSpec{RenewTime: &rt}})
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	steps := []struct {
		advance time.Duration
		renew   bool
		want    bool
	}{
		{0, true, false},
		{30 * time.Second, true, false},
		{30 * time.Second, false, false}, // 30s since last renewal
		{11 * time.Second, false, true},  // 41s
		{time.Second, true, false},       // renewed: alive again
	}
	for i, s := range steps {
		clock = clock.Add(s.advance)
		if s.renew {
			renew()
		}
		if got := c.silent(node); got != s.want {
			t.Errorf("step %d: silent = %v, want %v", i, got, s.want)
		}
	}
}
