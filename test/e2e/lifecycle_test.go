package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPreStopHookRunsOnDelete(t *testing.T) {
	ns := namespace(t)
	dir := t.TempDir()
	c := busybox("app", "trap 'exit 0' TERM; while true; do sleep 1; done")
	c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
		Command: []string{"sh", "-c", "echo stopping > /out/prestop"},
	}}}
	c.VolumeMounts = []corev1.VolumeMount{{Name: "out", MountPath: "/out"}}
	createPod(t, ns, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hook"},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{c},
			Volumes:    []corev1.Volume{{Name: "out", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir}}}},
		},
	})
	waitPod(t, ns, "hook", 60*time.Second, "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	if err := cl.client.CoreV1().Pods(ns).Delete(context.Background(), "hook", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "pod gone after its deletion is confirmed", func() (bool, string) {
		_, err := cl.client.CoreV1().Pods(ns).Get(context.Background(), "hook", metav1.GetOptions{})
		return apierrors.IsNotFound(err), "still there"
	})
	data, err := os.ReadFile(filepath.Join(dir, "prestop"))
	if err != nil || strings.TrimSpace(string(data)) != "stopping" {
		t.Errorf("preStop output = %q, %v", data, err)
	}
}

func TestAgentRestartLeavesContainersRunning(t *testing.T) {
	ns := namespace(t)
	createPod(t, ns, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "steady"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{busybox("app", "exec sleep 3600")}},
	})
	before := waitPod(t, ns, "steady", 60*time.Second, "running", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil
	}).Status.ContainerStatuses[0]

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cl.restart(ctx); err != nil {
		t.Fatal(err)
	}
	// The node is Ready again; give the kubelet a few relists to make any
	// (wrong) decision to restart, then check nothing changed.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		p, err := cl.client.CoreV1().Pods(ns).Get(ctx, "steady", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		after := p.Status.ContainerStatuses[0]
		if after.ContainerID != before.ContainerID || after.RestartCount != 0 || after.State.Running == nil ||
			!after.State.Running.StartedAt.Equal(&before.State.Running.StartedAt) {
			t.Fatalf("container changed across the agent restart:\nbefore %+v\nafter  %+v", before, after)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
