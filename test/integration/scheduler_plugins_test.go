package integration

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/internal/scheduler"
	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/internal/testutil"
)

// TestSchedulerPluginsEndToEnd runs every filter and score against one
// control plane. Each case has its own nodes, labelled case=<name>, and
// its pods select them, so cases do not see each other's nodes. Score
// cases make the expected node worse on resources, so only the plugin
// under test can win it.
func TestSchedulerPluginsEndToEnd(t *testing.T) {
	t.Parallel()
	cp := schedCluster(t)
	c := cp.Client
	ctx := context.Background()
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", Labels: map[string]string{"team": "a"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	term := testutil.PodAffinityTerm
	gpu := corev1.ResourceName("example.com/gpu")
	cases := []struct {
		name     string
		nodes    []*testutil.NodeWrapper
		existing []*testutil.PodWrapper // bound to the node set with Node()
		pod      *testutil.PodWrapper
		want     string
	}{
		{name: "unschedulable", nodes: []*testutil.NodeWrapper{testutil.MakeNode("unsched-1").Unschedulable(), testutil.MakeNode("unsched-2").Capacity("1", "1Gi", 110)},
			pod: testutil.MakePod("p"), want: "unsched-2"},
		{name: "affinity-gt", nodes: []*testutil.NodeWrapper{testutil.MakeNode("gt-1").Label("gen", "3"), testutil.MakeNode("gt-2").Label("gen", "5").Capacity("1", "1Gi", 110)},
			pod: testutil.MakePod("p").NodeAffinity(corev1.NodeSelectorRequirement{Key: "gen", Operator: corev1.NodeSelectorOpGt, Values: []string{"4"}}), want: "gt-2"},
		{name: "affinity-notin-fields", nodes: []*testutil.NodeWrapper{testutil.MakeNode("fields-1"), testutil.MakeNode("fields-2").Capacity("1", "1Gi", 110), testutil.MakeNode("fields-3").Label("bad", "x")},
			pod: testutil.MakePod("p").NodeAffinity(corev1.NodeSelectorRequirement{Key: "bad", Operator: corev1.NodeSelectorOpDoesNotExist}).NodeAffinityFieldName("fields-2", "fields-3"), want: "fields-2"},
		{name: "selector", nodes: []*testutil.NodeWrapper{testutil.MakeNode("sel-1"), testutil.MakeNode("sel-2").Label("disk", "ssd").Capacity("1", "1Gi", 110)},
			pod: testutil.MakePod("p").NodeSelector("disk", "ssd"), want: "sel-2"},
		{name: "taints", nodes: []*testutil.NodeWrapper{testutil.MakeNode("taint-1").Taint("k", "v", corev1.TaintEffectNoExecute), testutil.MakeNode("taint-2").Taint("gpu", "yes", corev1.TaintEffectNoSchedule).Capacity("1", "1Gi", 110)},
			pod: testutil.MakePod("p").Toleration("gpu", corev1.TolerationOpExists, "", corev1.TaintEffectNoSchedule), want: "taint-2"},
		{name: "extended", nodes: []*testutil.NodeWrapper{testutil.MakeNode("ext-1"), testutil.MakeNode("ext-2").Capacity("1", "1Gi", 110).Resource(gpu, "1")},
			pod: testutil.MakePod("p").ReqList(corev1.ResourceList{gpu: resource.MustParse("1")}, "", ""), want: "ext-2"},
		{name: "init-overhead", nodes: []*testutil.NodeWrapper{testutil.MakeNode("init-1").Capacity("2", "8Gi", 110), testutil.MakeNode("init-2").Capacity("4", "8Gi", 110)},
			pod: testutil.MakePod("p").Req("1", "").InitContainer("1500m", "", false).Overhead("1", ""), want: "init-2"},
		{name: "ports", nodes: []*testutil.NodeWrapper{testutil.MakeNode("ports-1"), testutil.MakeNode("ports-2").Capacity("1", "1Gi", 110)},
			existing: []*testutil.PodWrapper{testutil.MakePod("holder").Node("ports-1").HostPort(8080, corev1.ProtocolTCP, "")},
			pod:      testutil.MakePod("p").HostPort(8080, corev1.ProtocolTCP, "10.0.0.1"), want: "ports-2"},
		{name: "pod-affinity", nodes: []*testutil.NodeWrapper{testutil.MakeNode("paff-1"), testutil.MakeNode("paff-2").Capacity("1", "1Gi", 110)},
			existing: []*testutil.PodWrapper{testutil.MakePod("db").Label("app", "paff-db").Node("paff-2")},
			pod:      testutil.MakePod("p").PodAffinity(term(corev1.LabelHostname, "app", "paff-db")), want: "paff-2"},
		{name: "pod-affinity-zone", nodes: []*testutil.NodeWrapper{testutil.MakeNode("zaff-1").Zone("zaff-a"), testutil.MakeNode("zaff-2").Zone("zaff-b").Capacity("1", "1Gi", 110), testutil.MakeNode("zaff-3").Zone("zaff-b")},
			existing: []*testutil.PodWrapper{testutil.MakePod("db").Label("app", "zaff-db").Node("zaff-3").Req("4", "")},
			pod:      testutil.MakePod("p").Req("100m", "").PodAffinity(term(corev1.LabelTopologyZone, "app", "zaff-db")), want: "zaff-2"},
		{name: "anti-affinity", nodes: []*testutil.NodeWrapper{testutil.MakeNode("anti-1"), testutil.MakeNode("anti-2").Capacity("1", "1Gi", 110)},
			existing: []*testutil.PodWrapper{testutil.MakePod("web").Label("app", "anti-web").Node("anti-1")},
			pod:      testutil.MakePod("p").Label("app", "anti-web").PodAntiAffinity(term(corev1.LabelHostname, "app", "anti-web")), want: "anti-2"},
		{name: "existing-anti", nodes: []*testutil.NodeWrapper{testutil.MakeNode("xanti-1"), testutil.MakeNode("xanti-2").Capacity("1", "1Gi", 110)},
			existing: []*testutil.PodWrapper{testutil.MakePod("loner").Node("xanti-1").PodAntiAffinity(term(corev1.LabelHostname, "role", "xanti-noisy"))},
			pod:      testutil.MakePod("p").Label("role", "xanti-noisy"), want: "xanti-2"},
		{name: "namespace-selector", nodes: []*testutil.NodeWrapper{testutil.MakeNode("nssel-1"), testutil.MakeNode("nssel-2").Capacity("1", "1Gi", 110)},
			existing: []*testutil.PodWrapper{testutil.MakePod("db").Namespace("team-a").Label("app", "nssel-db").Node("nssel-2")},
			pod: func() *testutil.PodWrapper {
				t := term(corev1.LabelHostname, "app", "nssel-db")
				t.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
				return testutil.MakePod("p").PodAffinity(t)
			}(), want: "nssel-2"},
		{name: "spread", nodes: []*testutil.NodeWrapper{testutil.MakeNode("spread-1").Zone("spread-a"), testutil.MakeNode("spread-2").Zone("spread-b").Capacity("1", "1Gi", 110)},
			existing: []*testutil.PodWrapper{testutil.MakePod("s0").Label("app", "spread").Node("spread-1")},
			pod:      testutil.MakePod("p").Label("app", "spread").SpreadConstraint(1, corev1.LabelTopologyZone, corev1.DoNotSchedule, "app", "spread", nil), want: "spread-2"},
		// Scores.
		{name: "least-allocated", nodes: []*testutil.NodeWrapper{testutil.MakeNode("least-1"), testutil.MakeNode("least-2")},
			existing: []*testutil.PodWrapper{testutil.MakePod("busy").Node("least-1").Req("3", "6Gi")},
			pod:      testutil.MakePod("p").Req("100m", "100Mi"), want: "least-2"},
		{name: "preferred-node-affinity", nodes: []*testutil.NodeWrapper{testutil.MakeNode("pna-1").Label("disk", "hdd"), testutil.MakeNode("pna-2").Label("disk", "ssd").Capacity("3", "6Gi", 110)},
			pod: testutil.MakePod("p").PreferredNodeAffinity(10, "disk", "ssd"), want: "pna-2"},
		{name: "preferred-pod-affinity", nodes: []*testutil.NodeWrapper{testutil.MakeNode("ppa-1").Capacity("8", "16Gi", 110), testutil.MakeNode("ppa-2")},
			existing: []*testutil.PodWrapper{testutil.MakePod("cache").Label("app", "ppa-cache").Node("ppa-2")},
			pod:      testutil.MakePod("p").PreferredPodAffinity(100, term(corev1.LabelHostname, "app", "ppa-cache")), want: "ppa-2"},
		{name: "preferred-anti-affinity", nodes: []*testutil.NodeWrapper{testutil.MakeNode("ppaa-1").Capacity("8", "16Gi", 110), testutil.MakeNode("ppaa-2")},
			existing: []*testutil.PodWrapper{testutil.MakePod("cache").Label("app", "ppaa-x").Node("ppaa-1")},
			pod:      testutil.MakePod("p").PreferredPodAntiAffinity(100, term(corev1.LabelHostname, "app", "ppaa-x")), want: "ppaa-2"},
		{name: "prefer-no-schedule", nodes: []*testutil.NodeWrapper{testutil.MakeNode("pns-1").Capacity("8", "16Gi", 110).Taint("meh", "", corev1.TaintEffectPreferNoSchedule), testutil.MakeNode("pns-2")},
			pod: testutil.MakePod("p"), want: "pns-2"},
		{name: "spread-anyway", nodes: []*testutil.NodeWrapper{testutil.MakeNode("sa-1").Capacity("64", "256Gi", 110), testutil.MakeNode("sa-2")},
			existing: []*testutil.PodWrapper{testutil.MakePod("s0").Label("app", "sa").Node("sa-1"), testutil.MakePod("s1").Label("app", "sa").Node("sa-1")},
			pod:      testutil.MakePod("p").Label("app", "sa").SpreadConstraint(1, corev1.LabelHostname, corev1.ScheduleAnyway, "app", "sa", nil), want: "sa-2"},
		{name: "image-locality", nodes: []*testutil.NodeWrapper{testutil.MakeNode("img-1").Capacity("5", "10Gi", 110), testutil.MakeNode("img-2").Image("registry.example/big:1", 5<<30)},
			pod: testutil.MakePod("p").Image("registry.example/big:1"), want: "img-2"},
	}
	for _, tc := range cases {
		for _, n := range tc.nodes {
			createNode(t, c, n.Label("case", tc.name).Obj())
		}
	}
	var wg sync.WaitGroup
	for _, tc := range cases {
		wg.Add(1)
		t.Run(tc.name, func(t *testing.T) {
			defer wg.Done()
			for i, e := range tc.existing {
				p := e.Obj()
				p.Name = tc.name + "-" + p.Name
				_ = i
				createPod(t, c, p)
			}
			p := tc.pod.Obj()
			p.Name = tc.name
			p.Spec.NodeSelector = map[string]string{"case": tc.name}
			for k, v := range tc.pod.Spec.NodeSelector {
				p.Spec.NodeSelector[k] = v
			}
			createPod(t, c, p)
			expectBoundTo(t, c, p.Namespace, p.Name, tc.want)
		})
	}
}

// TestSchedulerPreemption: a high-priority pod that fits nowhere evicts
// the lowest-priority pod it must, is nominated to the node, and is bound
// there once the victim is gone.
func TestSchedulerPreemption(t *testing.T) {
	t.Parallel()
	cp := schedCluster(t, testutil.MakeNode("n1").Capacity("2", "4Gi", 110).Obj())
	c := cp.Client
	ctx := context.Background()
	never := corev1.PreemptNever
	for _, pc := range []schedulingv1.PriorityClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "low"}, Value: 100},
		{ObjectMeta: metav1.ObjectMeta{Name: "mid"}, Value: 500},
		{ObjectMeta: metav1.ObjectMeta{Name: "high"}, Value: 1000},
		{ObjectMeta: metav1.ObjectMeta{Name: "high-polite"}, Value: 1000, PreemptionPolicy: &never},
	} {
		if _, err := c.SchedulingV1().PriorityClasses().Create(ctx, &pc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// No kubelet runs here, so victims must go at once: grace period 0.
	createPod(t, c, testutil.MakePod("low").PriorityClass("low").Req("1", "").GracePeriod(0).Obj())
	createPod(t, c, testutil.MakePod("mid").PriorityClass("mid").Req("1", "").GracePeriod(0).Obj())
	waitBound(t, c, "default", "low")
	waitBound(t, c, "default", "mid")

	// preemptionPolicy Never: waits, says why.
	createPod(t, c, testutil.MakePod("polite").PriorityClass("high-polite").Req("1", "").Obj())
	waitFailedScheduling(t, c, "default", "polite", "preemption: not eligible due to preemptionPolicy=Never.")

	createPod(t, c, testutil.MakePod("vip").PriorityClass("high").Req("1", "").Obj())
	expectBoundTo(t, c, "default", "vip", "n1")
	if _, err := c.CoreV1().Pods("default").Get(ctx, "low", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("low-priority victim still exists (err %v)", err)
	}
	if _, err := c.CoreV1().Pods("default").Get(ctx, "mid", metav1.GetOptions{}); err != nil {
		t.Errorf("mid-priority pod was preempted too: %v", err)
	}
	testutil.Eventually(t, schedTimeout, func() bool {
		evs, _ := c.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		for _, e := range evs.Items {
			if e.Reason == "Preempted" && e.InvolvedObject.Name == "low" {
				return true
			}
		}
		return false
	}, "Preempted event on the victim")
	p, _ := c.CoreV1().Pods("default").Get(ctx, "polite", metav1.GetOptions{})
	if p.Spec.NodeName != "" {
		t.Errorf("pod with preemptionPolicy Never was bound to %s", p.Spec.NodeName)
	}
}

// TestSchedulerLeaderHandover runs two schedulers against one API server:
// when the leader's context ends the standby takes the lease and
// schedules a new pod within 15 s.
func TestSchedulerLeaderHandover(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t, func(c *server.Config) { c.Disable = append(c.Disable, "controller-manager", "scheduler") })
	c := cp.Client
	createNode(t, c, testutil.MakeNode("n1").Obj())
	start := func(id string) (*scheduler.Scheduler, context.CancelFunc, chan struct{}) {
		s, err := scheduler.New(scheduler.Config{REST: cp.Config, Identity: id, LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond, Logger: testutil.Logger()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = s.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		return s, cancel, done
	}
	a, stopA, doneA := start("a")
	select {
	case <-a.Leading():
	case <-time.After(15 * time.Second):
		t.Fatal("first scheduler never led")
	}
	b, _, _ := start("b")
	createPod(t, c, testutil.MakePod("before").Obj())
	waitBound(t, c, "default", "before")

	stopA()
	<-doneA
	killed := time.Now()
	createPod(t, c, testutil.MakePod("after").Obj())
	waitBound(t, c, "default", "after")
	if took := time.Since(killed); took > 15*time.Second {
		t.Fatalf("standby scheduled %v after the leader died, want within 15s", took)
	}
	select {
	case <-b.Leading():
	default:
		t.Fatal("standby bound the pod without leading")
	}
}
