package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// webDeployment is n busybox httpd replicas, each answering with its pod
// name on port 8080.
func webDeployment(n int32) *appsv1.Deployment {
	labels := map[string]string{"app": "web"}
	c := busybox("httpd", `mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www`)
	c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1}
	grace := int64(1)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &n,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{c}, TerminationGracePeriodSeconds: &grace},
			},
		},
	}
}

// fetchAll has the client pod fetch url n times and returns who answered
// how often, and how many fetches failed.
func fetchAll(t *testing.T, ns, url string, n int) (map[string]int, int) {
	t.Helper()
	script := fmt.Sprintf(`for i in $(seq %d); do timeout 3 wget -qO- %s || echo FAILED; done`, n, url)
	out := kubectl(t, "-n", ns, "exec", "client", "--", "sh", "-c", script)
	seen, failed := map[string]int{}, 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "FAILED" {
			failed++
			continue
		}
		seen[line]++
	}
	return seen, failed
}

func TestServiceLoadBalancingAndDNS(t *testing.T) {
	ns := namespace(t)
	ctx := context.Background()
	if _, err := cl.client.AppsV1().Deployments(ns).Create(ctx, webDeployment(3), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	svc, err := cl.client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	headless := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web-pods"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Port: 8080}}},
	}
	if _, err := cl.client.CoreV1().Services(ns).Create(ctx, headless, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ext := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "elsewhere"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "web." + ns + ".svc.cluster.local"},
	}
	if _, err := cl.client.CoreV1().Services(ns).Create(ctx, ext, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createPod(t, ns, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "client"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{busybox("c", "exec sleep 3600")}},
	})
	kubectl(t, "-n", ns, "rollout", "status", "deploy/web", "--timeout=90s")
	waitPod(t, ns, "client", 60*time.Second, "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })

	replicas := func(want int) {
		t.Helper()
		eventually(t, 60*time.Second, fmt.Sprintf("%d replicas answering through the Service", want), func() (bool, string) {
			seen, failed := fetchAll(t, ns, "http://web/", 20*want)
			if failed > 0 || len(seen) != want {
				return false, fmt.Sprintf("answers %v, %d failed", seen, failed)
			}
			for pod, n := range seen {
				// Evenly at random: each of want gets 20 on average.
				if n < 5 {
					return false, fmt.Sprintf("%s answered only %d of %d", pod, n, 20*want)
				}
			}
			return true, ""
		})
	}
	replicas(3)

	t.Run("scale follows", func(t *testing.T) {
		kubectl(t, "-n", ns, "scale", "deploy/web", "--replicas=1")
		replicas(1)
		kubectl(t, "-n", ns, "scale", "deploy/web", "--replicas=5")
		kubectl(t, "-n", ns, "rollout", "status", "deploy/web", "--timeout=90s")
		replicas(5)
	})

	t.Run("nodeport from the host", func(t *testing.T) {
		url := "http://" + secondHostGateway + ":" + strconv.Itoa(int(svc.Spec.Ports[0].NodePort)) + "/"
		eventually(t, 30*time.Second, "NodePort answering", func() (bool, string) {
			body, err := httpGet(url)
			return err == nil && strings.HasPrefix(body, "web-"), fmt.Sprint(body, err)
		})
	})

	// busybox's nslookup also asks AAAA down the whole search path and
	// exits 1 when any of those finds nothing: judge by what it printed.
	lookup := func(t *testing.T, name string) string {
		t.Helper()
		out, _ := kubectlErr(t, nil, "-n", ns, "exec", "client", "--", "nslookup", name)
		return out
	}
	t.Run("names resolve", func(t *testing.T) {
		pods, err := cl.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			t.Fatal(err)
		}
		out := lookup(t, "web-pods")
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && !strings.Contains(out, p.Status.PodIP) {
				t.Errorf("headless lookup lacks %s (%s):\n%s", p.Name, p.Status.PodIP, out)
			}
		}
		out = lookup(t, "elsewhere")
		if !strings.Contains(out, svc.Spec.ClusterIP) {
			t.Errorf("ExternalName lookup does not reach web's %s:\n%s", svc.Spec.ClusterIP, out)
		}
		out = lookup(t, "kubernetes.default")
		if !strings.Contains(out, "10.43.0.1") {
			t.Errorf("kubernetes.default does not resolve to 10.43.0.1:\n%s", out)
		}
	})

	t.Run("no failures while a replica goes", func(t *testing.T) {
		pods, err := cl.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil || len(pods.Items) == 0 {
			t.Fatalf("pods: %v", err)
		}
		victim := pods.Items[0]
		if err := cl.client.CoreV1().Pods(ns).Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// Once the deleted pod's endpoint is gone, no request may fail.
		eventually(t, 30*time.Second, "endpoint of the deleted pod removed", func() (bool, string) {
			ep, err := cl.client.CoreV1().Endpoints(ns).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			for _, s := range ep.Subsets {
				for _, a := range s.Addresses {
					if a.IP == victim.Status.PodIP {
						return false, "still listed"
					}
				}
			}
			return true, ""
		})
		if seen, failed := fetchAll(t, ns, "http://web/", 60); failed > 0 || seen[victim.Name] > 0 {
			t.Errorf("after the endpoint went: %d failed, answers %v", failed, seen)
		}
	})
}
