package integration

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/internal/testutil"
)

// BenchmarkDeploymentToBound is hack/bench's end-to-end Deployment run
// against an in-process control plane, so that the API server's pod write
// path can be profiled with -cpuprofile: each iteration creates a
// Deployment of 1,000 replicas on 100 Node objects and waits until every
// pod is bound. It reports pods/s.
//
//	go test ./test/integration -run '^$' -bench DeploymentToBound -benchtime 2x -cpuprofile cpu.out
func BenchmarkDeploymentToBound(b *testing.B) {
	const replicas, nodes = 1000, 100
	cp := testutil.StartControlPlane(b, func(c *server.Config) {
		// Plain Node objects: no kubelet heartbeats, so no lifecycle taints.
		c.DisableControllers = append(c.DisableControllers, "nodelifecycle", "nodeipam")
	})
	ctx := b.Context()
	cs := cp.Client
	for i := range nodes {
		rl := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("128Gi"), corev1.ResourcePods: resource.MustParse("110")}
		n := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%03d", i), Labels: map[string]string{corev1.LabelTopologyZone: fmt.Sprintf("zone-%d", i%3)}},
			Status:     corev1.NodeStatus{Capacity: rl, Allocatable: rl, Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
		}
		if _, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	cpu0 := cpuTime(b)
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		ns := fmt.Sprintf("bench-%d", i)
		nsObj, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		w, err := cs.CoreV1().Pods(ns).Watch(wctx, metav1.ListOptions{ResourceVersion: nsObj.ResourceVersion})
		if err != nil {
			b.Fatal(err)
		}
		labels := map[string]string{"app": "web"}
		zero := int64(0)
		n := int32(replicas)
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: appsv1.DeploymentSpec{
				Replicas: &n,
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: &zero,
					Containers: []corev1.Container{{Name: "c", Image: "pause", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
						corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi"),
					}}}},
				}},
			},
		}
		start := time.Now()
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		bound := map[string]bool{}
		rv := nsObj.ResourceVersion
		for len(bound) < replicas {
			ev, ok := <-w.ResultChan()
			if !ok {
				// The server closes a watcher that falls behind: resume.
				if w, err = cs.CoreV1().Pods(ns).Watch(wctx, metav1.ListOptions{ResourceVersion: rv}); err != nil {
					b.Fatalf("re-watch with %d of %d pods bound: %v", len(bound), replicas, err)
				}
				continue
			}
			if p, isPod := ev.Object.(*corev1.Pod); isPod {
				rv = p.ResourceVersion
				if p.Spec.NodeName != "" {
					bound[p.Name] = true
				}
			}
		}
		total += time.Since(start)
		w.Stop()
		cancel()
	}
	b.ReportMetric(float64(replicas*b.N)/total.Seconds(), "pods/s")
	// CPU per pod is steadier than pods/s on a shared machine.
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(replicas*b.N), "cpu-µs/pod")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
