package storage

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// TestGuaranteedUpdateFrom checks that an update starting from a cached
// copy never loses a write or acts on a stale object: whatever the cache
// holds, the result is what a read-modify-write of the stored object gives.
func TestGuaranteedUpdateFrom(t *testing.T) {
	t.Parallel()
	s, _ := newPodStore(t)
	setLabel := func(v string) UpdateFunc {
		return func(cur runtime.Object) (runtime.Object, error) {
			p := cur.(*corev1.Pod).DeepCopy()
			p.Labels["a"] = v
			return p, nil
		}
	}
	cases := []struct {
		name string
		// stale: another write (label "b") lands after the cache's copy.
		stale bool
		pre   func(cur *corev1.Pod) *Preconditions
		fn    UpdateFunc
		// wantA is label "a" after the update; wantWrite: a new revision.
		wantA     string
		wantWrite bool
		// dropsB: fn removes the concurrent write's label on purpose.
		dropsB bool
	}{
		{name: "current cache", fn: setLabel("2"), wantA: "2", wantWrite: true},
		{name: "stale cache keeps the other write", stale: true, fn: setLabel("2"), wantA: "2", wantWrite: true},
		{name: "no-op on the cached copy is checked against the store", stale: true, fn: func(cur runtime.Object) (runtime.Object, error) {
			// Undo the concurrent write: a no-op on the stale copy.
			p := cur.(*corev1.Pod).DeepCopy()
			delete(p.Labels, "b")
			return p, nil
		}, wantA: "1", wantWrite: true, dropsB: true},
		{name: "no-op on the current object", fn: setLabel("1"), wantA: "1"},
		{name: "fn refusing the stale copy is retried", stale: true, fn: func(cur runtime.Object) (runtime.Object, error) {
			p := cur.(*corev1.Pod).DeepCopy()
			if p.Labels["b"] == "" {
				return nil, errors.New("stale")
			}
			p.Labels["a"] = "3"
			return p, nil
		}, wantA: "3", wantWrite: true},
		{name: "preconditions checked against the store", stale: true, pre: func(cur *corev1.Pod) *Preconditions {
			rv := cur.ResourceVersion
			return &Preconditions{ResourceVersion: &rv}
		}, fn: setLabel("4"), wantA: "4", wantWrite: true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := makePod("ns", "p"+string(rune('a'+i))).label("a", "1").obj()
			p.UID = types.UID("uid")
			cached := mustCreate(t, s, p)
			snapshot := cached.DeepCopy()
			cur := cached
			if tc.stale {
				cur = mustUpdate(t, s, podKey(p), func(p *corev1.Pod) { p.Labels["b"] = "x" })
			}
			var pre *Preconditions
			if tc.pre != nil {
				pre = tc.pre(cur)
			}
			out, err := s.GuaranteedUpdateFrom(context.Background(), podKey(p), pre, tc.fn, cached)
			if err != nil {
				t.Fatal(err)
			}
			got := out.(*corev1.Pod)
			if got.Labels["a"] != tc.wantA {
				t.Errorf("label a = %q, want %q", got.Labels["a"], tc.wantA)
			}
			if tc.stale && !tc.dropsB && got.Labels["b"] != "x" {
				t.Errorf("the concurrent write was lost: labels %v", got.Labels)
			}
			if wrote := rvOf(t, got) > rvOf(t, cur); wrote != tc.wantWrite {
				t.Errorf("wrote = %v (rv %s after %s), want %v", wrote, got.ResourceVersion, cur.ResourceVersion, tc.wantWrite)
			}
			stored, err := s.Get(context.Background(), podKey(p))
			if err != nil {
				t.Fatal(err)
			}
			if !equality.Semantic.DeepEqual(stored, got) {
				t.Errorf("result differs from the stored object:\n%v\n%v", got, stored)
			}
			if !equality.Semantic.DeepEqual(cached, snapshot) {
				t.Error("the cached object was modified")
			}
		})
	}
}

// TestCacherUpdateUsesCache checks updates through the cacher, back to back
// (each starting from a cache that may not have seen the previous one).
func TestCacherUpdateUsesCache(t *testing.T) {
	t.Parallel()
	s, _ := newPodStore(t)
	c := newPodCacher(t, s, nil)
	p := mustCreate(t, c, makePod("ns", "p").label("n", "").obj())
	waitRevision(t, c, rvOf(t, p))
	for i := range 20 {
		mustUpdate(t, c, podKey(p), func(p *corev1.Pod) { p.Labels["n"] += "x" })
		if i%5 == 0 {
			waitRevision(t, c, rvOf(t, p))
		}
	}
	got, err := s.Get(context.Background(), podKey(p))
	if err != nil {
		t.Fatal(err)
	}
	if n := got.(*corev1.Pod).Labels["n"]; len(n) != 20 {
		t.Errorf("label n = %q after 20 appends: an update was lost", n)
	}
}
