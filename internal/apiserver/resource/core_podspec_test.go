package resource

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestDefaultPodSpec(t *testing.T) {
	t.Parallel()
	spec := corev1.PodSpec{
		Containers: []corev1.Container{
			{Name: "a", Image: "nginx", Ports: []corev1.ContainerPort{{ContainerPort: 80}},
				LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(80)}}}},
			{Name: "b", Image: "nginx:latest"},
			{Name: "c", Image: "registry:5000/nginx:1.27"},
			{Name: "d", Image: "nginx@sha256:abc"},
			{Name: "e", Image: "registry:5000/nginx"},
		},
		Volumes: []corev1.Volume{
			{Name: "empty"},
			{Name: "cm", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
			{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s"}}},
		},
	}
	defaultPodSpec(&spec)

	checks := []struct {
		name      string
		got, want any
	}{
		{"restartPolicy", spec.RestartPolicy, corev1.RestartPolicyAlways},
		{"dnsPolicy", spec.DNSPolicy, corev1.DNSClusterFirst},
		{"terminationGracePeriodSeconds", *spec.TerminationGracePeriodSeconds, int64(30)},
		{"schedulerName", spec.SchedulerName, "default-scheduler"},
		{"securityContext", spec.SecurityContext != nil, true},
		{"enableServiceLinks", *spec.EnableServiceLinks, true},
		{"pull untagged", spec.Containers[0].ImagePullPolicy, corev1.PullAlways},
		{"pull latest", spec.Containers[1].ImagePullPolicy, corev1.PullAlways},
		{"pull tagged with registry port", spec.Containers[2].ImagePullPolicy, corev1.PullIfNotPresent},
		{"pull digest", spec.Containers[3].ImagePullPolicy, corev1.PullIfNotPresent},
		{"pull registry port no tag", spec.Containers[4].ImagePullPolicy, corev1.PullAlways},
		{"terminationMessagePath", spec.Containers[0].TerminationMessagePath, "/dev/termination-log"},
		{"terminationMessagePolicy", spec.Containers[0].TerminationMessagePolicy, corev1.TerminationMessageReadFile},
		{"port protocol", spec.Containers[0].Ports[0].Protocol, corev1.ProtocolTCP},
		{"probe timeout", spec.Containers[0].LivenessProbe.TimeoutSeconds, int32(1)},
		{"probe period", spec.Containers[0].LivenessProbe.PeriodSeconds, int32(10)},
		{"probe success", spec.Containers[0].LivenessProbe.SuccessThreshold, int32(1)},
		{"probe failure", spec.Containers[0].LivenessProbe.FailureThreshold, int32(3)},
		{"probe http path", spec.Containers[0].LivenessProbe.HTTPGet.Path, "/"},
		{"probe http scheme", spec.Containers[0].LivenessProbe.HTTPGet.Scheme, corev1.URISchemeHTTP},
		{"sourceless volume is emptyDir", spec.Volumes[0].EmptyDir != nil, true},
		{"configMap mode", *spec.Volumes[1].ConfigMap.DefaultMode, int32(420)},
		{"secret mode", *spec.Volumes[2].Secret.DefaultMode, int32(420)},
		{"no service account in templates", spec.ServiceAccountName, ""},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("got %v, want %v", c.got, c.want)
			}
		})
	}
}

func TestValidatePodSpec(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(*corev1.Pod)
		want   []string
	}{
		{"valid", func(*corev1.Pod) {}, nil},
		{"no containers", func(p *corev1.Pod) { p.Spec.Containers = nil }, []string{"FieldValueRequired spec.containers"}},
		{"bad container name", func(p *corev1.Pod) { p.Spec.Containers[0].Name = "App_1" }, []string{"FieldValueInvalid spec.containers[0].name"}},
		{"duplicate across init and app", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "app", Image: "busybox"}}
		}, []string{"FieldValueDuplicate spec.containers[0].name"}},
		{"bad restart policy", func(p *corev1.Pod) { p.Spec.RestartPolicy = "Sometimes" }, []string{"FieldValueNotSupported spec.restartPolicy"}},
		{"bad dns policy", func(p *corev1.Pod) { p.Spec.DNSPolicy = "Google" }, []string{"FieldValueNotSupported spec.dnsPolicy"}},
		{"dns None needs config", func(p *corev1.Pod) { p.Spec.DNSPolicy = corev1.DNSNone }, []string{"FieldValueRequired spec.dnsConfig"}},
		{"port out of range", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 70000, Protocol: corev1.ProtocolTCP}}
		}, []string{"FieldValueInvalid spec.containers[0].ports[0].containerPort"}},
		{"bad port protocol", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, Protocol: "ICMP"}}
		}, []string{"FieldValueNotSupported spec.containers[0].ports[0].protocol"}},
		{"duplicate port names", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: "TCP"}, {Name: "http", ContainerPort: 81, Protocol: "TCP"}}
		}, []string{"FieldValueDuplicate spec.containers[0].ports[1].name"}},
		{"duplicate volume", func(p *corev1.Pod) {
			v := corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
			p.Spec.Volumes = []corev1.Volume{v, v}
		}, []string{"FieldValueDuplicate spec.volumes[1].name"}},
		{"two volume sources", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{
				EmptyDir: &corev1.EmptyDirVolumeSource{}, HostPath: &corev1.HostPathVolumeSource{Path: "/x"}}}}
		}, []string{"FieldValueForbidden spec.volumes[0]"}},
		{"mount of unknown volume", func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "nope", MountPath: "/data"}}
		}, []string{"FieldValueNotFound spec.containers[0].volumeMounts[0].name"}},
		{"env name required", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Value: "x"}}
		}, []string{"FieldValueRequired spec.containers[0].env[0].name"}},
		{"env name with equals", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A=B"}}
		}, []string{"FieldValueInvalid spec.containers[0].env[0].name"}},
		{"request above limit", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources = corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")},
			}
		}, []string{"FieldValueInvalid spec.containers[0].resources.requests[cpu]"}},
		{"negative quantity", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources = corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("-1Mi")},
			}
		}, []string{"FieldValueInvalid spec.containers[0].resources.requests[memory]"}},
		{"probe without handler", func(p *corev1.Pod) {
			p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{PeriodSeconds: 10}
		}, []string{"FieldValueRequired spec.containers[0].readinessProbe"}},
		{"liveness success threshold", func(p *corev1.Pod) {
			p.Spec.Containers[0].LivenessProbe = &corev1.Probe{SuccessThreshold: 2,
				ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}}}
		}, []string{"FieldValueInvalid spec.containers[0].livenessProbe.successThreshold"}},
		{"toleration seconds without NoExecute", func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule, TolerationSeconds: corePtr(int64(5))}}
		}, []string{"FieldValueInvalid spec.tolerations[0].effect"}},
		{"bad node selector", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"a b": "c"} }, []string{"FieldValueInvalid spec.nodeSelector"}},
		{"init container probe", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox", ImagePullPolicy: corev1.PullAlways, TerminationMessagePolicy: corev1.TerminationMessageReadFile,
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}, SuccessThreshold: 1}}}
		}, []string{"FieldValueForbidden spec.initContainers[0].readinessProbe"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := coreTestPod(c.mutate)
			coreExpectErrs(t, validatePodSpec(&p.Spec, coreSpecPath()), c.want...)
		})
	}
}

func TestValidatePodTemplateSpec(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		tmpl corev1.PodTemplateSpec
		want []string
	}{
		{"image may be empty in a template", func() corev1.PodTemplateSpec {
			t := corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
			defaultPodTemplateSpec(&t)
			return t
		}(), nil},
		{"bad template label", func() corev1.PodTemplateSpec {
			t := corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "x"}}}}
			t.Labels = map[string]string{"app": "bad value"}
			defaultPodTemplateSpec(&t)
			return t
		}(), []string{"FieldValueInvalid spec.template.metadata.labels"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			coreExpectErrs(t, validatePodTemplateSpec(&c.tmpl, coreSpecPath().Child("template")), c.want...)
		})
	}
}
