package volume

import (
	"context"
	"maps"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
)

func TestDownwardAPIValues(t *testing.T) {
	const uid = types.UID("u-downward")
	m := newTestManager(t, newFakeAPI(), uid)
	pod := testPod(uid)
	pod.Labels = map[string]string{"tier": "front", "app": "web"}
	pod.Annotations = map[string]string{"note": "say \"hi\"\nbye", "empty": ""}
	pod.Spec.Containers = []corev1.Container{{
		Name: "app",
		Resources: corev1.ResourceRequirements{
			Limits: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("250m"),
				corev1.ResourceMemory: resource.MustParse("64Mi"),
				"hugepages-2Mi":       resource.MustParse("4Mi"),
			},
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:              resource.MustParse("1.5"),
				corev1.ResourceMemory:           resource.MustParse("1000"),
				corev1.ResourceEphemeralStorage: resource.MustParse("1G"),
			},
		},
	}}
	pod.Spec.InitContainers = []corev1.Container{{Name: "init",
		Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3")}}}}

	field := func(p string) corev1.DownwardAPIVolumeFile {
		return corev1.DownwardAPIVolumeFile{Path: "f", FieldRef: &corev1.ObjectFieldSelector{FieldPath: p}}
	}
	res := func(container, r, divisor string) corev1.DownwardAPIVolumeFile {
		ref := &corev1.ResourceFieldSelector{ContainerName: container, Resource: r}
		if divisor != "" {
			ref.Divisor = resource.MustParse(divisor)
		}
		return corev1.DownwardAPIVolumeFile{Path: "f", ResourceFieldRef: ref}
	}
	tests := []struct {
		name    string
		item    corev1.DownwardAPIVolumeFile
		want    string
		wantErr string
	}{
		{name: "name", item: field("metadata.name"), want: "web"},
		{name: "namespace", item: field("metadata.namespace"), want: "default"},
		{name: "uid", item: field("metadata.uid"), want: string(uid)},
		{name: "labels sorted and quoted", item: field("metadata.labels"), want: "app=\"web\"\ntier=\"front\""},
		{name: "annotations escaped", item: field("metadata.annotations"), want: "empty=\"\"\nnote=\"say \\\"hi\\\"\\nbye\""},
		{name: "one label", item: field("metadata.labels['tier']"), want: "front"},
		{name: "one annotation", item: field("metadata.annotations['note']"), want: "say \"hi\"\nbye"},
		{name: "absent label is empty", item: field("metadata.labels['nope']"), want: ""},
		{name: "env-only field", item: field("spec.nodeName"), wantErr: "unsupported fieldPath: spec.nodeName"},
		{name: "subscript of a non-map field", item: field("metadata.name['x']"), wantErr: "unsupported fieldPath"},
		{name: "cpu limit rounds up to cores", item: res("app", "limits.cpu", ""), want: "1"},
		{name: "cpu limit in millicores", item: res("app", "limits.cpu", "1m"), want: "250"},
		{name: "cpu request rounds up", item: res("app", "requests.cpu", "1"), want: "2"},
		{name: "memory limit in Mi", item: res("app", "limits.memory", "1Mi"), want: "64"},
		{name: "memory limit in bytes", item: res("app", "limits.memory", ""), want: "67108864"},
		{name: "memory request rounds up", item: res("app", "requests.memory", "1Ki"), want: "1"},
		{name: "ephemeral-storage request", item: res("app", "requests.ephemeral-storage", "1M"), want: "1000"},
		{name: "missing ephemeral-storage limit is node allocatable", item: res("app", "limits.ephemeral-storage", "1Mi"), want: "1024"},
		{name: "missing memory limit is node allocatable", item: res("init", "limits.memory", "1Mi"), want: "16"},
		{name: "init container", item: res("init", "limits.cpu", ""), want: "3"},
		{name: "hugepages limit", item: res("app", "limits.hugepages-2Mi", "1Mi"), want: "4"},
		{name: "unknown resource", item: res("app", "limits.gpu", ""), wantErr: "unsupported container resource"},
		{name: "unknown container", item: res("sidecar", "limits.cpu", ""), wantErr: `container "sidecar" not found`},
		{name: "no container name", item: res("", "limits.cpu", ""), wantErr: "needs containerName"},
		{name: "no reference", item: corev1.DownwardAPIVolumeFile{Path: "f"}, wantErr: "fieldRef or resourceFieldRef"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := m.downwardAPIVolume(pod, []corev1.DownwardAPIVolumeFile{tt.item}, 0o644)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := string(got["f"].data); s != tt.want {
				t.Errorf("value = %q, want %q", s, tt.want)
			}
		})
	}

	t.Run("volume with item modes", func(t *testing.T) {
		p := pod.DeepCopy()
		p.Spec.Volumes = []corev1.Volume{{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
			DefaultMode: ptr(int32(0o600)),
			Items: []corev1.DownwardAPIVolumeFile{
				{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
				{Path: "meta/ns", Mode: ptr(int32(0o444)), FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}},
			}}}}}
		paths, err := m.Setup(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"name": "-rw------- web", "meta/ns": "-r--r--r-- default"}
		if got := readVolume(t, paths["info"]); !maps.Equal(got, want) {
			t.Errorf("files = %q, want %q", got, want)
		}
	})
}
