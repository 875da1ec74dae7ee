package history

import (
	"context"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

var dsKind = appsv1.SchemeGroupVersion.WithKind("DaemonSet")

func template(image string) *corev1.PodTemplateSpec {
	return &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
	}
}

func owner(image string) Owner {
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "ns", UID: "uid-x"}}
	return Owner{Meta: ds, Kind: dsKind, Labels: map[string]string{"app": "x"}, Template: template(image)}
}

func list(t *testing.T, c *fake.Clientset) []*appsv1.ControllerRevision {
	t.Helper()
	l, err := c.AppsV1().ControllerRevisions("ns").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*appsv1.ControllerRevision
	for i := range l.Items {
		out = append(out, &l.Items[i])
	}
	return Controlled(out, "uid-x")
}

func TestTemplateRoundTrip(t *testing.T) {
	t.Parallel()
	data, err := TemplatePatch(template("a:1"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Template(&appsv1.ControllerRevision{Data: runtime.RawExtension{Raw: data}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.Containers[0].Image != "a:1" || got.Labels["app"] != "x" {
		t.Errorf("round trip = %+v", got)
	}
	if want := `"$patch":"replace"`; !strings.Contains(string(data), want) {
		t.Errorf("data %s lacks %s, which kubectl rollout undo relies on", data, want)
	}
}

func TestEnsure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := fake.NewClientset()

	v1, cc, err := Ensure(ctx, c, owner("a:1"), nil, 0)
	if err != nil || cc != 0 {
		t.Fatalf("first: %v cc=%d", err, cc)
	}
	if v1.Revision != 1 || v1.Labels[HashLabel] == "" || v1.Name != "x-"+v1.Labels[HashLabel] || v1.Labels["app"] != "x" {
		t.Errorf("first revision = %s #%d labels %v", v1.Name, v1.Revision, v1.Labels)
	}
	if ref := metav1.GetControllerOf(v1); ref == nil || ref.UID != "uid-x" {
		t.Errorf("owner = %+v", ref)
	}

	again, _, err := Ensure(ctx, c, owner("a:1"), list(t, c), 0)
	if err != nil || again.Name != v1.Name || again.Revision != 1 {
		t.Errorf("same template: %v %s #%d, want reuse of %s #1", err, again.Name, again.Revision, v1.Name)
	}

	v2, _, err := Ensure(ctx, c, owner("a:2"), list(t, c), 0)
	if err != nil || v2.Revision != 2 || v2.Name == v1.Name {
		t.Fatalf("new template: %v %s #%d", err, v2.Name, v2.Revision)
	}

	// Going back to an old template renumbers its revision as the newest.
	back, _, err := Ensure(ctx, c, owner("a:1"), list(t, c), 0)
	if err != nil || back.Name != v1.Name || back.Revision != 3 {
		t.Errorf("rollback: %v %s #%d, want %s #3", err, back.Name, back.Revision, v1.Name)
	}
	if n := len(list(t, c)); n != 2 {
		t.Errorf("%d revisions, want 2", n)
	}
}

func TestEnsureCollision(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	o := owner("a:1")
	data, _ := TemplatePatch(o.Template)
	// Someone else's revision already holds the name our data hashes to.
	squatter := &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{Name: "x-" + Hash(data, new(int32)), Namespace: "ns"},
		Data:       runtime.RawExtension{Raw: []byte(`{}`)},
	}
	c := fake.NewClientset(squatter)
	got, cc, err := Ensure(ctx, c, o, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if cc != 1 || got.Name == squatter.Name || got.Name != "x-"+Hash(data, &cc) {
		t.Errorf("got %s with collision count %d", got.Name, cc)
	}
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var objs []runtime.Object
	var revs []*appsv1.ControllerRevision
	for i, name := range []string{"r1", "r2", "r3", "r4"} {
		cr := &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}, Revision: int64(i + 1)}
		objs = append(objs, cr)
		revs = append(revs, cr)
	}
	c := fake.NewClientset(objs...)
	// r1 is still run by a pod; of r2, r3 (r4 is live too) one may stay.
	if err := Truncate(ctx, c, revs, map[string]bool{"r1": true, "r4": true}, 1); err != nil {
		t.Fatal(err)
	}
	l, _ := c.AppsV1().ControllerRevisions("ns").List(ctx, metav1.ListOptions{})
	var left []string
	for _, cr := range l.Items {
		left = append(left, cr.Name)
	}
	if got := len(left); got != 3 || slices.Contains(left, "r2") {
		t.Errorf("left %v, want r1 r3 r4", left)
	}
}
