package interpodaffinity_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
	ipa "github.com/skiffhq/skiff/internal/scheduler/plugins/interpodaffinity"
	"github.com/skiffhq/skiff/internal/scheduler/plugins/plugintest"
	"github.com/skiffhq/skiff/internal/testutil"
)

func TestFilter(t *testing.T) {
	host, zone := corev1.LabelHostname, corev1.LabelTopologyZone
	term := testutil.PodAffinityTerm
	nodes := []*corev1.Node{
		testutil.MakeNode("a1").Zone("a").Obj(),
		testutil.MakeNode("a2").Zone("a").Obj(),
		testutil.MakeNode("b1").Zone("b").Obj(),
	}
	nsSel := term(host, "app", "db")
	nsSel.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "x"}}
	cases := []struct {
		name     string
		existing []*corev1.Pod
		pod      *corev1.Pod
		fits     []string
		reason   string
	}{
		{"affinity host", []*corev1.Pod{testutil.MakePod("db").Label("app", "db").Node("a2").Obj()},
			testutil.MakePod("p").PodAffinity(term(host, "app", "db")).Obj(), []string{"a2"}, ipa.ErrReasonAffinity},
		{"affinity zone", []*corev1.Pod{testutil.MakePod("db").Label("app", "db").Node("a2").Obj()},
			testutil.MakePod("p").PodAffinity(term(zone, "app", "db")).Obj(), []string{"a1", "a2"}, ipa.ErrReasonAffinity},
		{"affinity other namespace ignored", []*corev1.Pod{testutil.MakePod("db").Namespace("other").Label("app", "db").Node("a2").Obj()},
			testutil.MakePod("p").Label("app", "x").PodAffinity(term(host, "app", "db")).Obj(), nil, ipa.ErrReasonAffinity},
		{"first of a group goes anywhere", nil,
			testutil.MakePod("p").Label("app", "db").PodAffinity(term(zone, "app", "db")).Obj(), []string{"a1", "a2", "b1"}, ""},
		{"namespaceSelector", []*corev1.Pod{testutil.MakePod("db").Namespace("x-ns").Label("app", "db").Node("b1").Obj()},
			testutil.MakePod("p").PodAffinity(nsSel).Obj(), []string{"b1"}, ipa.ErrReasonAffinity},
		{"anti-affinity host", []*corev1.Pod{testutil.MakePod("web").Label("app", "web").Node("a1").Obj()},
			testutil.MakePod("p").PodAntiAffinity(term(host, "app", "web")).Obj(), []string{"a2", "b1"}, ipa.ErrReasonAntiAffinity},
		{"anti-affinity zone", []*corev1.Pod{testutil.MakePod("web").Label("app", "web").Node("a1").Obj()},
			testutil.MakePod("p").PodAntiAffinity(term(zone, "app", "web")).Obj(), []string{"b1"}, ipa.ErrReasonAntiAffinity},
		{"existing pod's anti-affinity", []*corev1.Pod{testutil.MakePod("loner").Node("b1").PodAntiAffinity(term(zone, "role", "noisy")).Obj()},
			testutil.MakePod("p").Label("role", "noisy").Obj(), []string{"a1", "a2"}, ipa.ErrReasonExistingAntiAffinity},
	}
	ns := map[string]labels.Set{"x-ns": {"team": "x"}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := plugintest.New(t, ipa.Name, ipa.New, nil, nodes, tc.existing, ns)
			got, _ := env.Filter(tc.pod)
			fits := plugintest.Fits(got)
			if len(fits) != len(tc.fits) {
				t.Fatalf("fits %v, want %v", fits, tc.fits)
			}
			for _, n := range tc.fits {
				if !fits[n] {
					t.Fatalf("fits %v, want %v", fits, tc.fits)
				}
			}
			for n, s := range got {
				if !s.IsSuccess() && s.Message() != tc.reason {
					t.Errorf("node %s: %q, want %q", n, s.Message(), tc.reason)
				}
			}
		})
	}
}

// TestPreFilterExtensions: removing the only matching pod from a node
// (preemption's what-if) reopens it to an anti-affine pod.
func TestPreFilterExtensions(t *testing.T) {
	nodes := []*corev1.Node{testutil.MakeNode("n").Obj()}
	web := testutil.MakePod("web").Label("app", "web").Node("n").Obj()
	env := plugintest.New(t, ipa.Name, ipa.New, nil, nodes, []*corev1.Pod{web}, nil)
	pod := testutil.MakePod("p").PodAntiAffinity(testutil.PodAffinityTerm(corev1.LabelHostname, "app", "web")).Obj()
	got, state := env.Filter(pod)
	if got["n"].IsSuccess() {
		t.Fatal("anti-affine pod fits next to web")
	}
	ni := env.Snapshot.Get("n").Clone()
	ni.RemovePod(web)
	if st := env.Fwk.RunPreFilterExtensionRemovePod(t.Context(), state, pod, framework.NewPodInfo(web), ni); !st.IsSuccess() {
		t.Fatal(st.AsError())
	}
	if st := env.Fwk.RunFilterPlugins(t.Context(), state, pod, ni); !st.IsSuccess() {
		t.Fatalf("after removing web: %s", st.Message())
	}
}

func TestScore(t *testing.T) {
	term := testutil.PodAffinityTerm
	nodes := []*corev1.Node{testutil.MakeNode("a").Obj(), testutil.MakeNode("b").Obj(), testutil.MakeNode("c").Obj()}
	existing := []*corev1.Pod{
		testutil.MakePod("cache").Label("app", "cache").Node("a").Obj(),
		testutil.MakePod("noisy").Label("app", "noisy").Node("b").Obj(),
	}
	env := plugintest.New(t, ipa.Name, ipa.New, nil, nodes, existing, nil)
	got := env.Scores(t, testutil.MakePod("p").PreferredPodAffinity(50, term(corev1.LabelHostname, "app", "cache")).PreferredPodAntiAffinity(50, term(corev1.LabelHostname, "app", "noisy")).Obj())
	if got["a"] != 100 || got["b"] != 0 || got["c"] != 50 {
		t.Errorf("scores %v, want a 100, c 50, b 0", got)
	}
}
