package integration

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/skiffhq/skiff/internal/server"
	"github.com/skiffhq/skiff/internal/testutil"
)

// epPod creates a pod labelled app=<app> whose container names port
// "http" as port, then plays kubelet: Running, an IP, Ready as asked.
func epPod(t *testing.T, c kubernetes.Interface, ns, name, app, node, ip string, port int32, ready bool) *corev1.Pod {
	t.Helper()
	pod := makePod(name).Labels("app", app).Node(node).Obj()
	pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: port}}
	if _, err := c.CoreV1().Pods(ns).Create(testCtx(t), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
	return podStatus(t, c, ns, name, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		p.Status.PodIP = ip
		p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
		setPodReady(p, ready)
	})
}

// epSetReady sets the pod's Ready condition, as a kubelet would.
func epSetReady(t *testing.T, c kubernetes.Interface, pod *corev1.Pod, ready bool) *corev1.Pod {
	t.Helper()
	return podStatus(t, c, pod.Namespace, pod.Name, func(p *corev1.Pod) { setPodReady(p, ready) })
}

// podStatus applies change to the pod's current status, retrying on
// conflict: controllers and the scheduler write pods concurrently.
func podStatus(t *testing.T, c kubernetes.Interface, ns, name string, change func(*corev1.Pod)) *corev1.Pod {
	t.Helper()
	var out *corev1.Pod
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := c.CoreV1().Pods(ns).Get(testCtx(t), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(p)
		out, err = c.CoreV1().Pods(ns).UpdateStatus(testCtx(t), p, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("pod %s status: %v", name, err)
	}
	return out
}

// setPodReady sets the Ready condition, keeping the others.
func setPodReady(p *corev1.Pod, ready bool) {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	cond := corev1.PodCondition{Type: corev1.PodReady, Status: st, LastTransitionTime: metav1.Now()}
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodReady {
			p.Status.Conditions[i] = cond
			return
		}
	}
	p.Status.Conditions = append(p.Status.Conditions, cond)
}

func epService(t *testing.T, c kubernetes.Interface, ns, name string) *corev1.Service {
	t.Helper()
	svc, err := c.CoreV1().Services(ns).Create(testCtx(t), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service: %v", err)
	}
	return svc
}

// serviceSlices lists the slices labelled for the Service.
func serviceSlices(t *testing.T, c kubernetes.Interface, ns, svc string) []discoveryv1.EndpointSlice {
	t.Helper()
	l, err := c.DiscoveryV1().EndpointSlices(ns).List(context.Background(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		t.Fatalf("list slices: %v", err)
	}
	return l.Items
}

// sliceEndpoints flattens the Service's slices into pod name → endpoint.
func sliceEndpoints(t *testing.T, c kubernetes.Interface, ns, svc string) map[string]discoveryv1.Endpoint {
	out := map[string]discoveryv1.Endpoint{}
	for _, s := range serviceSlices(t, c, ns, svc) {
		for _, ep := range s.Endpoints {
			out[ep.TargetRef.Name] = ep
		}
	}
	return out
}

func TestEndpointSliceFollowsPods(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t)
	c := cp.Client
	ns := newNamespace(t, c)
	if _, err := c.CoreV1().Nodes().Create(testCtx(t), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ep-n1",
		Labels: map[string]string{corev1.LabelTopologyZone: "zone-a"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create node: %v", err)
	}
	svc := epService(t, c, ns, "web")
	var pods []*corev1.Pod
	for i := 0; i < 3; i++ {
		pods = append(pods, epPod(t, c, ns, fmt.Sprintf("web-%d", i), "web", "ep-n1", fmt.Sprintf("10.42.0.%d", i+10), 8080, true))
	}

	testutil.Eventually(t, 30*time.Second, func() bool {
		eps := sliceEndpoints(t, c, ns, "web")
		ready := 0
		for _, ep := range eps {
			if *ep.Conditions.Ready && ep.Zone != nil && *ep.Zone == "zone-a" && *ep.NodeName == "ep-n1" {
				ready++
			}
		}
		return ready == 3
	}, "3 ready endpoints in zone-a")
	slices := serviceSlices(t, c, ns, "web")
	if len(slices) != 1 {
		t.Fatalf("want 1 slice, got %d", len(slices))
	}
	s := slices[0]
	if s.AddressType != discoveryv1.AddressTypeIPv4 || s.Labels[discoveryv1.LabelManagedBy] != "endpointslice-controller.k8s.io" {
		t.Errorf("slice addressType %s labels %v", s.AddressType, s.Labels)
	}
	if ref := metav1.GetControllerOf(&s); ref == nil || ref.UID != svc.UID || ref.Kind != "Service" {
		t.Errorf("slice owner %v", s.OwnerReferences)
	}
	if len(s.Ports) != 1 || *s.Ports[0].Port != 8080 || *s.Ports[0].Name != "web" {
		t.Errorf("ports %v, want web → 8080 resolved from the named targetPort", s.Ports)
	}
	name := s.Name

	// The legacy Endpoints mirror the same pods.
	testutil.Eventually(t, 30*time.Second, func() bool {
		ep, err := c.CoreV1().Endpoints(ns).Get(context.Background(), "web", metav1.GetOptions{})
		return err == nil && len(ep.Subsets) == 1 && len(ep.Subsets[0].Addresses) == 3 &&
			ep.Subsets[0].Ports[0].Port == 8080 && ep.Annotations[corev1.EndpointsLastChangeTriggerTime] != ""
	}, "Endpoints web with 3 ready addresses on 8080")

	epSetReady(t, c, pods[1], false)
	testutil.Eventually(t, 30*time.Second, func() bool {
		ep, ok := sliceEndpoints(t, c, ns, "web")["web-1"]
		return ok && !*ep.Conditions.Ready && !*ep.Conditions.Serving
	}, "web-1 not ready in the slice")
	testutil.Eventually(t, 30*time.Second, func() bool {
		ep, err := c.CoreV1().Endpoints(ns).Get(context.Background(), "web", metav1.GetOptions{})
		return err == nil && len(ep.Subsets) == 1 && len(ep.Subsets[0].Addresses) == 2 &&
			len(ep.Subsets[0].NotReadyAddresses) == 1 && ep.Subsets[0].NotReadyAddresses[0].TargetRef.Name == "web-1"
	}, "web-1 in notReadyAddresses")

	zero := int64(0)
	if err := c.CoreV1().Pods(ns).Delete(testCtx(t), "web-2", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatalf("delete pod: %v", err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		eps := sliceEndpoints(t, c, ns, "web")
		_, gone := eps["web-2"]
		return !gone && len(eps) == 2
	}, "web-2 removed from the slice")
	if got := serviceSlices(t, c, ns, "web"); len(got) != 1 || got[0].Name != name {
		t.Errorf("slice replaced rather than updated in place: %v", got)
	}

	// A pod whose named port is another number goes to its own slice.
	epPod(t, c, ns, "web-odd", "web", "ep-n1", "10.42.0.99", 9090, true)
	testutil.Eventually(t, 30*time.Second, func() bool {
		for _, s := range serviceSlices(t, c, ns, "web") {
			if len(s.Ports) == 1 && *s.Ports[0].Port == 9090 && len(s.Endpoints) == 1 && s.Endpoints[0].TargetRef.Name == "web-odd" {
				return true
			}
		}
		return false
	}, "a 9090 slice for web-odd")
}

func TestEndpointSliceSplitsAt100(t *testing.T) {
	t.Parallel()
	cp := testutil.StartControlPlane(t)
	c := cp.Client
	ns := newNamespace(t, c)
	epService(t, c, ns, "big")
	for i := 0; i < 150; i++ {
		epPod(t, c, ns, fmt.Sprintf("big-%d", i), "big", "", fmt.Sprintf("10.42.%d.%d", i/200, i%200+1), 8080, true)
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		slices := serviceSlices(t, c, ns, "big")
		total := 0
		for _, s := range slices {
			if len(s.Endpoints) > 100 {
				t.Fatalf("slice %s has %d endpoints", s.Name, len(s.Endpoints))
			}
			total += len(s.Endpoints)
		}
		return len(slices) == 2 && total == 150
	}, "150 endpoints in 2 slices")
	testutil.Eventually(t, 30*time.Second, func() bool {
		ep, err := c.CoreV1().Endpoints(ns).Get(context.Background(), "big", metav1.GetOptions{})
		return err == nil && len(ep.Subsets) == 1 && len(ep.Subsets[0].Addresses) == 150 && ep.Annotations["endpoints.kubernetes.io/over-capacity"] == ""
	}, "Endpoints big lists all 150")
}

func TestKubernetesServiceSlice(t *testing.T) {
	t.Parallel()
	// Slices may not hold loopback addresses, so advertise a documentation
	// address; nothing dials it.
	const advertise = "192.0.2.10"
	cp := testutil.StartControlPlane(t, func(cfg *server.Config) { cfg.AdvertiseAddress = advertise })
	c := cp.Client
	_, port, err := net.SplitHostPort(cp.Server().Addr())
	if err != nil {
		t.Fatalf("server address: %v", err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		s, err := c.DiscoveryV1().EndpointSlices("default").Get(context.Background(), "kubernetes", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false
		}
		if err != nil {
			t.Fatalf("get slice: %v", err)
		}
		return s.AddressType == discoveryv1.AddressTypeIPv4 && len(s.Endpoints) == 1 && s.Endpoints[0].Addresses[0] == advertise &&
			len(s.Ports) == 1 && *s.Ports[0].Name == "https" && fmt.Sprint(*s.Ports[0].Port) == port &&
			s.Labels[discoveryv1.LabelServiceName] == "kubernetes"
	}, "the kubernetes slice lists this server")
}
