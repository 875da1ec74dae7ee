package replicaset

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/skiffhq/skiff/internal/controller"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// fixture is a controller on a fake clientset whose informer caches the
// test fills by hand, so a sync sees exactly the state the case sets up.
type fixture struct {
	c      *Controller
	client *fake.Clientset
	inf    informers.SharedInformerFactory
	now    time.Time
}

func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	client := fake.NewClientset(objs...)
	// The fake clientset does not implement generateName.
	var seq atomic.Int32
	client.PrependReactor("create", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
		p := a.(clienttesting.CreateAction).GetObject().(*corev1.Pod)
		if p.Name == "" {
			p.Name = fmt.Sprintf("%s%d", p.GenerateName, seq.Add(1))
		}
		return false, nil, nil
	})
	inf := informers.NewSharedInformerFactory(client, 0)
	f := &fixture{client: client, inf: inf, now: t0}
	c, err := New(&controller.Context{
		Client: client, Informers: inf,
		Recorder: func(string) record.EventRecorder { return record.NewFakeRecorder(100) },
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:      func() time.Time { return f.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	f.c = c
	for _, o := range objs {
		switch o := o.(type) {
		case *appsv1.ReplicaSet:
			_ = inf.Apps().V1().ReplicaSets().Informer().GetIndexer().Add(o)
		case *corev1.Pod:
			_ = inf.Core().V1().Pods().Informer().GetIndexer().Add(o)
		}
	}
	return f
}

func (f *fixture) actions(verb, resource string) []clienttesting.Action {
	var out []clienttesting.Action
	for _, a := range f.client.Actions() {
		if a.GetVerb() == verb && a.GetResource().Resource == resource {
			out = append(out, a)
		}
	}
	return out
}

func newRS(name string, replicas int32) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name), Generation: 1},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
			},
		},
	}
}

// podOf makes a running, ready pod owned by rs (or an orphan when rs is
// nil) that has been ready since readyFor ago.
func podOf(rs *appsv1.ReplicaSet, name string, app string, readyFor time.Duration) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name), Labels: map[string]string{"app": app}},
		Spec:       corev1.PodSpec{NodeName: "n1"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0.Add(-readyFor))},
		}},
	}
	if rs != nil {
		p.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(rs, controllerKind)}
	}
	return p
}

func TestSync(t *testing.T) {
	rs := newRS("web", 3)
	cases := []struct {
		name                  string
		replicas              int32
		minReady              int32
		pods                  []*corev1.Pod
		wantCreates, wantDels int
		wantPatches           int
		wantReady, wantAvail  int32
		wantStatusReplicas    int32
	}{
		{name: "creates missing pods", replicas: 3, wantCreates: 3},
		{name: "steady", replicas: 2, pods: []*corev1.Pod{podOf(rs, "a", "web", time.Minute), podOf(rs, "b", "web", time.Minute)},
			wantReady: 2, wantAvail: 2, wantStatusReplicas: 2},
		{name: "deletes extra", replicas: 1, pods: []*corev1.Pod{podOf(rs, "a", "web", time.Minute), podOf(rs, "b", "web", time.Minute)},
			wantDels: 1, wantReady: 2, wantAvail: 2, wantStatusReplicas: 2},
		{name: "terminating pod replaced", replicas: 1, pods: []*corev1.Pod{func() *corev1.Pod {
			p := podOf(rs, "a", "web", time.Minute)
			p.DeletionTimestamp = &metav1.Time{Time: t0}
			return p
		}()}, wantCreates: 1},
		{name: "adopts orphan", replicas: 1, pods: []*corev1.Pod{podOf(nil, "o", "web", time.Minute)},
			wantPatches: 1, wantReady: 1, wantAvail: 1, wantStatusReplicas: 1},
		{name: "releases non-matching", replicas: 1, pods: []*corev1.Pod{podOf(rs, "x", "other", time.Minute)},
			wantPatches: 1, wantCreates: 1},
		{name: "foreign pod ignored", replicas: 1, pods: []*corev1.Pod{podOf(newRS("other", 1), "f", "web", time.Minute)},
			wantCreates: 1},
		{name: "minReadySeconds holds availability", replicas: 2, minReady: 30,
			pods:      []*corev1.Pod{podOf(rs, "a", "web", time.Minute), podOf(rs, "b", "web", 10*time.Second)},
			wantReady: 2, wantAvail: 1, wantStatusReplicas: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rs.DeepCopy()
			r.Spec.Replicas = &tc.replicas
			r.Spec.MinReadySeconds = tc.minReady
			objs := []runtime.Object{r}
			for _, p := range tc.pods {
				objs = append(objs, p)
			}
			f := newFixture(t, objs...)
			if err := f.c.sync(context.Background(), "ns/web"); err != nil {
				t.Fatalf("sync: %v", err)
			}
			if got := len(f.actions("create", "pods")); got != tc.wantCreates {
				t.Errorf("creates = %d, want %d", got, tc.wantCreates)
			}
			if got := len(f.actions("delete", "pods")); got != tc.wantDels {
				t.Errorf("deletes = %d, want %d", got, tc.wantDels)
			}
			if got := len(f.actions("patch", "pods")); got != tc.wantPatches {
				t.Errorf("patches = %d, want %d", got, tc.wantPatches)
			}
			got, err := f.client.AppsV1().ReplicaSets("ns").Get(context.Background(), "web", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			st := got.Status
			if st.Replicas != tc.wantStatusReplicas || st.ReadyReplicas != tc.wantReady || st.AvailableReplicas != tc.wantAvail || st.ObservedGeneration != 1 {
				t.Errorf("status = %+v, want replicas %d ready %d available %d observedGeneration 1", st, tc.wantStatusReplicas, tc.wantReady, tc.wantAvail)
			}
		})
	}
}

// TestExpectationsPreventOverCreation syncs twice before the informer has
// seen any created pod: the second sync must not create again.
func TestExpectationsPreventOverCreation(t *testing.T) {
	f := newFixture(t, newRS("web", 3))
	for range 2 {
		if err := f.c.sync(context.Background(), "ns/web"); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(f.actions("create", "pods")); got != 3 {
		t.Fatalf("creates = %d after two syncs on a stale cache, want 3", got)
	}
	// Past the TTL the cache is trusted again.
	f.now = f.now.Add(expectationsTTL + time.Second)
	if err := f.c.sync(context.Background(), "ns/web"); err != nil {
		t.Fatal(err)
	}
	if got := len(f.actions("create", "pods")); got != 6 {
		t.Fatalf("creates = %d after expiry, want 6", got)
	}
}

func TestCreateFailureSetsReplicaFailure(t *testing.T) {
	f := newFixture(t, newRS("web", 4))
	var calls atomic.Int32
	f.client.PrependReactor("create", "pods", func(clienttesting.Action) (bool, runtime.Object, error) {
		calls.Add(1)
		return true, nil, errors.New("quota exceeded")
	})
	if err := f.c.sync(context.Background(), "ns/web"); err == nil {
		t.Fatal("sync succeeded despite failing creates")
	}
	// Slow start: the first batch of one failed, so no more were tried.
	if got := calls.Load(); got != 1 {
		t.Errorf("create calls = %d, want 1", got)
	}
	got, _ := f.client.AppsV1().ReplicaSets("ns").Get(context.Background(), "web", metav1.GetOptions{})
	cond := replicaFailure(&got.Status)
	if cond == nil || cond.Reason != "FailedCreate" || cond.Status != corev1.ConditionTrue {
		t.Fatalf("ReplicaFailure condition = %+v, want True FailedCreate", cond)
	}
	// The failed creations were written off: the next sync tries again.
	if !f.c.exp.Satisfied("ns/web") {
		t.Error("expectations still pending after failed creates")
	}
}

func TestSlowStartBatch(t *testing.T) {
	cases := []struct {
		count, failAt int // failAt: the call number (1-based) that fails; 0 none
		wantOK        int
		wantCalls     int32
	}{
		{count: 0, wantOK: 0, wantCalls: 0},
		{count: 7, wantOK: 7, wantCalls: 7},
		{count: 10, failAt: 1, wantOK: 0, wantCalls: 1},
		// Batches 1, 2, 4: call 4 is in the third batch; 3 earlier succeed, 3 of the batch of 4 do too.
		{count: 10, failAt: 4, wantOK: 6, wantCalls: 7},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d/%d", tc.count, tc.failAt), func(t *testing.T) {
			var calls atomic.Int32
			ok, err := slowStartBatch(tc.count, func() error {
				if n := calls.Add(1); int(n) == tc.failAt {
					return errors.New("boom")
				}
				return nil
			})
			if ok != tc.wantOK || calls.Load() != tc.wantCalls || (err != nil) != (tc.failAt != 0) {
				t.Errorf("ok=%d calls=%d err=%v, want ok=%d calls=%d", ok, calls.Load(), err, tc.wantOK, tc.wantCalls)
			}
		})
	}
}
