package queue_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
	"github.com/skiffhq/skiff/internal/scheduler/queue"
	"github.com/skiffhq/skiff/internal/testutil"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newQueue(c *clock) *queue.PriorityQueue {
	return queue.New(queue.Config{
		Now: c.now,
		// Only NodeResourcesFit is interested in node additions here.
		EventInterest: func(plugin string, ev framework.ClusterEvent) bool {
			return plugin == "NodeResourcesFit" && ev.Resource == framework.Node
		},
	})
}

func pop(t *testing.T, q *queue.PriorityQueue) *queue.QueuedPodInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	p, err := q.Pop(ctx)
	if err != nil {
		t.Fatalf("pop: %v", err)
	}
	return p
}

func TestPopOrder(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	q := newQueue(c)
	q.Add(testutil.MakePod("old-low").Priority(1).Obj())
	c.t = c.t.Add(time.Second)
	q.Add(testutil.MakePod("new-high").Priority(10).Obj())
	q.Add(testutil.MakePod("new-low").Priority(1).Obj())
	for _, want := range []string{"new-high", "old-low", "new-low"} {
		if got := pop(t, q).Pod.Name; got != want {
			t.Fatalf("popped %s, want %s", got, want)
		}
	}
}

func TestBackoffDoublesToTen(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	q := newQueue(c)
	q.Add(testutil.MakePod("p").Obj())
	for i, want := range []time.Duration{1, 2, 4, 8, 10, 10} {
		p := pop(t, q)
		p.Failed = true // an error, not a fit failure: back-off only
		q.AddUnschedulable(p, q.SchedulingCycle())
		c.t = c.t.Add(want*time.Second - time.Millisecond)
		q.FlushBackoffCompleted()
		if a, _, _ := q.Len(); a != 0 {
			t.Fatalf("attempt %d: active before %v of back-off", i+1, want*time.Second)
		}
		c.t = c.t.Add(time.Millisecond)
		q.FlushBackoffCompleted()
		if a, _, _ := q.Len(); a != 1 {
			t.Fatalf("attempt %d: not active after %v", i+1, want*time.Second)
		}
	}
}

func TestUnschedulableMovesOnInterestingEvent(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	q := newQueue(c)
	q.Add(testutil.MakePod("p").Obj())
	p := pop(t, q)
	cycle := q.SchedulingCycle()
	p.UnschedulablePlugins = sets.New("NodeResourcesFit")
	q.AddUnschedulable(p, cycle)
	if _, _, u := q.Len(); u != 1 {
		t.Fatalf("not parked as unschedulable")
	}
	// An event nobody who rejected it cares about leaves it parked.
	q.MoveAllToActiveOrBackoff(framework.ClusterEvent{Resource: framework.AssignedPod, ActionType: framework.Delete})
	if _, _, u := q.Len(); u != 1 {
		t.Fatalf("moved on an uninteresting event")
	}
	// A node arrives: back to back-off (its first second has not passed)...
	q.MoveAllToActiveOrBackoff(framework.ClusterEvent{Resource: framework.Node, ActionType: framework.Add})
	if a, b, u := q.Len(); a != 0 || b != 1 || u != 0 {
		t.Fatalf("after node add: active %d backoff %d unschedulable %d", a, b, u)
	}
	// ...then active once it has.
	c.t = c.t.Add(time.Second)
	q.FlushBackoffCompleted()
	if got := pop(t, q).Pod.Name; got != "p" {
		t.Fatalf("popped %s", got)
	}
}

func TestEventDuringAttemptGoesToBackoff(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	q := newQueue(c)
	q.Add(testutil.MakePod("p").Obj())
	p := pop(t, q)
	cycle := q.SchedulingCycle()
	// The node arrives while the pod is being tried; parking it as
	// unschedulable would miss that event.
	q.MoveAllToActiveOrBackoff(framework.ClusterEvent{Resource: framework.Node, ActionType: framework.Add})
	p.UnschedulablePlugins = sets.New("NodeResourcesFit")
	q.AddUnschedulable(p, cycle)
	if _, b, u := q.Len(); b != 1 || u != 0 {
		t.Fatalf("backoff %d unschedulable %d, want 1 and 0", b, u)
	}
}

func TestPeriodicFlushIsTheSafetyNet(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	q := newQueue(c)
	q.Add(testutil.MakePod("p").Obj())
	p := pop(t, q)
	p.UnschedulablePlugins = sets.New("InterPodAffinity")
	q.AddUnschedulable(p, q.SchedulingCycle())
	c.t = c.t.Add(59 * time.Second)
	q.FlushUnschedulableLeftover()
	if _, _, u := q.Len(); u != 1 {
		t.Fatal("flushed before 60 s")
	}
	c.t = c.t.Add(time.Second)
	q.FlushUnschedulableLeftover()
	if a, _, u := q.Len(); a != 1 || u != 0 {
		t.Fatalf("not flushed after 60 s: active %d unschedulable %d", a, u)
	}
}

func TestDeleteLeavesQueue(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	q := newQueue(c)
	pod := testutil.MakePod("p").Obj()
	q.Add(pod)
	q.Delete(pod)
	if a, b, u := q.Len(); a+b+u != 0 {
		t.Fatal("deleted pod still queued")
	}
	// Deleted while being tried: the failed attempt does not bring it back.
	q.Add(pod)
	p := pop(t, q)
	q.Delete(pod)
	q.AddUnschedulable(p, q.SchedulingCycle())
	if a, b, u := q.Len(); a+b+u != 0 {
		t.Fatal("pod deleted during its attempt was requeued")
	}
}

func TestUpdateRetriesParkedPod(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	q := queue.New(queue.Config{Now: c.now, IgnoreUpdate: func(old, pod *corev1.Pod) bool { return !queue.SpecOrLabelsChanged(old, pod, "note") }})
	pod := testutil.MakePod("p").Obj()
	q.Add(pod)
	p := pop(t, q)
	p.UnschedulablePlugins = sets.New("TaintToleration")
	q.AddUnschedulable(p, q.SchedulingCycle())
	noted := pod.DeepCopy()
	noted.Annotations = map[string]string{"note": "x"}
	q.Update(pod, noted)
	if _, _, u := q.Len(); u != 1 {
		t.Fatal("an ignored annotation change moved the pod")
	}
	tolerating := testutil.MakePod("p").Toleration("k", corev1.TolerationOpExists, "", "").Obj()
	q.Update(noted, tolerating)
	if _, b, u := q.Len(); b != 1 || u != 0 {
		t.Fatalf("spec change did not retry the pod (backoff %d, unschedulable %d)", b, u)
	}
}

func TestNominator(t *testing.T) {
	n := queue.NewNominator()
	pi := framework.NewPodInfo(testutil.MakePod("p").Obj())
	n.Add(pi, "n1")
	n.Add(pi, "n2")
	if len(n.NominatedPodsForNode("n1")) != 0 || len(n.NominatedPodsForNode("n2")) != 1 {
		t.Fatal("renomination did not move the pod")
	}
	n.Delete(pi.Pod.UID)
	if len(n.NominatedPodsForNode("n2")) != 0 {
		t.Fatal("delete left the nomination")
	}
}
