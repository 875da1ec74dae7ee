package cache_test

import (
	"fmt"
	"math/rand"
	"sort"
	"testing"

	corev1 "k8s.io/api/core/v1"

	schedcache "github.com/skiffhq/skiff/internal/scheduler/cache"
	"github.com/skiffhq/skiff/internal/scheduler/framework"
	"github.com/skiffhq/skiff/internal/testutil"
)

// walk is what the index replaces: every pod on every listed node.
func walk(s *schedcache.Snapshot, ns string) []string {
	var out []string
	for _, ni := range s.List() {
		for _, pi := range ni.Pods {
			if pi.Pod.Namespace == ns {
				out = append(out, pi.Pod.Name+"@"+ni.Node().Name)
			}
		}
	}
	sort.Strings(out)
	return out
}

func indexed(s *schedcache.Snapshot, ns string) []string {
	var out []string
	for _, po := range s.PodsInNamespace(ns) {
		if s.Get(po.Node.Node().Name) != po.Node {
			out = append(out, "stale node for "+po.Pod.Pod.Name)
		}
		out = append(out, po.Pod.Pod.Name+"@"+po.Node.Node().Name)
	}
	sort.Strings(out)
	return out
}

// TestPodIndexFollowsCache changes the cache at random — pods assumed,
// forgotten, confirmed on another node, deleted; nodes relabelled,
// removed and re-added — updating one snapshot incrementally, and checks
// after every step that the namespace index and label counts agree with
// a walk over the nodes.
func TestPodIndexFollowsCache(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewSource(7))
	c := schedcache.New()
	node := func(i int) *corev1.Node {
		return testutil.MakeNode(fmt.Sprintf("n%d", i)).Zone(fmt.Sprintf("z%d", rng.Intn(3))).Obj()
	}
	for i := range 6 {
		c.AddNode(node(i))
	}
	snap := schedcache.NewSnapshot()
	c.UpdateSnapshot(snap)
	live := map[string]*corev1.Pod{}
	for step := range 400 {
		switch op := rng.Intn(6); {
		case op <= 1:
			p := testutil.MakePod(fmt.Sprintf("p%d", step)).Namespace([]string{"a", "b"}[rng.Intn(2)]).Node(fmt.Sprintf("n%d", rng.Intn(6))).Obj()
			if op == 0 {
				if err := c.AssumePod(framework.NewPodInfo(p)); err != nil {
					t.Fatal(err)
				}
			} else {
				c.AddPod(p)
			}
			live[p.Name] = p
		case op == 2 && len(live) > 0:
			for name, p := range live {
				moved := p.DeepCopy()
				moved.Spec.NodeName = fmt.Sprintf("n%d", rng.Intn(6))
				c.AddPod(moved) // the binding landed elsewhere
				live[name] = moved
				break
			}
		case op == 3 && len(live) > 0:
			for name, p := range live {
				c.RemovePod(p)
				delete(live, name)
				break
			}
		case op == 4:
			c.UpdateNode(node(rng.Intn(6)))
		case op == 5:
			n := node(rng.Intn(6))
			c.RemoveNode(n)
			c.UpdateSnapshot(snap)
			c.AddNode(n)
		}
		c.UpdateSnapshot(snap)
		for _, ns := range []string{"a", "b"} {
			if got, want := indexed(snap, ns), walk(snap, ns); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("step %d namespace %s: index %v, walk %v", step, ns, got, want)
			}
		}
		zones := map[string]int{}
		for _, ni := range snap.List() {
			zones[ni.Node().Labels[corev1.LabelTopologyZone]]++
		}
		if lc := snap.LabelValues(corev1.LabelTopologyZone); fmt.Sprint(lc.Values) != fmt.Sprint(zones) || lc.Nodes != len(snap.List()) {
			t.Fatalf("step %d: label counts %v/%d, nodes say %v/%d", step, lc.Values, lc.Nodes, zones, len(snap.List()))
		}
	}
}
