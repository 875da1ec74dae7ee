package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// httpdScript serves a page naming the pod on port 8080.
const httpdScript = `mkdir -p /www && echo "hello from $(hostname)" > /www/index.html && exec httpd -f -p 8080 -h /www`

func busybox(name string, script string) corev1.Container {
	return corev1.Container{Name: name, Image: cl.image, Command: []string{"sh", "-c", script}}
}

func createPod(t *testing.T, ns string, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	pod.Namespace = ns
	got, err := cl.client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s: %v", pod.Name, err)
	}
	return got
}

// waitPod polls the pod until cond holds.
func waitPod(t *testing.T, ns, name string, timeout time.Duration, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	eventually(t, timeout, fmt.Sprintf("pod %s: %s", name, what), func() (bool, string) {
		p, err := cl.client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pod = p
		return cond(p), fmt.Sprintf("phase=%s statuses=%+v", p.Status.Phase, p.Status.ContainerStatuses)
	})
	return pod
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func TestDeploymentServesOnPodIP(t *testing.T) {
	ns := namespace(t)
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{func() corev1.Container {
					c := busybox("httpd", httpdScript)
					c.Ports = []corev1.ContainerPort{{ContainerPort: 8080}}
					c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1}
					return c
				}()}},
			},
		},
	}
	if _, err := cl.client.AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "-n", ns, "rollout", "status", "deploy/web", "--timeout=90s")
	pods, err := cl.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil || len(pods.Items) != 2 {
		t.Fatalf("pods: %v, %d", err, len(pods.Items))
	}
	for _, p := range pods.Items {
		st := p.Status
		cs := st.ContainerStatuses[0]
		switch {
		case st.Phase != corev1.PodRunning || !podReady(&p):
			t.Errorf("%s: phase %s, ready %v", p.Name, st.Phase, podReady(&p))
		case st.PodIP == "" || len(st.PodIPs) != 1 || st.HostIP == "" || st.StartTime == nil:
			t.Errorf("%s: podIP %q podIPs %v hostIP %q startTime %v", p.Name, st.PodIP, st.PodIPs, st.HostIP, st.StartTime)
		case st.QOSClass != corev1.PodQOSBestEffort:
			t.Errorf("%s: qosClass %q", p.Name, st.QOSClass)
		case cs.State.Running == nil || !cs.Ready || cs.Started == nil || !*cs.Started || cs.RestartCount != 0:
			t.Errorf("%s: container status %+v", p.Name, cs)
		case !strings.HasPrefix(cs.ContainerID, "containerd://") || !strings.Contains(cs.ImageID, "sha256:") || cs.Image != cl.image:
			t.Errorf("%s: containerID %q imageID %q image %q", p.Name, cs.ContainerID, cs.ImageID, cs.Image)
		}
		body, err := httpGet("http://" + st.PodIP + ":8080/")
		if err != nil || strings.TrimSpace(body) != "hello from "+p.Name {
			t.Errorf("GET %s: %q, %v", st.PodIP, body, err)
		}
	}
}

func TestCrashingContainerBacksOff(t *testing.T) {
	ns := namespace(t)
	createPod(t, ns, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "crash"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{busybox("c", "echo dying; exit 3")}},
	})
	p := waitPod(t, ns, "crash", 60*time.Second, "CrashLoopBackOff with 2 restarts", func(p *corev1.Pod) bool {
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].RestartCount >= 2 && cs[0].State.Waiting != nil && cs[0].State.Waiting.Reason == "CrashLoopBackOff"
	})
	cs := p.Status.ContainerStatuses[0]
	if last := cs.LastTerminationState.Terminated; last == nil || last.ExitCode != 3 || last.Reason != "Error" {
		t.Errorf("lastState = %+v, want terminated with exit code 3, reason Error", cs.LastTerminationState)
	}
	if !strings.Contains(cs.State.Waiting.Message, "back-off") {
		t.Errorf("waiting message %q", cs.State.Waiting.Message)
	}
	if p.Status.Phase != corev1.PodRunning {
		t.Errorf("phase %s, want Running (restartPolicy Always)", p.Status.Phase)
	}
	out := kubectl(t, "-n", ns, "get", "pod", "crash")
	if !strings.Contains(out, "CrashLoopBackOff") {
		t.Errorf("kubectl get shows no CrashLoopBackOff:\n%s", out)
	}
}

func TestFailingLivenessProbeRestartsContainer(t *testing.T) {
	ns := namespace(t)
	c := busybox("app", "touch /tmp/healthy; exec sleep 3600")
	c.LivenessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/tmp/healthy"}}},
		PeriodSeconds: 1, FailureThreshold: 1,
	}
	grace := int64(1)
	createPod(t, ns, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "live"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{c}, TerminationGracePeriodSeconds: &grace},
	})
	p := waitPod(t, ns, "live", 60*time.Second, "running", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil
	})
	first := p.Status.ContainerStatuses[0].ContainerID
	kubectl(t, "-n", ns, "exec", "live", "--", "rm", "/tmp/healthy")
	waitPod(t, ns, "live", 60*time.Second, "restarted by its liveness probe", func(p *corev1.Pod) bool {
		cs := p.Status.ContainerStatuses[0]
		return cs.RestartCount >= 1 && cs.State.Running != nil && cs.ContainerID != first
	})
	events := kubectl(t, "-n", ns, "get", "events", "--field-selector", "involvedObject.name=live")
	if !strings.Contains(events, "failed liveness probe") {
		t.Errorf("no liveness event:\n%s", events)
	}
}

func TestOOMKilledIsReported(t *testing.T) {
	ns := namespace(t)
	c := busybox("hog", "tail /dev/zero")
	c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("20Mi")}
	createPod(t, ns, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hog"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{c}, RestartPolicy: corev1.RestartPolicyNever},
	})
	p := waitPod(t, ns, "hog", 60*time.Second, "OOMKilled", func(p *corev1.Pod) bool {
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].State.Terminated != nil
	})
	term := p.Status.ContainerStatuses[0].State.Terminated
	if term.Reason != "OOMKilled" || term.ExitCode != 137 {
		t.Errorf("terminated = %+v, want OOMKilled with exit code 137", term)
	}
	if p.Status.Phase != corev1.PodFailed {
		t.Errorf("phase %s, want Failed", p.Status.Phase)
	}
}
