package replicaset

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPodsToDelete(t *testing.T) {
	mk := func(name, node string, phase corev1.PodPhase, ready bool, age time.Duration) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0.Add(-age))},
			Spec:       corev1.PodSpec{NodeName: node},
			Status:     corev1.PodStatus{Phase: phase},
		}
		if ready {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0.Add(-age))}}
		}
		return p
	}
	cost := func(p *corev1.Pod, c string) *corev1.Pod {
		p.Annotations = map[string]string{deletionCostAnnotation: c}
		return p
	}
	restarted := func(p *corev1.Pod, n int32) *corev1.Pod {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{RestartCount: n}}
		return p
	}
	cases := []struct {
		name string
		pods []*corev1.Pod
		want string
	}{
		{"unscheduled first", []*corev1.Pod{mk("sched", "n1", corev1.PodPending, false, time.Hour), mk("unsched", "", corev1.PodPending, false, time.Hour)}, "unsched"},
		{"pending before running", []*corev1.Pod{mk("run", "n1", corev1.PodRunning, false, time.Hour), mk("pend", "n1", corev1.PodPending, false, time.Hour)}, "pend"},
		{"not ready before ready", []*corev1.Pod{mk("ready", "n1", corev1.PodRunning, true, time.Hour), mk("notready", "n1", corev1.PodRunning, false, time.Hour)}, "notready"},
		{"lower deletion cost first", []*corev1.Pod{cost(mk("dear", "n1", corev1.PodRunning, true, time.Hour), "10"), cost(mk("cheap", "n2", corev1.PodRunning, true, 2*time.Hour), "-5")}, "cheap"},
		{"doubled-up node first", []*corev1.Pod{mk("alone", "n1", corev1.PodRunning, true, time.Hour), mk("pair1", "n2", corev1.PodRunning, true, 2*time.Hour), mk("pair2", "n2", corev1.PodRunning, true, 3*time.Hour)}, "pair1"},
		{"ready for less time first", []*corev1.Pod{mk("old", "n1", corev1.PodRunning, true, time.Hour), mk("young", "n2", corev1.PodRunning, true, time.Minute)}, "young"},
		{"more restarts first", []*corev1.Pod{restarted(mk("calm", "n1", corev1.PodRunning, false, time.Hour), 0), restarted(mk("crashy", "n2", corev1.PodRunning, false, time.Hour), 5)}, "crashy"},
		{"newer first", []*corev1.Pod{mk("older", "n1", corev1.PodPending, false, time.Hour), mk("newer", "n2", corev1.PodPending, false, time.Minute)}, "newer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := podsToDelete(tc.pods, 1)
			if len(got) != 1 || got[0].Name != tc.want {
				t.Errorf("deleted %s, want %s", got[0].Name, tc.want)
			}
		})
	}
}
