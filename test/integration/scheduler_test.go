package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffhq/skiff/internal/scheduler"
	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/internal/testutil"
)

// schedTimeout bounds how long a pod may take to be bound; the scheduler
// takes the lease at once on a fresh server.
const schedTimeout = 20 * time.Second

// schedCluster starts a control plane with the scheduler but without the
// controller manager, and creates nodes.
func schedCluster(t *testing.T, nodes ...*corev1.Node) *testutil.ControlPlane {
	t.Helper()
	cp := testutil.StartControlPlane(t, func(c *server.Config) { c.Disable = append(c.Disable, "controller-manager") })
	for _, n := range nodes {
		createNode(t, cp.Client, n)
	}
	return cp
}

func createNode(t *testing.T, c kubernetes.Interface, n *corev1.Node) {
	t.Helper()
	n.UID = ""
	if _, err := c.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create node %s: %v", n.Name, err)
	}
}

func createPod(t *testing.T, c kubernetes.Interface, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	p.UID = ""
	out, err := c.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s: %v", p.Name, err)
	}
	return out
}

// waitBound waits for the pod to be bound and returns its node.
func waitBound(t *testing.T, c kubernetes.Interface, ns, name string) string {
	t.Helper()
	var node string
	testutil.Eventually(t, schedTimeout, func() bool {
		p, err := c.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			node = p.Spec.NodeName
		}
		return node != ""
	}, "pod %s/%s bound", ns, name)
	return node
}

func expectBoundTo(t *testing.T, c kubernetes.Interface, ns, name, want string) {
	t.Helper()
	if got := waitBound(t, c, ns, name); got != want {
		t.Fatalf("pod %s bound to %s, want %s", name, got, want)
	}
}

// waitFailedScheduling waits for a FailedScheduling event on the pod and
// returns its message.
func waitFailedScheduling(t *testing.T, c kubernetes.Interface, ns, name string, contains string) string {
	t.Helper()
	var msg string
	testutil.Eventually(t, schedTimeout, func() bool {
		evs, err := c.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String()})
		if err != nil {
			return false
		}
		for _, e := range evs.Items {
			if e.Reason == "FailedScheduling" && strings.Contains(e.Message, contains) {
				msg = e.Message
				return true
			}
		}
		return false
	}, "FailedScheduling event on %s containing %q", name, contains)
	return msg
}

func TestSchedulerBindsAndSetsNothingElse(t *testing.T) {
	t.Parallel()
	cp := schedCluster(t, testutil.MakeNode("small").Capacity("1", "1Gi", 110).Obj(), testutil.MakeNode("big").Capacity("8", "16Gi", 110).Obj())
	c := cp.Client
	createPod(t, c, testutil.MakePod("web").Req("2", "1Gi").Obj())
	expectBoundTo(t, c, "default", "web", "big")
	// Pods for another scheduler are left alone.
	createPod(t, c, testutil.MakePod("other").SchedulerName("someone-else").Obj())
	// A Scheduled event is recorded.
	testutil.Eventually(t, schedTimeout, func() bool {
		evs, _ := c.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
		for _, e := range evs.Items {
			if e.Reason == "Scheduled" && e.InvolvedObject.Name == "web" && e.Message == "Successfully assigned default/web to big" {
				return true
			}
		}
		return false
	}, "Scheduled event")
	p, err := c.CoreV1().Pods("default").Get(context.Background(), "other", metav1.GetOptions{})
	if err != nil || p.Spec.NodeName != "" {
		t.Fatalf("pod for another scheduler was bound to %q (%v)", p.Spec.NodeName, err)
	}
}

func TestSchedulerFailedSchedulingMessage(t *testing.T) {
	t.Parallel()
	var nodes []*corev1.Node
	for i := range 3 {
		nodes = append(nodes, testutil.MakeNode(fmt.Sprintf("tainted-%d", i)).Taint("dedicated", "gpu", corev1.TaintEffectNoSchedule).Obj())
	}
	for i := range 17 {
		nodes = append(nodes, testutil.MakeNode(fmt.Sprintf("small-%d", i)).Capacity("1", "8Gi", 110).Obj())
	}
	cp := schedCluster(t, nodes...)
	c := cp.Client
	createPod(t, c, testutil.MakePod("huge").Req("2", "").Obj())
	want := "0/20 nodes are available: 17 Insufficient cpu, 3 node(s) had untolerated taint {dedicated: gpu}. preemption: 0/20 nodes are available: 20 Preemption is not helpful for scheduling."
	msg := waitFailedScheduling(t, c, "default", "huge", "0/20")
	if msg != want {
		t.Fatalf("FailedScheduling message:\n got %q\nwant %q", msg, want)
	}
	var pod *corev1.Pod
	testutil.Eventually(t, schedTimeout, func() bool {
		pod, _ = c.CoreV1().Pods("default").Get(context.Background(), "huge", metav1.GetOptions{})
		return pod != nil && pod.Annotations[scheduler.DiagnosisAnnotation] != ""
	}, "diagnosis annotation")
	for _, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodScheduled && (cond.Status != corev1.ConditionFalse || cond.Reason != "Unschedulable" || cond.Message != want) {
			t.Errorf("PodScheduled condition = %+v", cond)
		}
	}
	var d scheduler.Diagnosis
	if err := json.Unmarshal([]byte(pod.Annotations[scheduler.DiagnosisAnnotation]), &d); err != nil {
		t.Fatalf("diagnosis: %v", err)
	}
	if got := d.Nodes["tainted-0"]; got != "TaintToleration: node(s) had untolerated taint {dedicated: gpu}" {
		t.Errorf("diagnosis for tainted-0 = %q", got)
	}
	if got := d.Nodes["small-3"]; got != "NodeResourcesFit: Insufficient cpu" {
		t.Errorf("diagnosis for small-3 = %q", got)
	}

	// A node that fits arrives: the waiting pod is scheduled by the event.
	createNode(t, c, testutil.MakeNode("arrived").Capacity("4", "8Gi", 110).Obj())
	expectBoundTo(t, c, "default", "huge", "arrived")
	testutil.Eventually(t, schedTimeout, func() bool {
		p, _ := c.CoreV1().Pods("default").Get(context.Background(), "huge", metav1.GetOptions{})
		_, annotated := p.Annotations[scheduler.DiagnosisAnnotation]
		cond := podCondition(p, corev1.PodScheduled)
		return !annotated && cond != nil && cond.Status == corev1.ConditionTrue
	}, "diagnosis cleared and PodScheduled=True after binding")
}

func podCondition(p *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}
