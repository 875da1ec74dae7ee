package resource

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func coreResources(req, lim string) corev1.ResourceRequirements {
	r := corev1.ResourceRequirements{}
	if req != "" {
		r.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(req), corev1.ResourceMemory: resource.MustParse(req + "Mi")}
	}
	if lim != "" {
		r.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(lim), corev1.ResourceMemory: resource.MustParse(lim + "Mi")}
	}
	return r
}

func TestPrepareCreatePod(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		res  corev1.ResourceRequirements
		tols []corev1.Toleration
		qos  corev1.PodQOSClass
		// wantTols is how many tolerations the pod ends with: default
		// tolerations are the server's admission, not the kind's.
		wantTols int
	}{
		{"best effort, no tolerations added", corev1.ResourceRequirements{}, nil, corev1.PodQOSBestEffort, 0},
		{"limits only are guaranteed", coreResources("", "1"), nil, corev1.PodQOSGuaranteed, 0},
		{"requests below limits are burstable", coreResources("1", "2"), nil, corev1.PodQOSBurstable, 0},
		{"requests only are burstable", coreResources("1", ""), nil, corev1.PodQOSBurstable, 0},
		{"own toleration kept", corev1.ResourceRequirements{},
			[]corev1.Toleration{{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}, corev1.PodQOSBestEffort, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "x", Resources: c.res}}, Tolerations: c.tols}}
			p.Status.Phase = corev1.PodRunning
			prepareCreatePod(p)
			if p.Status.Phase != corev1.PodPending {
				t.Errorf("phase = %q, want Pending", p.Status.Phase)
			}
			if p.Status.QOSClass != c.qos {
				t.Errorf("qos = %q, want %q", p.Status.QOSClass, c.qos)
			}
			if len(p.Spec.Tolerations) != c.wantTols {
				t.Errorf("tolerations = %v, want %d", p.Spec.Tolerations, c.wantTols)
			}
			if p.Spec.ServiceAccountName != "default" || p.Spec.Priority == nil || *p.Spec.Priority != 0 {
				t.Errorf("serviceAccountName %q priority %v, want default and 0", p.Spec.ServiceAccountName, p.Spec.Priority)
			}
		})
	}
}

func TestValidatePod(t *testing.T) {
	t.Parallel()
	p := coreTestPod(func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "init"}}
		p.Spec.Containers[0].Image = ""
	})
	coreExpectErrs(t, validatePod(p), "FieldValueRequired spec.containers[0].image", "FieldValueRequired spec.initContainers[0].image")
}

func TestValidatePodUpdate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		old    func(*corev1.Pod)
		mutate func(*corev1.Pod)
		want   []string
	}{
		{"image change", nil, func(p *corev1.Pod) { p.Spec.Containers[0].Image = "nginx:1.28" }, nil},
		{"set active deadline", nil, func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = corePtr(int64(60)) }, nil},
		{"raise active deadline", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = corePtr(int64(60)) },
			func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = corePtr(int64(90)) }, []string{"FieldValueInvalid spec.activeDeadlineSeconds"}},
		{"add toleration", nil, func(p *corev1.Pod) {
			p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: "k", Operator: corev1.TolerationOpExists})
		}, nil},
		{"remove toleration", func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}}
		}, func(p *corev1.Pod) { p.Spec.Tolerations = nil }, []string{"FieldValueForbidden spec"}},
		{"grace 1 after negative", func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = corePtr(int64(-1)) },
			func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = corePtr(int64(1)) }, nil},
		{"grace change", nil, func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = corePtr(int64(5)) }, []string{"FieldValueForbidden spec"}},
		{"set nodeName", nil, func(p *corev1.Pod) { p.Spec.NodeName = "n1" }, []string{"FieldValueForbidden spec"}},
		{"change nodeName", func(p *corev1.Pod) { p.Spec.NodeName = "n1" }, func(p *corev1.Pod) { p.Spec.NodeName = "n2" }, []string{"FieldValueForbidden spec"}},
		{"add container", nil, func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, p.Spec.Containers[0])
			p.Spec.Containers[1].Name = "two"
		}, []string{"FieldValueForbidden spec"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			old := coreTestPod()
			if c.old != nil {
				c.old(old)
			}
			updated := old.DeepCopy()
			c.mutate(updated)
			errs := validatePodUpdate(updated, old)
			coreExpectErrs(t, errs, c.want...)
			for _, e := range errs {
				if e.Field == "spec" && e.Detail != podUpdateForbidden {
					t.Errorf("detail = %q, want upstream's message", e.Detail)
				}
			}
		})
	}
}

func TestPodGracePeriod(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		node      string
		phase     corev1.PodPhase
		spec      *int64
		requested *int64
		want      *int64
	}{
		{"unscheduled is immediate", "", corev1.PodPending, corePtr(int64(30)), nil, nil},
		{"finished is immediate", "n1", corev1.PodSucceeded, corePtr(int64(30)), nil, nil},
		{"spec period", "n1", corev1.PodRunning, corePtr(int64(30)), nil, corePtr(int64(30))},
		{"request wins", "n1", corev1.PodRunning, corePtr(int64(30)), corePtr(int64(5)), corePtr(int64(5))},
		{"zero request is immediate", "n1", corev1.PodRunning, corePtr(int64(30)), corePtr(int64(0)), nil},
		{"zero spec is immediate", "n1", corev1.PodRunning, corePtr(int64(0)), nil, nil},
		{"negative spec is one", "n1", corev1.PodRunning, corePtr(int64(-5)), nil, corePtr(int64(1))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &corev1.Pod{Spec: corev1.PodSpec{NodeName: c.node, TerminationGracePeriodSeconds: c.spec}, Status: corev1.PodStatus{Phase: c.phase}}
			got := Pods().GracefulDelete(p, c.requested)
			if (got == nil) != (c.want == nil) || (got != nil && *got != *c.want) {
				t.Errorf("grace = %v, want %v", coreDeref(got), coreDeref(c.want))
			}
		})
	}
}

func coreDeref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestPodTableStatus(t *testing.T) {
	t.Parallel()
	now := time.Now()
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	waiting := func(r string) corev1.ContainerState {
		return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: r}}
	}
	terminated := func(r string, code int32) corev1.ContainerState {
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: r, ExitCode: code}}
	}
	cases := []struct {
		name                  string
		pod                   func(*corev1.Pod)
		ready, status, restar string
	}{
		{"pending without statuses", func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }, "0/1", "Pending", "0"},
		{"running and ready", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Ready: true, State: running}}
		}, "1/1", "Running", "0"},
		{"container creating", func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", State: waiting("ContainerCreating")}}
		}, "0/1", "ContainerCreating", "0"},
		{"crash loop with restarts", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", RestartCount: 3, State: waiting("CrashLoopBackOff"),
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{FinishedAt: metav1.NewTime(now.Add(-5 * time.Minute))}}}}
		}, "0/1", "CrashLoopBackOff", "3 (5m ago)"},
		{"completed", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodSucceeded
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", State: terminated("Completed", 0)}}
		}, "0/1", "Completed", "0"},
		{"exit code without reason", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodFailed
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", State: terminated("", 2)}}
		}, "0/1", "ExitCode:2", "0"},
		{"init container running", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "i1"}, {Name: "i2"}}
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "i1", State: terminated("Completed", 0)}, {Name: "i2", State: running}}
		}, "0/1", "Init:1/2", "0"},
		{"init container failing", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "i1"}}
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "i1", State: terminated("Error", 1)}}
		}, "0/1", "Init:Error", "0"},
		{"terminating", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.DeletionTimestamp = &metav1.Time{Time: now}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Ready: true, State: running}}
		}, "1/1", "Terminating", "0"},
		{"evicted reason", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodFailed
			p.Status.Reason = "Evicted"
		}, "0/1", "Evicted", "0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := coreTestPod(c.pod)
			got := summarizePod(p, now)
			want := podSummary{ready: c.ready, status: c.status, restarts: c.restar}
			if got != want {
				t.Errorf("summary = %+v, want %+v", got, want)
			}
		})
	}
}

func TestPodRowAndFields(t *testing.T) {
	t.Parallel()
	p := coreTestPod(func(p *corev1.Pod) {
		p.Spec.NodeName = "n1"
		p.Status.PodIP = "10.42.0.5"
		p.Status.Phase = corev1.PodRunning
	})
	row := podRow(p)
	if len(row) != len(podColumns) {
		t.Fatalf("row has %d cells for %d columns", len(row), len(podColumns))
	}
	for i, want := range map[int]any{0: "web", 5: "10.42.0.5", 6: "n1", 7: "<none>", 8: "<none>"} {
		if row[i] != want {
			t.Errorf("cell %d (%s) = %v, want %v", i, podColumns[i].Name, row[i], want)
		}
	}
	f := podFields(p)
	for k, want := range map[string]string{"spec.nodeName": "n1", "status.phase": "Running", "spec.hostNetwork": "false", "spec.restartPolicy": "Always", "status.podIP": "10.42.0.5", "spec.schedulerName": "default-scheduler"} {
		t.Run(k, func(t *testing.T) {
			if f[k] != want {
				t.Errorf("field %s = %q, want %q", k, f[k], want)
			}
		})
	}
}
