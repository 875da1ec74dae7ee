package scheduler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffhq/skiff/internal/scheduler/framework"
)

// These fixtures are built here rather than with testutil's builders:
// testutil starts servers and so imports this package.

func benchNode(i int) *corev1.Node {
	name := fmt.Sprintf("node-%d", i)
	rl := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("128Gi"),
		corev1.ResourcePods: resource.MustParse("110"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			corev1.LabelHostname: name, corev1.LabelTopologyZone: fmt.Sprintf("zone-%d", i%3),
		}},
		Status: corev1.NodeStatus{Capacity: rl, Allocatable: rl},
	}
}

func benchPod(i int) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i), Namespace: "default", UID: types.UID(fmt.Sprintf("uid-%d", i)), Labels: map[string]string{"app": "bench", "group": fmt.Sprintf("g%d", i%50)}},
		Spec: corev1.PodSpec{SchedulerName: DefaultSchedulerName, Containers: []corev1.Container{{Name: "c", Image: "pause", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		}}}},
	}
}

func term(key string, labels map[string]string) corev1.PodAffinityTerm {
	return corev1.PodAffinityTerm{TopologyKey: key, LabelSelector: &metav1.LabelSelector{MatchLabels: labels}}
}

var workloads = map[string]func(i int) *corev1.Pod{
	"requests": benchPod,
	"anti-affinity": func(i int) *corev1.Pod {
		p := benchPod(i)
		// Pods of one group repel each other per node.
		p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{
			term(corev1.LabelHostname, map[string]string{"group": p.Labels["group"]})}}}
		return p
	},
	"affinity": func(i int) *corev1.Pod {
		p := benchPod(i)
		p.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{
			term(corev1.LabelTopologyZone, map[string]string{"group": p.Labels["group"]})}}}
		return p
	},
	"spread": func(i int) *corev1.Pod {
		p := benchPod(i)
		p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: corev1.LabelTopologyZone,
			WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "bench"}}}}
		return p
	},
}

// newBenchSched is a scheduler over an in-memory cache with nodes; the
// API is not involved.
func newBenchSched(tb testing.TB, nodes int) *sched {
	s, err := newSched(Config{SchedulerName: DefaultSchedulerName, Seed: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for i := range nodes {
		s.cache.AddNode(benchNode(i))
	}
	return s
}

// scheduleAll schedules pods one by one as the loop does (decide, then
// assume) and returns how many found a node.
func scheduleAll(tb testing.TB, s *sched, pods []*corev1.Pod) int {
	ctx := context.Background()
	bound := 0
	for _, pod := range pods {
		res, err := s.schedulePod(ctx, framework.NewCycleState(), pod)
		if err != nil {
			continue
		}
		assumed := pod.DeepCopy()
		assumed.Spec.NodeName = res.node
		if err := s.cache.AssumePod(framework.NewPodInfo(assumed)); err != nil {
			tb.Fatal(err)
		}
		bound++
	}
	return bound
}

// BenchmarkSchedule measures the scheduler alone on its cache: pods/s for
// 1000 pods on 100 nodes, and each workload of issue 3 at 1,000 and 5,000
// nodes.
func BenchmarkSchedule(b *testing.B) {
	type run struct {
		workload    string
		nodes, pods int
	}
	runs := []run{{"requests", 100, 1000}}
	for _, n := range []int{1000, 5000} {
		for _, w := range []string{"requests", "anti-affinity", "affinity", "spread"} {
			runs = append(runs, run{w, n, 1000})
		}
	}
	for _, r := range runs {
		b.Run(fmt.Sprintf("%s/%dnodes/%dpods", r.workload, r.nodes, r.pods), func(b *testing.B) {
			pods := make([]*corev1.Pod, r.pods)
			for i := range pods {
				pods[i] = workloads[r.workload](i)
			}
			var elapsed time.Duration
			for b.Loop() {
				b.StopTimer()
				s := newBenchSched(b, r.nodes)
				b.StartTimer()
				start := time.Now()
				if got := scheduleAll(b, s, pods); got != len(pods) {
					b.Fatalf("scheduled %d of %d", got, len(pods))
				}
				elapsed += time.Since(start)
			}
			b.ReportMetric(float64(r.pods*b.N)/elapsed.Seconds(), "pods/s")
		})
	}
}

// TestScheduleSpreadsEvenly checks the benchmark's premise: with the
// default profile, 1000 equal pods on 100 equal nodes spread out (scores
// are integers, so nodes a pod apart can tie; hence a small tolerance).
func TestScheduleSpreadsEvenly(t *testing.T) {
	s := newBenchSched(t, 100)
	pods := make([]*corev1.Pod, 1000)
	for i := range pods {
		pods[i] = benchPod(i)
	}
	if got := scheduleAll(t, s, pods); got != 1000 {
		t.Fatalf("scheduled %d", got)
	}
	s.cache.UpdateSnapshot(s.snapshot)
	lo, hi := 1000, 0
	for _, ni := range s.snapshot.List() {
		lo, hi = min(lo, len(ni.Pods)), max(hi, len(ni.Pods))
	}
	if hi-lo > 3 {
		t.Fatalf("pods per node range from %d to %d", lo, hi)
	}
}
