package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestPodEnvironmentAndVolumes checks what a container sees of its pod
// spec, from inside, through kubectl exec: environment variables of every
// source, every volume type a node serves itself, its security context,
// and the hosts file and hostname the kubelet gives it.
func TestPodEnvironmentAndVolumes(t *testing.T) {
	ns := namespace(t)
	ctx := context.Background()
	core := cl.client.CoreV1()
	if _, err := core.ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings"},
		Data:       map[string]string{"color": "blue", "size": "small"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := core.Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "creds"},
		Data:       map[string][]byte{"user": []byte("admin"), "password": []byte("s3cret")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Created before the pod, so its environment names it.
	svc, err := core.Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 8080}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hostDir := t.TempDir()
	// The container runs as user 1000, who must get into the directory.
	if err := os.Chmod(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostDir, "from-host"), []byte("host file\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	c := busybox("main", "exec sleep 3600")
	c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}
	c.Env = []corev1.EnvVar{
		{Name: "GREETING", Value: "hello"},
		{Name: "MESSAGE", Value: "$(GREETING) world"},
		{Name: "LITERAL", Value: "$$(GREETING) and $(UNDEFINED)"},
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
		{Name: "MEMORY_LIMIT_MI", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
			Resource: "limits.memory", Divisor: resource.MustParse("1Mi"),
		}}},
		{Name: "COLOR", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}, Key: "color",
		}}},
		{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "password",
		}}},
	}
	c.EnvFrom = []corev1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &corev1.ConfigMapEnvSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: "settings"},
	}}}
	c.VolumeMounts = []corev1.VolumeMount{
		{Name: "config", MountPath: "/etc/config"},
		{Name: "creds", MountPath: "/etc/creds"},
		{Name: "podinfo", MountPath: "/etc/podinfo"},
		{Name: "all", MountPath: "/etc/all"},
		{Name: "scratch", MountPath: "/scratch"},
		{Name: "host", MountPath: "/host"},
	}
	c.SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To[int64](1000), ReadOnlyRootFilesystem: ptr.To(true)}
	settings := corev1.LocalObjectReference{Name: "settings"}
	pod := createPod(t, ns, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "envpod", Labels: map[string]string{"app": "env", "tier": "test"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{c},
			Volumes: []corev1.Volume{
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: settings,
					Items:                []corev1.KeyToPath{{Key: "color", Path: "colors/favourite"}},
				}}},
				{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}},
				{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
					Items: []corev1.DownwardAPIVolumeFile{{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}},
				}}},
				{Name: "all", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: settings, Items: []corev1.KeyToPath{{Key: "size", Path: "size"}}}},
					{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Items: []corev1.KeyToPath{{Key: "user", Path: "user"}}}},
					{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}},
				}}}},
				{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
				{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostDir}}},
			},
		},
	})
	pod = waitPod(t, ns, pod.Name, 60*time.Second, "running", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil
	})
	podIP := pod.Status.PodIP
	exec := func(t *testing.T, args ...string) string {
		t.Helper()
		return kubectl(t, append([]string{"-n", ns, "exec", "envpod", "--"}, args...)...)
	}

	t.Run("environment", func(t *testing.T) {
		env := map[string]string{}
		for _, line := range strings.Split(exec(t, "env"), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				env[k] = v
			}
		}
		want := map[string]string{
			"GREETING":                "hello",
			"MESSAGE":                 "hello world",
			"LITERAL":                 "$(GREETING) and $(UNDEFINED)",
			"POD_NAME":                "envpod",
			"POD_NAMESPACE":           ns,
			"POD_IP":                  podIP,
			"NODE_NAME":               nodeName,
			"MEMORY_LIMIT_MI":         "64",
			"COLOR":                   "blue",
			"PASSWORD":                "s3cret",
			"CFG_color":               "blue",
			"CFG_size":                "small",
			"WEB_SERVICE_HOST":        svc.Spec.ClusterIP,
			"WEB_SERVICE_PORT":        "8080",
			"WEB_SERVICE_PORT_HTTP":   "8080",
			"WEB_PORT":                "tcp://" + svc.Spec.ClusterIP + ":8080",
			"HOSTNAME":                "envpod",
			"KUBERNETES_SERVICE_PORT": "443",
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("$%s = %q, want %q", k, env[k], v)
			}
		}
		if podIP == "" || env["KUBERNETES_SERVICE_HOST"] == "" {
			t.Errorf("pod IP %q, KUBERNETES_SERVICE_HOST %q", podIP, env["KUBERNETES_SERVICE_HOST"])
		}
	})

	t.Run("volumes", func(t *testing.T) {
		files := map[string]string{
			"/etc/config/colors/favourite": "blue",
			"/etc/creds/user":              "admin",
			"/etc/creds/password":          "s3cret",
			"/etc/podinfo/labels":          "app=\"env\"\ntier=\"test\"",
			"/etc/all/size":                "small",
			"/etc/all/user":                "admin",
			"/etc/all/name":                "envpod",
			"/host/from-host":              "host file",
		}
		for path, want := range files {
			if got := strings.TrimSpace(exec(t, "cat", path)); got != want {
				t.Errorf("%s = %q, want %q", path, got, want)
			}
		}
		// Only the listed item of the config map is projected.
		if out := strings.Fields(exec(t, "ls", "/etc/config", "/etc/config/colors")); strings.Join(out, " ") != "/etc/config: colors /etc/config/colors: favourite" {
			t.Errorf("config volume holds %v", out)
		}
		if mounts := exec(t, "cat", "/proc/mounts"); !strings.Contains(mounts, "tmpfs /scratch tmpfs") {
			t.Errorf("/scratch is not a tmpfs:\n%s", mounts)
		}
	})

	t.Run("security context", func(t *testing.T) {
		if uid := strings.TrimSpace(exec(t, "id", "-u")); uid != "1000" {
			t.Errorf("id -u = %q, want 1000", uid)
		}
		if out, err := kubectlErr(t, nil, "-n", ns, "exec", "envpod", "--", "touch", "/rootfile"); err == nil {
			t.Errorf("writing to the read-only root succeeded: %s", out)
		} else if !strings.Contains(out, "Read-only file system") {
			t.Errorf("writing to the root failed for another reason: %s", out)
		}
		exec(t, "touch", "/scratch/written")
		if out := strings.TrimSpace(exec(t, "stat", "-c", "%u", "/scratch/written")); out != "1000" {
			t.Errorf("file in the emptyDir owned by %q, want 1000", out)
		}
	})

	t.Run("hosts and hostname", func(t *testing.T) {
		if h := strings.TrimSpace(exec(t, "hostname")); h != "envpod" {
			t.Errorf("hostname = %q", h)
		}
		hosts := exec(t, "cat", "/etc/hosts")
		found := false
		for _, line := range strings.Split(hosts, "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == podIP && f[1] == "envpod" {
				found = true
			}
		}
		if !found {
			t.Errorf("/etc/hosts has no line for %s envpod:\n%s", podIP, hosts)
		}
	})

	t.Run("config map update reaches the volume", func(t *testing.T) {
		cm, err := core.ConfigMaps(ns).Get(ctx, "settings", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.Data = map[string]string{"color": "green", "size": "large"}
		if _, err := core.ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, "new config map content in the running pod", func() (bool, string) {
			out, err := kubectlErr(t, nil, "-n", ns, "exec", "envpod", "--", "sh", "-c", "cat /etc/config/colors/favourite; echo; cat /etc/all/size")
			return err == nil && out == "green\nlarge", fmt.Sprintf("%q %v", out, err)
		})
		// The environment was fixed when the container started.
		if out := strings.TrimSpace(exec(t, "sh", "-c", "echo $COLOR")); out != "blue" {
			t.Errorf("$COLOR = %q after the update, want the old value blue", out)
		}
	})
}

// TestInitContainersRunInOrder runs two init containers that append to an
// emptyDir, the second checking that the first ran, and a main container
// that sees both lines.
func TestInitContainersRunInOrder(t *testing.T) {
	ns := namespace(t)
	work := []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}
	first := busybox("first", "echo first >> /work/log")
	first.VolumeMounts = work
	second := busybox("second", "grep -qx first /work/log && echo second >> /work/log")
	second.VolumeMounts = work
	app := busybox("app", "exec sleep 3600")
	app.VolumeMounts = work
	createPod(t, ns, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "inits"},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{first, second},
			Containers:     []corev1.Container{app},
			Volumes:        []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	})
	p := waitPod(t, ns, "inits", 60*time.Second, "running", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil
	})
	if len(p.Status.InitContainerStatuses) != 2 {
		t.Fatalf("initContainerStatuses = %+v", p.Status.InitContainerStatuses)
	}
	for i, cs := range p.Status.InitContainerStatuses {
		term := cs.State.Terminated
		if cs.Name != []string{"first", "second"}[i] || term == nil || term.Reason != "Completed" || term.ExitCode != 0 || cs.RestartCount != 0 {
			t.Errorf("init container %d: %+v", i, cs)
		}
	}
	if a, b := p.Status.InitContainerStatuses[0].State.Terminated, p.Status.InitContainerStatuses[1].State.Terminated; a != nil && b != nil && b.StartedAt.Before(&a.FinishedAt) {
		t.Errorf("second started at %s, before first finished at %s", b.StartedAt, a.FinishedAt)
	}
	if c := findPodCondition(p, corev1.PodInitialized); c == nil || c.Status != corev1.ConditionTrue {
		t.Errorf("Initialized condition %+v", c)
	}
	if out := kubectl(t, "-n", ns, "exec", "inits", "-c", "app", "--", "cat", "/work/log"); out != "first\nsecond\n" {
		t.Errorf("/work/log = %q, want first and second in order", out)
	}
}

func findPodCondition(p *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}
