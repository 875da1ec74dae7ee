package integration

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/internal/testutil"
)

func makeStatefulSet(name string, replicas int32, policy appsv1.PodManagementPolicyType) *appsv1.StatefulSet {
	labels := map[string]string{"app": name}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            &replicas,
			ServiceName:         name,
			PodManagementPolicy: policy,
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "web:v1"}}},
			},
		},
	}
}

// setPods maps pod name → image for the live pods, and says whether all
// of them are ready.
func setPods(ctx context.Context, t *testing.T, c kubernetes.Interface, ns string) (map[string]string, bool) {
	t.Helper()
	list, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list pods: %v", err)
	}
	out, ready := map[string]string{}, true
	for _, p := range list.Items {
		if p.DeletionTimestamp != nil {
			ready = false
			continue
		}
		out[p.Name] = p.Spec.Containers[0].Image
		ready = ready && podReady(&p)
	}
	return out, ready
}

func waitSetPods(ctx context.Context, t *testing.T, c kubernetes.Interface, ns string, want map[string]string) {
	t.Helper()
	var got map[string]string
	testutil.Eventually(t, 20*time.Second, func() bool {
		var ready bool
		got, ready = setPods(ctx, t, c, ns)
		return ready && fmt.Sprint(got) == fmt.Sprint(want)
	}, "pods: want %v", want)
}

// waitSetStatus waits for the set's status to satisfy ok and returns it.
func waitSetStatus(ctx context.Context, t *testing.T, c kubernetes.Interface, ns, name string, ok func(*appsv1.StatefulSet) bool) *appsv1.StatefulSet {
	t.Helper()
	var sts *appsv1.StatefulSet
	testutil.Eventually(t, 20*time.Second, func() bool {
		var err error
		if sts, err = c.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Fatalf("get sts: %v", err)
		}
		return sts.Status.ObservedGeneration == sts.Generation && ok(sts)
	}, "statefulset %s status", name)
	return sts
}

func settled(replicas int32) func(*appsv1.StatefulSet) bool {
	return func(s *appsv1.StatefulSet) bool {
		st := s.Status
		return st.Replicas == replicas && st.ReadyReplicas == replicas && st.AvailableReplicas == replicas &&
			st.UpdatedReplicas == replicas && st.CurrentReplicas == replicas && st.CurrentRevision != "" && st.CurrentRevision == st.UpdateRevision
	}
}

func sameImage(image string, names ...string) map[string]string {
	m := map[string]string{}
	for _, n := range names {
		m[n] = image
	}
	return m
}

// eventIndex is the position of the first event matching, or -1.
func eventIndex(events []podEvent, match func(podEvent) bool) int {
	for i, e := range events {
		if match(e) {
			return i
		}
	}
	return -1
}

func TestStatefulSetOrderedScaling(t *testing.T) {
	t.Parallel()
	cp := startSetsControlPlane(t)
	ctx := testCtx(t)
	c := cp.Client
	ns := newNamespace(t, c)
	kubelet := startSetsKubelet(t, c, ns, "node-1")
	if _, err := c.AppsV1().StatefulSets(ns).Create(ctx, makeStatefulSet("web", 3, appsv1.OrderedReadyPodManagement), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create sts: %v", err)
	}
	waitSetPods(ctx, t, c, ns, sameImage("web:v1", "web-0", "web-1", "web-2"))
	sts := waitSetStatus(ctx, t, c, ns, "web", settled(3))

	// Each pod was created only after the one before it was ready.
	log := kubelet.log()
	for i := 1; i < 3; i++ {
		prevReady := eventIndex(log, func(e podEvent) bool { return e.name == fmt.Sprintf("web-%d", i-1) && e.ready })
		created := eventIndex(log, func(e podEvent) bool { return e.name == fmt.Sprintf("web-%d", i) && e.typ == "add" })
		if prevReady < 0 || created < prevReady {
			t.Errorf("web-%d created at event %d, before web-%d was ready (event %d)", i, created, i-1, prevReady)
		}
	}

	// Stable identity.
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("web-%d", i)
		p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Spec.Hostname != name || p.Spec.Subdomain != "web" {
			t.Errorf("%s: hostname %q subdomain %q", name, p.Spec.Hostname, p.Spec.Subdomain)
		}
		want := map[string]string{
			"statefulset.kubernetes.io/pod-name": name,
			"apps.kubernetes.io/pod-index":       fmt.Sprint(i),
			"controller-revision-hash":           sts.Status.UpdateRevision,
		}
		for k, v := range want {
			if p.Labels[k] != v {
				t.Errorf("%s: label %s = %q, want %q", name, k, p.Labels[k], v)
			}
		}
	}
	wantContains(t, newCLI(t, cp).ok("-n", ns, "rollout", "status", "sts/web", "--timeout=20s"), "roll out complete")

	// Scaling down removes the highest ordinal first, and the next only
	// once that one is gone.
	before := len(kubelet.log())
	if _, err := c.AppsV1().StatefulSets(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"replicas":1}}`), metav1.PatchOptions{}); err != nil {
		t.Fatalf("scale: %v", err)
	}
	waitSetPods(ctx, t, c, ns, sameImage("web:v1", "web-0"))
	waitSetStatus(ctx, t, c, ns, "web", settled(1))
	log = kubelet.log()[before:]
	web2Gone := eventIndex(log, func(e podEvent) bool { return e.name == "web-2" && e.typ == "delete" })
	web1Term := eventIndex(log, func(e podEvent) bool { return e.name == "web-1" && e.terminating })
	if web2Gone < 0 || web1Term < web2Gone {
		t.Errorf("web-1 began terminating at event %d, before web-2 was gone (event %d)", web1Term, web2Gone)
	}
}

func TestStatefulSetPartitionedRollingUpdate(t *testing.T) {
	t.Parallel()
	cp := startSetsControlPlane(t)
	ctx := testCtx(t)
	c := cp.Client
	ns := newNamespace(t, c)
	kubelet := startSetsKubelet(t, c, ns, "node-1")
	if _, err := c.AppsV1().StatefulSets(ns).Create(ctx, makeStatefulSet("web", 3, appsv1.OrderedReadyPodManagement), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create sts: %v", err)
	}
	waitSetPods(ctx, t, c, ns, sameImage("web:v1", "web-0", "web-1", "web-2"))
	first := waitSetStatus(ctx, t, c, ns, "web", settled(3))
	old := podUIDs(ctx, t, c, ns)

	// Only ordinals >= partition move to the new template.
	patch := `{"spec":{"updateStrategy":{"rollingUpdate":{"partition":2}}, "template":{"spec":{"containers":[{"name":"app","image":"web:v2"}]}}}}`
	if _, err := c.AppsV1().StatefulSets(ns).Patch(ctx, "web", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch: %v", err)
	}
	want := sameImage("web:v1", "web-0", "web-1")
	want["web-2"] = "web:v2"
	waitSetPods(ctx, t, c, ns, want)
	sts := waitSetStatus(ctx, t, c, ns, "web", func(s *appsv1.StatefulSet) bool {
		return s.Status.UpdatedReplicas == 1 && s.Status.ReadyReplicas == 3 && s.Status.CurrentReplicas == 2
	})
	if sts.Status.CurrentRevision != first.Status.CurrentRevision || sts.Status.UpdateRevision == sts.Status.CurrentRevision {
		t.Errorf("revisions current=%s update=%s, want current still %s and a new update revision",
			sts.Status.CurrentRevision, sts.Status.UpdateRevision, first.Status.CurrentRevision)
	}
	kubectl := newCLI(t, cp)
	wantContains(t, kubectl.ok("-n", ns, "rollout", "status", "sts/web", "--timeout=20s"), "partitioned roll out complete: 1 new pods have been updated")

	// Lowering the partition finishes the rollout from the top down.
	before := len(kubelet.log())
	if _, err := c.AppsV1().StatefulSets(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch: %v", err)
	}
	wantContains(t, kubectl.ok("-n", ns, "rollout", "status", "sts/web", "--timeout=20s"), "roll out complete")
	waitSetPods(ctx, t, c, ns, sameImage("web:v2", "web-0", "web-1", "web-2"))
	waitSetStatus(ctx, t, c, ns, "web", settled(3))
	for uid := range podUIDs(ctx, t, c, ns) {
		if old[uid] {
			t.Errorf("pod %s was not replaced", uid)
		}
	}
	log := kubelet.log()[before:]
	var order []string
	for _, e := range log {
		if e.terminating && e.image == "web:v1" && (len(order) == 0 || order[len(order)-1] != e.name) {
			order = append(order, e.name)
		}
	}
	if got := strings.Join(order, ","); got != "web-1,web-0" {
		t.Errorf("old pods terminated in order %s, want web-1,web-0", got)
	}
	revs, err := c.AppsV1().ControllerRevisions(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var numbers []int64
	for _, r := range revs.Items {
		numbers = append(numbers, r.Revision)
	}
	sort.Slice(numbers, func(i, j int) bool { return numbers[i] < numbers[j] })
	if fmt.Sprint(numbers) != "[1 2]" {
		t.Errorf("revision numbers = %v, want [1 2]", numbers)
	}
}

func TestStatefulSetParallel(t *testing.T) {
	t.Parallel()
	cp := startSetsControlPlane(t)
	ctx := testCtx(t)
	c := cp.Client
	ns := newNamespace(t, c)
	kubelet := startSetsKubelet(t, c, ns, "node-1")
	kubelet.setReady(ctx, false)
	if _, err := c.AppsV1().StatefulSets(ns).Create(ctx, makeStatefulSet("db", 3, appsv1.ParallelPodManagement), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create sts: %v", err)
	}
	// All three appear although none is ready.
	testutil.Eventually(t, 20*time.Second, func() bool {
		got, _ := setPods(ctx, t, c, ns)
		return len(got) == 3 && got["db-0"] != "" && got["db-1"] != "" && got["db-2"] != ""
	}, "parallel set did not create all pods at once")
	for _, e := range kubelet.log() {
		if e.ready {
			t.Fatalf("pod %s became ready while readiness was off", e.name)
		}
	}
	kubelet.setReady(ctx, true)
	waitSetStatus(ctx, t, c, ns, "db", settled(3))
}

func TestStatefulSetRefusesVolumeClaims(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t, func(cfg *server.Config) { cfg.Disable = append(cfg.Disable, "controller-manager") })
	ctx := testCtx(t)
	sts := makeStatefulSet("db", 1, appsv1.OrderedReadyPodManagement)
	sts.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}}}
	_, err := cp.Client.AppsV1().StatefulSets(newNamespace(t, cp.Client)).Create(ctx, sts, metav1.CreateOptions{})
	st := wantStatusErr(t, err, 422, metav1.StatusReasonInvalid)
	if !strings.Contains(st.Message, "spec.volumeClaimTemplates") || !strings.Contains(st.Message, "persistent volumes are not supported yet") {
		t.Errorf("message %q does not explain the refusal", st.Message)
	}
}
