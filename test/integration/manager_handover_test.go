package integration

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/skiffhq/skiff/internal/controller"
	"github.com/skiffhq/skiff/internal/controller/manager"
	"github.com/skiffhq/skiff/internal/controller/replicaset"
	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/internal/testutil"
)

// builtBy records which managers have built their controllers, i.e. have
// led: controllers are built only under the lease.
type builtBy struct {
	mu  sync.Mutex
	ids []string
}

func (b *builtBy) add(id string) { b.mu.Lock(); b.ids = append(b.ids, id); b.mu.Unlock() }
func (b *builtBy) list() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.ids...)
}

// TestControllerManagerHandover runs two controller managers against one
// API server: only the lease holder acts, and when it stops the standby
// takes over within 15 s (issue 4, item 1) and acts. Lease timings are
// the defaults, so this measures what a user gets.
func TestControllerManagerHandover(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t, func(c *server.Config) {
		c.Disable = append(c.Disable, "controller-manager", "scheduler")
	})
	c := cp.Client
	ns := newNamespace(t, c)
	built := &builtBy{}
	start := func(id string) context.CancelFunc {
		m, err := manager.New(manager.Config{REST: cp.Config, Identity: id, Logger: slog.New(slog.DiscardHandler), Controllers: []controller.Descriptor{{
			Name: replicaset.Name,
			New: func(cc *controller.Context) (controller.Interface, error) {
				built.add(id)
				return replicaset.Descriptor.New(cc)
			},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = m.Run(ctx) }()
		stop := func() { cancel(); <-done }
		t.Cleanup(stop)
		return stop
	}
	holder := func() string {
		l, err := c.CoordinationV1().Leases("kube-system").Get(context.Background(), manager.LeaseName, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	podCount := func(app string) int {
		pods, err := c.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: labels.Set{"app": app}.String()})
		if err != nil {
			return -1
		}
		n := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				n++
			}
		}
		return n
	}

	stopA := start("cm-a")
	testutil.Eventually(t, 10*time.Second, func() bool { return holder() == "cm-a" }, "cm-a holds the lease")
	start("cm-b")
	if _, err := c.AppsV1().ReplicaSets(ns).Create(testCtx(t), makeReplicaSet("web", 2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return podCount("web") == 2 }, "leader creates 2 pods; have %d", podCount("web"))
	if got := built.list(); len(got) != 1 || got[0] != "cm-a" || holder() != "cm-a" {
		t.Fatalf("managers that acted: %v (holder %q), want only cm-a", got, holder())
	}

	stopA()
	stopped := time.Now()
	testutil.Eventually(t, 15*time.Second, func() bool { return holder() == "cm-b" }, "cm-b takes the lease; holder %q", holder())
	rs, err := c.AppsV1().ReplicaSets(ns).Get(testCtx(t), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs.Spec.Replicas = ptr(int32(3))
	if _, err := c.AppsV1().ReplicaSets(ns).Update(testCtx(t), rs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second-time.Since(stopped), func() bool { return podCount("web") == 3 },
		"standby scales to 3 within 15 s of the leader stopping; have %d", podCount("web"))
	if got := built.list(); len(got) != 2 || got[1] != "cm-b" {
		t.Errorf("managers that acted: %v, want cm-a then cm-b", got)
	}
	t.Logf("standby acting %v after the leader stopped", time.Since(stopped).Round(time.Millisecond))
}
