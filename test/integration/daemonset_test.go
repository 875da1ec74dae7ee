package integration

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/skiffhq/skiff/internal/testutil"
)

func makeNode(name string, labels map[string]string, taints ...corev1.Taint) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: corev1.NodeSpec{Taints: taints}}
}

func makeDaemonSet(name, image string) *appsv1.DaemonSet {
	labels := map[string]string{"app": name}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"role": "worker"},
					Containers:   []corev1.Container{{Name: "agent", Image: image}},
				},
			},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				Type:          appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: new(intstr.FromInt32(1))},
			},
		},
	}
}

// dsPods maps node → image of the DaemonSet's live, ready pods, and says
// whether every live pod is ready and alone on its node.
func dsPods(ctx context.Context, t *testing.T, c kubernetes.Interface, ns string) (map[string]string, bool) {
	t.Helper()
	list, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list pods: %v", err)
	}
	out := map[string]string{}
	settled := true
	for _, p := range list.Items {
		if p.DeletionTimestamp != nil {
			settled = false
			continue
		}
		if _, dup := out[p.Spec.NodeName]; dup || !podReady(&p) {
			settled = false
		}
		out[p.Spec.NodeName] = p.Spec.Containers[0].Image
	}
	return out, settled
}

// waitDaemonPods waits until exactly want (node → image) runs, settled.
func waitDaemonPods(ctx context.Context, t *testing.T, c kubernetes.Interface, ns string, want map[string]string) {
	t.Helper()
	var got map[string]string
	testutil.Eventually(t, 20*time.Second, func() bool {
		var settled bool
		got, settled = dsPods(ctx, t, c, ns)
		return settled && fmt.Sprint(got) == fmt.Sprint(want)
	}, "daemon pods: want %v", want)
}

func waitDaemonStatus(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name string, desired int32) *appsv1.DaemonSet {
	t.Helper()
	var ds *appsv1.DaemonSet
	testutil.Eventually(t, 20*time.Second, func() bool {
		var err error
		if ds, err = c.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Fatalf("get ds: %v", err)
		}
		s := ds.Status
		return s.ObservedGeneration == ds.Generation && s.DesiredNumberScheduled == desired && s.CurrentNumberScheduled == desired &&
			s.NumberReady == desired && s.NumberAvailable == desired && s.UpdatedNumberScheduled == desired && s.NumberMisscheduled == 0
	}, "daemonset status for %d nodes, last %+v", desired, func() any {
		if ds == nil {
			return nil
		}
		return ds.Status
	}())
	return ds
}

func images(nodes []string, image string) map[string]string {
	m := map[string]string{}
	for _, n := range nodes {
		m[n] = image
	}
	return m
}

func TestDaemonSetPlacementAndRollout(t *testing.T) {
	t.Parallel()
	cp := startSetsControlPlane(t)
	ctx := testCtx(t)
	c := cp.Client
	ns := newNamespace(t, c)
	worker := map[string]string{"role": "worker"}
	for _, n := range []*corev1.Node{
		makeNode("n1", worker), makeNode("n2", worker), makeNode("n3", worker),
		makeNode("tainted", worker, corev1.Taint{Key: "dedicated", Value: "infra", Effect: corev1.TaintEffectNoSchedule}),
		makeNode("edge", map[string]string{"role": "edge"}),
	} {
		if _, err := c.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create node: %v", err)
		}
	}
	kubelet := startSetsKubelet(t, c, ns, "")
	if _, err := c.AppsV1().DaemonSets(ns).Create(ctx, makeDaemonSet("agent", "agent:v1"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ds: %v", err)
	}

	// Only the eligible nodes get a pod, and each pod carries the daemon
	// tolerations and is pinned to its node by name.
	waitDaemonPods(ctx, t, c, ns, images([]string{"n1", "n2", "n3"}, "agent:v1"))
	waitDaemonStatus(ctx, t, c, ns, "agent", 3)
	pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := pods.Items[0]
	if podNode(&corev1.Pod{Spec: corev1.PodSpec{Affinity: p.Spec.Affinity}}) != p.Spec.NodeName {
		t.Errorf("pod %s not pinned to %s by matchFields affinity: %+v", p.Name, p.Spec.NodeName, p.Spec.Affinity)
	}
	var tolerated []string
	for _, tol := range p.Spec.Tolerations {
		tolerated = append(tolerated, tol.Key+":"+string(tol.Effect))
	}
	for _, want := range []string{"node.kubernetes.io/not-ready:NoExecute", "node.kubernetes.io/unreachable:NoExecute", "node.kubernetes.io/unschedulable:NoSchedule", "node.kubernetes.io/disk-pressure:NoSchedule"} {
		if !slices.Contains(tolerated, want) {
			t.Errorf("pod tolerations %v lack %s", tolerated, want)
		}
	}
	if p.Labels["controller-revision-hash"] == "" {
		t.Errorf("pod %s has no controller-revision-hash label", p.Name)
	}

	// A new node gets its pod.
	if _, err := c.CoreV1().Nodes().Create(ctx, makeNode("n4", worker), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create node: %v", err)
	}
	waitDaemonPods(ctx, t, c, ns, images([]string{"n1", "n2", "n3", "n4"}, "agent:v1"))
	waitDaemonStatus(ctx, t, c, ns, "agent", 4)

	// A template change rolls through one node at a time.
	before := len(kubelet.log())
	old := podUIDs(ctx, t, c, ns)
	setDaemonImage(ctx, t, c, ns, "agent", "agent:v2")
	kubectl := newCLI(t, cp)
	wantContains(t, kubectl.ok("-n", ns, "rollout", "status", "ds/agent", "--timeout=30s"), `daemon set "agent" successfully rolled out`)
	waitDaemonPods(ctx, t, c, ns, images([]string{"n1", "n2", "n3", "n4"}, "agent:v2"))
	for uid := range podUIDs(ctx, t, c, ns) {
		if old[uid] {
			t.Errorf("pod %s was not replaced", uid)
		}
	}
	if worst := maxUnavailable(kubelet.log()[before:], old, []string{"n1", "n2", "n3", "n4"}); worst != 1 {
		t.Errorf("at most %d nodes lacked a ready daemon during the rollout, want exactly maxUnavailable=1", worst)
	}

	// History and undo through kubectl.
	hist := kubectl.ok("-n", ns, "rollout", "history", "ds/agent")
	for _, rev := range []string{"1", "2"} {
		if _, ok := lineStarting(hist, rev); !ok {
			t.Errorf("rollout history lacks revision %s:\n%s", rev, hist)
		}
	}
	wantContains(t, kubectl.ok("-n", ns, "rollout", "undo", "ds/agent"), "daemonset.apps/agent rolled back")
	waitDaemonPods(ctx, t, c, ns, images([]string{"n1", "n2", "n3", "n4"}, "agent:v1"))
	revs, err := c.AppsV1().ControllerRevisions(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var numbers []int64
	for _, r := range revs.Items {
		numbers = append(numbers, r.Revision)
	}
	sort.Slice(numbers, func(i, j int) bool { return numbers[i] < numbers[j] })
	if fmt.Sprint(numbers) != "[2 3]" {
		t.Errorf("revision numbers after undo = %v, want [2 3] (v1 renumbered as the newest)", numbers)
	}

	// A node that stops matching loses its pod; a deleted node's pod goes.
	// The node IPAM controller also writes nodes (spec.podCIDR).
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n2, err := c.CoreV1().Nodes().Get(ctx, "n2", metav1.GetOptions{})
		if err != nil {
			return err
		}
		n2.Labels["role"] = "edge"
		_, err = c.CoreV1().Nodes().Update(ctx, n2, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("relabel node: %v", err)
	}
	if err := c.CoreV1().Nodes().Delete(ctx, "n3", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete node: %v", err)
	}
	waitDaemonPods(ctx, t, c, ns, images([]string{"n1", "n4"}, "agent:v1"))
	waitDaemonStatus(ctx, t, c, ns, "agent", 2)

	events, err := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]bool{}
	for _, e := range events.Items {
		if e.InvolvedObject.Kind == "DaemonSet" {
			reasons[e.Reason] = true
		}
	}
	if !reasons["SuccessfulCreate"] || !reasons["SuccessfulDelete"] {
		t.Errorf("daemonset event reasons = %v, want SuccessfulCreate and SuccessfulDelete", reasons)
	}
}

func setDaemonImage(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name, image string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"agent","image":%q}]}}}}`, image)
	if _, err := c.AppsV1().DaemonSets(ns).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch ds: %v", err)
	}
}

func podUIDs(ctx context.Context, t *testing.T, c kubernetes.Interface, ns string) map[string]bool {
	t.Helper()
	list, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, p := range list.Items {
		out[string(p.UID)] = true
	}
	return out
}

// maxUnavailable replays pod events and returns the most nodes that at
// once had no ready, live daemon pod. start holds the pods (by UID)
// running before the events, all ready.
func maxUnavailable(events []podEvent, start map[string]bool, nodes []string) int {
	type podState struct {
		node        string
		ready, gone bool
	}
	pods := map[string]*podState{}
	// Seed with the starting pods: each node had exactly one, ready.
	seen := map[string]bool{}
	for _, e := range events {
		if start[e.uid] && !seen[e.uid] {
			seen[e.uid] = true
			pods[e.uid] = &podState{node: e.node, ready: true}
		}
	}
	worst := 0
	for _, e := range events {
		ps := pods[e.uid]
		if ps == nil {
			ps = &podState{}
			pods[e.uid] = ps
		}
		ps.node, ps.ready, ps.gone = e.node, e.ready, e.typ == "delete" || e.terminating
		up := map[string]bool{}
		for _, p := range pods {
			if p.ready && !p.gone {
				up[p.node] = true
			}
		}
		down := 0
		for _, n := range nodes {
			if !up[n] {
				down++
			}
		}
		worst = max(worst, down)
	}
	return worst
}
