package endpointslice

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func testService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "svc-uid"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}},
		},
	}
}

func testPod(i int, port int32, ready bool) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%03d", i), Namespace: "ns", UID: types.UID(fmt.Sprintf("uid-%d", i)), Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port, Protocol: corev1.ProtocolTCP}}}}},
		Status: corev1.PodStatus{PodIP: fmt.Sprintf("10.42.%d.%d", i/250, i%250+1), Phase: corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
}

func pods(n int, port int32) []*corev1.Pod {
	var out []*corev1.Pod
	for i := 0; i < n; i++ {
		out = append(out, testPod(i, port, true))
	}
	return out
}

// applied turns a plan's creates and updates into the resulting slices, as
// the API server would store them.
func applied(existing []*discoveryv1.EndpointSlice, p plan) []*discoveryv1.EndpointSlice {
	byName := map[string]*discoveryv1.EndpointSlice{}
	for _, s := range existing {
		byName[s.Name] = s
	}
	for _, s := range p.delete {
		delete(byName, s.Name)
	}
	for _, s := range p.update {
		byName[s.Name] = s
	}
	for i, s := range p.create {
		s = s.DeepCopy()
		s.Name = fmt.Sprintf("%sgen%d-%d", s.GenerateName, len(byName), i)
		byName[s.Name] = s
	}
	var out []*discoveryv1.EndpointSlice
	for _, s := range byName {
		out = append(out, s)
	}
	return out
}

func zone(string) string { return "z1" }

func TestReconcile(t *testing.T) {
	t.Parallel()
	svc := testService()
	cases := []struct {
		name                          string
		pods                          []*corev1.Pod
		existing                      func() []*discoveryv1.EndpointSlice
		creates, updates, deletes     int
		wantSlices, wantEndpointTotal int
	}{
		{name: "three pods, one slice", pods: pods(3, 8080), creates: 1, wantSlices: 1, wantEndpointTotal: 3},
		{name: "150 pods, two slices", pods: pods(150, 8080), creates: 2, wantSlices: 2, wantEndpointTotal: 150},
		{name: "no pods, placeholder", pods: nil, creates: 1, wantSlices: 1},
		{name: "different port numbers split", pods: append(pods(2, 8080), testPod(5, 9090, true)), creates: 2, wantSlices: 2, wantEndpointTotal: 3},
		{name: "steady state writes nothing", pods: pods(3, 8080),
			existing: func() []*discoveryv1.EndpointSlice {
				return applied(nil, reconcile(svc, desiredGroups(svc, pods(3, 8080), zone), nil, 100))
			}, wantSlices: 1, wantEndpointTotal: 3},
		{name: "one pod more updates in place", pods: pods(4, 8080),
			existing: func() []*discoveryv1.EndpointSlice {
				return applied(nil, reconcile(svc, desiredGroups(svc, pods(3, 8080), zone), nil, 100))
			}, updates: 1, wantSlices: 1, wantEndpointTotal: 4},
		{name: "port change reuses slice", pods: pods(3, 9090),
			existing: func() []*discoveryv1.EndpointSlice {
				return applied(nil, reconcile(svc, desiredGroups(svc, pods(3, 8080), zone), nil, 100))
			}, updates: 1, wantSlices: 1, wantEndpointTotal: 3},
		{name: "all pods gone keeps a placeholder", pods: nil,
			existing: func() []*discoveryv1.EndpointSlice {
				return applied(nil, reconcile(svc, desiredGroups(svc, pods(3, 8080), zone), nil, 100))
			}, updates: 1, wantSlices: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var existing []*discoveryv1.EndpointSlice
			if tc.existing != nil {
				existing = tc.existing()
			}
			p := reconcile(svc, desiredGroups(svc, tc.pods, zone), existing, 100)
			if len(p.create) != tc.creates || len(p.update) != tc.updates || len(p.delete) != tc.deletes {
				t.Fatalf("plan: %d creates, %d updates, %d deletes; want %d, %d, %d",
					len(p.create), len(p.update), len(p.delete), tc.creates, tc.updates, tc.deletes)
			}
			got := applied(existing, p)
			total := 0
			for _, s := range got {
				if len(s.Endpoints) > 100 {
					t.Errorf("slice %s has %d endpoints", s.Name, len(s.Endpoints))
				}
				if s.Labels[discoveryv1.LabelServiceName] != "web" || s.Labels[ManagedByLabel] != ManagedBy {
					t.Errorf("slice %s labels %v", s.Name, s.Labels)
				}
				if ref := metav1.GetControllerOf(s); ref == nil || ref.UID != svc.UID {
					t.Errorf("slice %s owner %v", s.Name, s.OwnerReferences)
				}
				total += len(s.Endpoints)
			}
			if len(got) != tc.wantSlices || total != tc.wantEndpointTotal {
				t.Errorf("got %d slices with %d endpoints, want %d with %d", len(got), total, tc.wantSlices, tc.wantEndpointTotal)
			}
		})
	}
}

func TestEndpointConditions(t *testing.T) {
	t.Parallel()
	now := metav1.Now()
	cases := []struct {
		name                          string
		ready, deleting, publish      bool
		wantReady, wantServing, wantT bool
	}{
		{name: "ready", ready: true, wantReady: true, wantServing: true},
		{name: "not ready", ready: false},
		{name: "ready terminating", ready: true, deleting: true, wantServing: true, wantT: true},
		{name: "publish not ready", ready: false, publish: true, wantReady: true, wantServing: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			svc := testService()
			svc.Spec.PublishNotReadyAddresses = tc.publish
			pod := testPod(1, 8080, tc.ready)
			if tc.deleting {
				pod.DeletionTimestamp = &now
			}
			ep := podEndpoint(svc, pod, pod.Status.PodIP, zone)
			c := ep.Conditions
			if *c.Ready != tc.wantReady || *c.Serving != tc.wantServing || *c.Terminating != tc.wantT {
				t.Errorf("conditions ready=%v serving=%v terminating=%v", *c.Ready, *c.Serving, *c.Terminating)
			}
			if ptr.Deref(ep.Zone, "") != "z1" || ptr.Deref(ep.NodeName, "") != "n1" || ep.TargetRef.Name != pod.Name {
				t.Errorf("endpoint %+v", ep)
			}
		})
	}
}

func TestHostnameAndPorts(t *testing.T) {
	t.Parallel()
	svc := testService()
	svc.Spec.ClusterIP = corev1.ClusterIPNone
	pod := testPod(1, 8080, true)
	pod.Spec.Hostname, pod.Spec.Subdomain = "h1", "web"
	g := desiredGroups(svc, []*corev1.Pod{pod}, zone)
	if len(g) != 1 {
		t.Fatalf("groups %v", g)
	}
	for _, gr := range g {
		ep := gr.endpoints[string(pod.UID)]
		if ptr.Deref(ep.Hostname, "") != "h1" {
			t.Errorf("hostname %v", ep.Hostname)
		}
		if len(gr.ports) != 1 || *gr.ports[0].Port != 8080 || *gr.ports[0].Name != "http" {
			t.Errorf("ports %v", gr.ports)
		}
	}
	s := newSlice(svc, discoveryv1.AddressTypeIPv4)
	if _, ok := s.Labels[headlessLabel]; !ok {
		t.Errorf("headless label missing: %v", s.Labels)
	}
}
