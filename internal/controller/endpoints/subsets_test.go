package endpoints

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func pod(i int, port int32, ready, deleting bool) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%04d", i), Namespace: "ns", UID: types.UID(fmt.Sprint(i))},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port, Protocol: corev1.ProtocolTCP}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: fmt.Sprintf("10.42.%d.%d", i/200, i%200+1),
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
	if deleting {
		now := metav1.Now()
		p.DeletionTimestamp = &now
	}
	return p
}

func TestSubsets(t *testing.T) {
	t.Parallel()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"},
		Ports:    []corev1.ServicePort{{Name: "web", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}}}}
	many := func(n int) []*corev1.Pod {
		var out []*corev1.Pod
		for i := 0; i < n; i++ {
			out = append(out, pod(i, 8080, i%2 == 0, false))
		}
		return out
	}
	cases := []struct {
		name                     string
		pods                     []*corev1.Pod
		publish                  bool
		subsets, ready, notReady int
		truncated                bool
	}{
		{name: "ready and not", pods: []*corev1.Pod{pod(1, 8080, true, false), pod(2, 8080, false, false)}, subsets: 1, ready: 1, notReady: 1},
		{name: "terminating left out", pods: []*corev1.Pod{pod(1, 8080, true, false), pod(2, 8080, true, true)}, subsets: 1, ready: 1},
		{name: "publish not ready", publish: true, pods: []*corev1.Pod{pod(1, 8080, false, false), pod(2, 8080, true, true)}, subsets: 1, ready: 2},
		{name: "ports differ", pods: []*corev1.Pod{pod(1, 8080, true, false), pod(2, 9090, true, false)}, subsets: 2, ready: 2},
		{name: "over capacity keeps ready first", pods: many(1200), subsets: 1, ready: 600, notReady: 400, truncated: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := svc.DeepCopy()
			s.Spec.PublishNotReadyAddresses = tc.publish
			got, truncated := subsets(s, tc.pods, MaxAddresses)
			ready, notReady := 0, 0
			for _, ss := range got {
				ready += len(ss.Addresses)
				notReady += len(ss.NotReadyAddresses)
			}
			if len(got) != tc.subsets || ready != tc.ready || notReady != tc.notReady || truncated != tc.truncated {
				t.Errorf("got %d subsets, %d ready, %d not ready, truncated %v; want %d, %d, %d, %v",
					len(got), ready, notReady, truncated, tc.subsets, tc.ready, tc.notReady, tc.truncated)
			}
		})
	}
}
