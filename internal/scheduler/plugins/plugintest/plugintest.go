// Package plugintest runs one scheduler plugin (or a few) over a set of
// nodes and bound pods, for the plugins' table-driven unit tests.
package plugintest

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	schedcache "github.com/skiffhq/skiff/internal/scheduler/cache"
	"github.com/skiffhq/skiff/internal/scheduler/framework"
)

// Env is a framework over an in-memory cache.
type Env struct {
	Fwk      *framework.Framework
	Snapshot *schedcache.Snapshot
}

// New builds a framework running the named plugin as filter (if it is
// one) and as scorer with weight 1 (if it is one), over nodes and pods
// (pods with spec.nodeName set are bound there). nsLabels gives
// namespace labels.
func New(t testing.TB, name string, factory framework.PluginFactory, args any, nodes []*corev1.Node, pods []*corev1.Pod, nsLabels map[string]labels.Set) *Env {
	t.Helper()
	probe, err := factory(args, nil)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	prof := framework.Profile{PluginArgs: map[string]any{name: args}}
	if _, ok := probe.(framework.FilterPlugin); ok {
		prof.Filters = []string{name}
	}
	if _, ok := probe.(framework.ScorePlugin); ok {
		prof.Scores = []framework.WeightedPlugin{{Name: name, Weight: 1}}
	}
	if _, ok := probe.(framework.PostFilterPlugin); ok {
		prof.PostFilters = []string{name}
	}
	c := schedcache.New()
	for _, n := range nodes {
		c.AddNode(n)
	}
	for _, p := range pods {
		c.AddPod(p)
	}
	snap := schedcache.NewSnapshot()
	c.UpdateSnapshot(snap)
	fwk, err := framework.New(framework.Registry{name: factory}, prof, framework.Options{
		NamespaceLabels: func(ns string) labels.Set { return nsLabels[ns] },
	})
	if err != nil {
		t.Fatal(err)
	}
	fwk.SetSnapshot(snap)
	return &Env{Fwk: fwk, Snapshot: snap}
}

// Filter runs PreFilter then Filter on every node and returns each node's
// status (a PreFilter rejection applies to all nodes).
func (e *Env) Filter(pod *corev1.Pod) (map[string]*framework.Status, *framework.CycleState) {
	ctx := context.Background()
	state := framework.NewCycleState()
	out := map[string]*framework.Status{}
	_, st := e.Fwk.RunPreFilterPlugins(ctx, state, pod)
	for _, ni := range e.Snapshot.List() {
		if !st.IsSuccess() {
			out[ni.Node().Name] = st
			continue
		}
		out[ni.Node().Name] = e.Fwk.RunFilterPlugins(ctx, state, pod, ni)
	}
	return out, state
}

// Scores runs PreScore, Score and normalisation on every node.
func (e *Env) Scores(t testing.TB, pod *corev1.Pod) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	state := framework.NewCycleState()
	nodes := e.Snapshot.List()
	if st := e.Fwk.RunPreScorePlugins(ctx, state, pod, nodes); !st.IsSuccess() {
		t.Fatalf("PreScore: %v", st.AsError())
	}
	scores, st := e.Fwk.RunScorePlugins(ctx, state, pod, nodes)
	if !st.IsSuccess() {
		t.Fatalf("Score: %v", st.AsError())
	}
	out := map[string]int64{}
	for _, s := range scores {
		out[s.Name] = s.TotalScore
	}
	return out
}

// Fits lists the nodes whose status is success.
func Fits(m map[string]*framework.Status) map[string]bool {
	out := map[string]bool{}
	for n, s := range m {
		if s.IsSuccess() {
			out[n] = true
		}
	}
	return out
}
