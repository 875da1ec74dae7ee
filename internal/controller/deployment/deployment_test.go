package deployment

import (
	"context"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/skiffhq/skiff/internal/controller"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	c      *Controller
	client *fake.Clientset
	events *record.FakeRecorder
	now    time.Time
}

// newFixture builds a controller on a fake clientset with objs both
// stored and in the informer caches.
func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	client := fake.NewClientset(objs...)
	inf := informers.NewSharedInformerFactory(client, 0)
	f := &fixture{client: client, events: record.NewFakeRecorder(100), now: t0}
	c, err := New(&controller.Context{
		Client: client, Informers: inf,
		Recorder: func(string) record.EventRecorder { return f.events },
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:      func() time.Time { return f.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	f.c = c
	for _, o := range objs {
		switch o := o.(type) {
		case *appsv1.Deployment:
			_ = inf.Apps().V1().Deployments().Informer().GetIndexer().Add(o)
		case *appsv1.ReplicaSet:
			_ = inf.Apps().V1().ReplicaSets().Informer().GetIndexer().Add(o)
		}
	}
	return f
}

func newDeployment(replicas int32, surge, unavailable intstr.IntOrString) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "uid-web", Generation: 1},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx:1"}}},
			},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavailable}},
			RevisionHistoryLimit:    ptrTo[int32](10),
			ProgressDeadlineSeconds: ptrTo[int32](600),
		},
	}
}

func ptrTo[T any](v T) *T { return &v }

// rsFor makes a ReplicaSet of d for image, with spec size, available
// pods, revision and the replicas annotations of a Deployment of
// desired/max.
func rsFor(d *appsv1.Deployment, image string, size, available int32, rev int, desired, maxR int32, age time.Duration) *appsv1.ReplicaSet {
	tmpl := *d.Spec.Template.DeepCopy()
	tmpl.Spec.Containers[0].Image = image
	hash := templateHash(&tmpl, nil)
	tmpl.Labels = map[string]string{"app": "web", HashLabel: hash}
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-" + hash, Namespace: "ns", UID: types.UID("uid-" + hash), Labels: tmpl.Labels,
			CreationTimestamp: metav1.NewTime(t0.Add(-age)),
			OwnerReferences:   []metav1.OwnerReference{*metav1.NewControllerRef(d, controllerKind)},
			Annotations: map[string]string{
				RevisionAnnotation:        strconv.Itoa(rev),
				DesiredReplicasAnnotation: strconv.Itoa(int(desired)),
				MaxReplicasAnnotation:     strconv.Itoa(int(maxR)),
			},
		},
		Spec: appsv1.ReplicaSetSpec{Replicas: &size, Selector: &metav1.LabelSelector{MatchLabels: tmpl.Labels}, Template: tmpl},
		Status: appsv1.ReplicaSetStatus{Replicas: size, ReadyReplicas: available, AvailableReplicas: available,
			FullyLabeledReplicas: size, ObservedGeneration: 1},
	}
}

// sizes returns the stored ReplicaSets' spec sizes by image.
func (f *fixture) sizes(t *testing.T) map[string]int32 {
	t.Helper()
	list, err := f.client.AppsV1().ReplicaSets("ns").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int32{}
	for _, rs := range list.Items {
		out[rs.Spec.Template.Spec.Containers[0].Image] = *rs.Spec.Replicas
	}
	return out
}

func (f *fixture) deployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	d, err := f.client.AppsV1().Deployments("ns").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestFenceposts(t *testing.T) {
	cases := []struct {
		replicas            int32
		surge, unavail      intstr.IntOrString
		wantSurge, wantUnav int32
	}{
		{10, intstr.FromString("25%"), intstr.FromString("25%"), 3, 2},
		{3, intstr.FromInt32(1), intstr.FromInt32(0), 1, 0},
		{1, intstr.FromString("10%"), intstr.FromString("10%"), 1, 0},
		{4, intstr.FromInt32(0), intstr.FromString("10%"), 0, 1}, // both zero: unavailable becomes 1
		{0, intstr.FromInt32(0), intstr.FromInt32(5), 0, 5},
	}
	for _, tc := range cases {
		s, u := fenceposts(newDeployment(tc.replicas, tc.surge, tc.unavail))
		if s != tc.wantSurge || u != tc.wantUnav {
			t.Errorf("replicas %d surge %s unavailable %s: got %d/%d, want %d/%d",
				tc.replicas, tc.surge.String(), tc.unavail.String(), s, u, tc.wantSurge, tc.wantUnav)
		}
	}
}

func TestTemplateHash(t *testing.T) {
	d := newDeployment(1, intstr.FromInt32(1), intstr.FromInt32(0))
	a := templateHash(&d.Spec.Template, nil)
	if b := templateHash(d.Spec.Template.DeepCopy(), nil); a != b {
		t.Errorf("hash not stable: %s vs %s", a, b)
	}
	other := d.Spec.Template.DeepCopy()
	other.Spec.Containers[0].Image = "nginx:2"
	if b := templateHash(other, nil); a == b {
		t.Error("different templates hash alike")
	}
	if b := templateHash(&d.Spec.Template, ptrTo[int32](1)); a == b {
		t.Error("collision count does not change the hash")
	}
}

func TestRollingUpdate(t *testing.T) {
	cases := []struct {
		name      string
		d         *appsv1.Deployment
		rss       func(d *appsv1.Deployment) []runtime.Object
		wantSizes map[string]int32
	}{
		{
			name: "first sync creates the new replica set at full size",
			d:    newDeployment(3, intstr.FromInt32(1), intstr.FromInt32(0)),
			rss:  func(*appsv1.Deployment) []runtime.Object { return nil },
			// Nothing else exists, so the new one may take all 3 (within 3+1).
			wantSizes: map[string]int32{"nginx:1": 3},
		},
		{
			name: "maxSurge 1 maxUnavailable 0: new grows by one, old untouched",
			d:    newDeployment(3, intstr.FromInt32(1), intstr.FromInt32(0)),
			rss: func(d *appsv1.Deployment) []runtime.Object {
				return []runtime.Object{rsFor(d, "nginx:0", 3, 3, 1, 3, 4, time.Hour)}
			},
			wantSizes: map[string]int32{"nginx:0": 3, "nginx:1": 1},
		},
		{
			name: "old shrinks only as far as new pods are available",
			d:    newDeployment(3, intstr.FromInt32(1), intstr.FromInt32(0)),
			rss: func(d *appsv1.Deployment) []runtime.Object {
				return []runtime.Object{rsFor(d, "nginx:0", 3, 3, 1, 3, 4, time.Hour), rsFor(d, "nginx:1", 1, 1, 2, 3, 4, time.Minute)}
			},
			wantSizes: map[string]int32{"nginx:0": 2, "nginx:1": 1},
		},
		{
			name: "unavailable new pod blocks old scale-down",
			d:    newDeployment(3, intstr.FromInt32(1), intstr.FromInt32(0)),
			rss: func(d *appsv1.Deployment) []runtime.Object {
				return []runtime.Object{rsFor(d, "nginx:0", 3, 3, 1, 3, 4, time.Hour), rsFor(d, "nginx:1", 1, 0, 2, 3, 4, time.Minute)}
			},
			wantSizes: map[string]int32{"nginx:0": 3, "nginx:1": 1},
		},
		{
			name: "maxUnavailable 1 maxSurge 0: old goes down first",
			d:    newDeployment(4, intstr.FromInt32(0), intstr.FromInt32(1)),
			rss: func(d *appsv1.Deployment) []runtime.Object {
				return []runtime.Object{rsFor(d, "nginx:0", 4, 4, 1, 4, 4, time.Hour)}
			},
			// The new one is created at 0 (no surge room), then the old
			// one gives up one pod.
			wantSizes: map[string]int32{"nginx:0": 3, "nginx:1": 0},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := append([]runtime.Object{tc.d}, tc.rss(tc.d)...)
			f := newFixture(t, objs...)
			if err := f.c.sync(context.Background(), "ns/web"); err != nil {
				t.Fatalf("sync: %v", err)
			}
			got := f.sizes(t)
			for img, want := range tc.wantSizes {
				if got[img] != want {
					t.Errorf("sizes = %v, want %v", got, tc.wantSizes)
					break
				}
			}
			if len(got) != len(tc.wantSizes) {
				t.Errorf("sizes = %v, want %v", got, tc.wantSizes)
			}
		})
	}
}

func TestNewReplicaSetRevisionAndEvent(t *testing.T) {
	d := newDeployment(3, intstr.FromInt32(1), intstr.FromInt32(0))
	old := rsFor(d, "nginx:0", 3, 3, 4, 3, 4, time.Hour)
	// Status as the old replica set left it, so this sync shows no
	// progress beyond creating the new one.
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 3, ReadyReplicas: 3, AvailableReplicas: 3}
	f := newFixture(t, d, old)
	if err := f.c.sync(context.Background(), "ns/web"); err != nil {
		t.Fatal(err)
	}
	list, _ := f.client.AppsV1().ReplicaSets("ns").List(context.Background(), metav1.ListOptions{})
	var created *appsv1.ReplicaSet
	for i := range list.Items {
		if list.Items[i].Name != old.Name {
			created = &list.Items[i]
		}
	}
	if created == nil {
		t.Fatal("no new replica set")
	}
	hash := created.Labels[HashLabel]
	if created.Name != "web-"+hash || created.Spec.Template.Labels[HashLabel] != hash || created.Spec.Selector.MatchLabels[HashLabel] != hash {
		t.Errorf("new replica set %s not keyed by its hash %s: %+v", created.Name, hash, created.Spec.Selector)
	}
	if a := created.Annotations; a[RevisionAnnotation] != "5" || a[DesiredReplicasAnnotation] != "3" || a[MaxReplicasAnnotation] != "4" {
		t.Errorf("annotations = %v, want revision 5, desired 3, max 4", a)
	}
	got := f.deployment(t)
	if got.Annotations[RevisionAnnotation] != "5" {
		t.Errorf("deployment revision = %q, want 5", got.Annotations[RevisionAnnotation])
	}
	if c := condition(&got.Status, appsv1.DeploymentProgressing); c == nil || c.Reason != reasonNewRSCreated {
		t.Errorf("Progressing = %+v, want %s", c, reasonNewRSCreated)
	}
	want := "Normal ScalingReplicaSet Scaled up replica set " + created.Name + " from 0 to 1"
	if ev := <-f.events.Events; ev != want {
		t.Errorf("event %q, want %q", ev, want)
	}
}

// TestProportionalScaling scales a Deployment mid-rollout: the extra
// replicas are shared by the two ReplicaSets in proportion to their size.
func TestProportionalScaling(t *testing.T) {
	cases := []struct {
		name      string
		from, to  int32
		old, new  int32
		wantSizes map[string]int32
	}{
		// 10 replicas, surge 3: 8 old + 5 new = 13. Scale to 20 (max 25):
		// +12 shared 8:5 → old 8*25/13≈15 (+7), new 5*25/13≈10 (+5).
		{"up", 10, 20, 8, 5, map[string]int32{"nginx:0": 15, "nginx:1": 10}},
		// Scale to 5 (max 7 with surge 2): -6 shared: old 8*7/13≈4 (-4), new -2.
		{"down", 10, 5, 8, 5, map[string]int32{"nginx:0": 4, "nginx:1": 3}},
		{"to zero", 10, 0, 8, 5, map[string]int32{"nginx:0": 0, "nginx:1": 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := newDeployment(tc.to, intstr.FromString("25%"), intstr.FromString("25%"))
			prev := newDeployment(tc.from, intstr.FromString("25%"), intstr.FromString("25%"))
			maxR := tc.from + maxSurge(prev)
			old := rsFor(d, "nginx:0", tc.old, tc.old, 1, tc.from, maxR, time.Hour)
			nw := rsFor(d, "nginx:1", tc.new, 0, 2, tc.from, maxR, time.Minute)
			f := newFixture(t, d, old, nw)
			if err := f.c.sync(context.Background(), "ns/web"); err != nil {
				t.Fatal(err)
			}
			got := f.sizes(t)
			if got["nginx:0"] != tc.wantSizes["nginx:0"] || got["nginx:1"] != tc.wantSizes["nginx:1"] {
				t.Errorf("sizes = %v, want %v", got, tc.wantSizes)
			}
		})
	}
}

func TestRecreateScalesOldDownFirst(t *testing.T) {
	d := newDeployment(2, intstr.FromInt32(0), intstr.FromInt32(1))
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	old := rsFor(d, "nginx:0", 2, 2, 1, 2, 2, time.Hour)
	f := newFixture(t, d, old)
	if err := f.c.sync(context.Background(), "ns/web"); err != nil {
		t.Fatal(err)
	}
	if got := f.sizes(t); len(got) != 1 || got["nginx:0"] != 0 {
		t.Fatalf("after first sync sizes = %v, want only the old one, at 0", got)
	}
	// Old pods still reported: no new replica set yet.
	old.Spec.Replicas = ptrTo[int32](0)
	f = newFixture(t, d, old)
	if err := f.c.sync(context.Background(), "ns/web"); err != nil {
		t.Fatal(err)
	}
	if got := f.sizes(t); len(got) != 1 {
		t.Fatalf("new replica set created while old pods run: %v", got)
	}
	old.Status = appsv1.ReplicaSetStatus{ObservedGeneration: 1}
	f = newFixture(t, d, old)
	if err := f.c.sync(context.Background(), "ns/web"); err != nil {
		t.Fatal(err)
	}
	if got := f.sizes(t); got["nginx:1"] != 2 {
		t.Fatalf("sizes = %v, want new replica set at 2", got)
	}
}

// TestProgressDeadline drives the injected clock past the deadline.
func TestProgressDeadline(t *testing.T) {
	d := newDeployment(2, intstr.FromInt32(1), intstr.FromInt32(0))
	d.Spec.ProgressDeadlineSeconds = ptrTo[int32](60)
	d.Annotations = map[string]string{RevisionAnnotation: "1"}
	rs := rsFor(d, "nginx:1", 2, 0, 1, 2, 3, time.Minute)
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2, UnavailableReplicas: 2,
		Conditions: []appsv1.DeploymentCondition{newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonRSUpdated, "", t0)}}
	for _, tc := range []struct {
		after      time.Duration
		wantStatus corev1.ConditionStatus
		wantReason string
	}{
		{30 * time.Second, corev1.ConditionTrue, reasonRSUpdated},
		{61 * time.Second, corev1.ConditionFalse, reasonTimedOut},
	} {
		f := newFixture(t, d, rs)
		f.now = t0.Add(tc.after)
		if err := f.c.sync(context.Background(), "ns/web"); err != nil {
			t.Fatal(err)
		}
		c := condition(&f.deployment(t).Status, appsv1.DeploymentProgressing)
		if c == nil || c.Status != tc.wantStatus || c.Reason != tc.wantReason {
			t.Errorf("after %v: Progressing = %+v, want %s %s", tc.after, c, tc.wantStatus, tc.wantReason)
		}
	}
}

func TestPausedDoesNotRollOut(t *testing.T) {
	d := newDeployment(2, intstr.FromInt32(1), intstr.FromInt32(0))
	d.Spec.Paused = true
	old := rsFor(d, "nginx:0", 2, 2, 1, 2, 3, time.Hour)
	f := newFixture(t, d, old)
	if err := f.c.sync(context.Background(), "ns/web"); err != nil {
		t.Fatal(err)
	}
	if got := f.sizes(t); len(got) != 1 {
		t.Fatalf("paused deployment rolled out: %v", got)
	}
	c := condition(&f.deployment(t).Status, appsv1.DeploymentProgressing)
	if c == nil || c.Reason != reasonPaused || c.Status != corev1.ConditionUnknown {
		t.Errorf("Progressing = %+v, want Unknown %s", c, reasonPaused)
	}
}

func TestCleanupKeepsHistoryLimit(t *testing.T) {
	d := newDeployment(1, intstr.FromInt32(1), intstr.FromInt32(0))
	d.Spec.RevisionHistoryLimit = ptrTo[int32](2)
	objs := []runtime.Object{d}
	for i := range 4 {
		rs := rsFor(d, "nginx:old"+strconv.Itoa(i), 0, 0, i+1, 1, 2, time.Duration(10-i)*time.Hour)
		rs.Status = appsv1.ReplicaSetStatus{ObservedGeneration: 1}
		objs = append(objs, rs)
	}
	objs = append(objs, rsFor(d, "nginx:1", 1, 1, 5, 1, 2, time.Minute))
	f := newFixture(t, objs...)
	if err := f.c.sync(context.Background(), "ns/web"); err != nil {
		t.Fatal(err)
	}
	var left []string
	for img := range f.sizes(t) {
		left = append(left, img)
	}
	sort.Strings(left)
	want := []string{"nginx:1", "nginx:old2", "nginx:old3"}
	if len(left) != len(want) || left[0] != want[0] || left[1] != want[1] || left[2] != want[2] {
		t.Errorf("replica sets left = %v, want %v", left, want)
	}
}
