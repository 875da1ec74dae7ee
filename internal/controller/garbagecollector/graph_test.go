package garbagecollector

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

func TestGraph(t *testing.T) {
	t.Parallel()
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	ref := func(uid string) objRef { return objRef{GVR: gvr, Namespace: "ns", Name: uid, UID: types.UID(uid)} }
	owns := func(uids ...string) []metav1.OwnerReference {
		var out []metav1.OwnerReference
		for _, u := range uids {
			out = append(out, metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: u, UID: types.UID(u)})
		}
		return out
	}
	cases := []struct {
		name  string
		steps func(g *graph)
		owner string
		want  int
	}{
		{name: "dependents indexed before the owner is seen", steps: func(g *graph) {
			g.upsert(ref("d1"), owns("o"))
			g.upsert(ref("d2"), owns("o", "p"))
		}, owner: "o", want: 2},
		{name: "owner reference removed", steps: func(g *graph) {
			g.upsert(ref("d1"), owns("o"))
			g.upsert(ref("d1"), nil)
		}, owner: "o", want: 0},
		{name: "dependent deleted", steps: func(g *graph) {
			g.upsert(ref("d1"), owns("o"))
			g.upsert(ref("d2"), owns("o"))
			g.remove("d1")
		}, owner: "o", want: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newGraph()
			tc.steps(g)
			if got := len(g.dependentsOf(types.UID(tc.owner))); got != tc.want {
				t.Errorf("dependents of %s = %d, want %d", tc.owner, got, tc.want)
			}
		})
	}

	g := newGraph()
	g.upsert(ref("o"), nil)
	g.upsert(ref("d"), owns("o"))
	if changed := g.upsert(ref("d"), owns("o")); changed {
		t.Errorf("same owners reported as a change")
	}
	deps, _ := g.remove("o")
	if len(deps) != 1 || deps[0].UID != "d" {
		t.Errorf("removing the owner returned dependents %v, want [d]", deps)
	}
	if _, ok := g.lookup("o"); ok {
		t.Errorf("removed owner still found")
	}
}
