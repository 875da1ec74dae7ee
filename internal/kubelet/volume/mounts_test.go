package volume

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestContainerMounts(t *testing.T) {
	const uid = types.UID("u-mounts")
	api := newFakeAPI()
	api.setConfigMap(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "cfg"},
		Data: map[string]string{"nginx.conf": "worker_processes 1;"}})
	m := newTestManager(t, api, uid)
	outside := t.TempDir()
	hostDir := t.TempDir()
	mustDo(t, os.Chmod(hostDir, 0o750))
	pod := testPod(uid,
		corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		corev1.Volume{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: cmRef("cfg")}}},
		corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostDir}}})
	vols, err := m.Setup(context.Background(), pod)
	mustDo(t, err)
	scratch := vols["scratch"]
	// What a container could leave in a writable volume.
	mustDo(t, os.Symlink(outside, filepath.Join(scratch, "escape")))
	mustDo(t, os.Symlink("/", filepath.Join(scratch, "root")))
	mustDo(t, os.MkdirAll(filepath.Join(scratch, "real", "dir"), 0o755))
	mustDo(t, os.Symlink("real/dir", filepath.Join(scratch, "inside")))
	cfgTarget, err := os.Readlink(filepath.Join(vols["cfg"], dataLink))
	mustDo(t, err)

	env := map[string]string{"POD_NAME": "web-0", "EMPTY": ""}
	prop := func(p corev1.MountPropagationMode) *corev1.MountPropagationMode { return &p }
	tests := []struct {
		name       string
		mount      corev1.VolumeMount
		privileged bool
		want       *runtimeapi.Mount
		wantDir    os.FileMode // mode of the host path when set: subPath dirs made
		wantErr    string
	}{
		{name: "read-write emptyDir",
			mount: corev1.VolumeMount{Name: "scratch", MountPath: "/data"},
			want:  &runtimeapi.Mount{ContainerPath: "/data", HostPath: scratch}},
		{name: "readOnly",
			mount: corev1.VolumeMount{Name: "host", MountPath: "/h", ReadOnly: true},
			want:  &runtimeapi.Mount{ContainerPath: "/h", HostPath: hostDir, Readonly: true}},
		{name: "configMap is always read-only",
			mount: corev1.VolumeMount{Name: "cfg", MountPath: "/etc/cfg"},
			want:  &runtimeapi.Mount{ContainerPath: "/etc/cfg", HostPath: vols["cfg"], Readonly: true}},
		{name: "propagation None",
			mount: corev1.VolumeMount{Name: "host", MountPath: "/h", MountPropagation: prop(corev1.MountPropagationNone)},
			want:  &runtimeapi.Mount{ContainerPath: "/h", HostPath: hostDir, Propagation: runtimeapi.MountPropagation_PROPAGATION_PRIVATE}},
		{name: "propagation HostToContainer",
			mount: corev1.VolumeMount{Name: "host", MountPath: "/h", MountPropagation: prop(corev1.MountPropagationHostToContainer)},
			want:  &runtimeapi.Mount{ContainerPath: "/h", HostPath: hostDir, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}},
		{name: "propagation Bidirectional when privileged", privileged: true,
			mount: corev1.VolumeMount{Name: "host", MountPath: "/h", MountPropagation: prop(corev1.MountPropagationBidirectional)},
			want:  &runtimeapi.Mount{ContainerPath: "/h", HostPath: hostDir, Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL}},
		{name: "propagation Bidirectional unprivileged",
			mount:   corev1.VolumeMount{Name: "host", MountPath: "/h", MountPropagation: prop(corev1.MountPropagationBidirectional)},
			wantErr: "Bidirectional mount propagation is available only to privileged containers"},
		{name: "propagation invalid",
			mount:   corev1.VolumeMount{Name: "host", MountPath: "/h", MountPropagation: prop("Sideways")},
			wantErr: `invalid MountPropagation mode: "Sideways"`},
		{name: "recursiveReadOnly Enabled",
			mount:   corev1.VolumeMount{Name: "host", MountPath: "/h", ReadOnly: true, RecursiveReadOnly: ptr(corev1.RecursiveReadOnlyEnabled)},
			wantErr: "recursiveReadOnly Enabled is not supported"},
		{name: "recursiveReadOnly IfPossible is a plain read-only mount",
			mount: corev1.VolumeMount{Name: "host", MountPath: "/h", ReadOnly: true, RecursiveReadOnly: ptr(corev1.RecursiveReadOnlyIfPossible)},
			want:  &runtimeapi.Mount{ContainerPath: "/h", HostPath: hostDir, Readonly: true}},
		{name: "volume not in the pod",
			mount:   corev1.VolumeMount{Name: "nope", MountPath: "/n"},
			wantErr: `cannot find volume "nope" to mount into container "app"`},
		{name: "subPath created with the volume's mode",
			mount:   corev1.VolumeMount{Name: "scratch", MountPath: "/logs", SubPath: "logs/app"},
			want:    &runtimeapi.Mount{ContainerPath: "/logs", HostPath: filepath.Join(scratch, "logs", "app")},
			wantDir: os.ModeDir | 0o777},
		{name: "subPath inside a hostPath",
			mount:   corev1.VolumeMount{Name: "host", MountPath: "/h", SubPath: "sub"},
			want:    &runtimeapi.Mount{ContainerPath: "/h", HostPath: filepath.Join(hostDir, "sub")},
			wantDir: os.ModeDir | 0o750},
		{name: "subPath to a configMap key resolves the symlinks",
			mount: corev1.VolumeMount{Name: "cfg", MountPath: "/etc/nginx/nginx.conf", SubPath: "nginx.conf"},
			want: &runtimeapi.Mount{ContainerPath: "/etc/nginx/nginx.conf", Readonly: true,
				HostPath: filepath.Join(vols["cfg"], cfgTarget, "nginx.conf")}},
		{name: "subPath through a symlink staying inside",
			mount: corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPath: "inside/more"},
			want:  &runtimeapi.Mount{ContainerPath: "/x", HostPath: filepath.Join(scratch, "real", "dir", "more")}},
		{name: "subPath through a symlink to another dir",
			mount:   corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPath: "escape/sub"},
			wantErr: "not within volume path"},
		{name: "subPath through a symlink to /",
			mount:   corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPath: "root/etc"},
			wantErr: "not within volume path"},
		{name: "subPath absolute",
			mount:   corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPath: "/etc"},
			wantErr: "error SubPath `/etc` must not be an absolute path"},
		{name: "subPath backsteps",
			mount:   corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPath: "a/../../etc"},
			wantErr: "unable to provision SubPath `a/../../etc`: must not contain '..'"},
		{name: "subPathExpr",
			mount:   corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPathExpr: "pods/$(POD_NAME)"},
			want:    &runtimeapi.Mount{ContainerPath: "/x", HostPath: filepath.Join(scratch, "pods", "web-0")},
			wantDir: os.ModeDir | 0o777},
		{name: "subPathExpr missing variable",
			mount:   corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPathExpr: "$(NOPE)/$(EMPTY)"},
			wantErr: "missing value for EMPTY, NOPE"},
		{name: "subPathExpr expanding to backsteps",
			mount:   corev1.VolumeMount{Name: "scratch", MountPath: "/x", SubPathExpr: "..$(POD_NAME)/../.."},
			wantErr: "must not contain '..'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &corev1.Container{Name: "app", VolumeMounts: []corev1.VolumeMount{tt.mount}}
			if tt.privileged {
				c.SecurityContext = &corev1.SecurityContext{Privileged: ptr(true)}
			}
			got, err := ContainerMounts(pod, c, vols, env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 {
				t.Fatalf("got %d mounts, want 1", len(got))
			}
			g, w := got[0], tt.want
			if g.ContainerPath != w.ContainerPath || g.HostPath != w.HostPath || g.Readonly != w.Readonly ||
				g.Propagation != w.Propagation || g.SelinuxRelabel {
				t.Errorf("mount = %v, want %v", g, w)
			}
			if tt.wantDir != 0 {
				fi, err := os.Stat(g.HostPath)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode() != tt.wantDir {
					t.Errorf("subPath mode = %v, want %v", fi.Mode(), tt.wantDir)
				}
			}
		})
	}
	if entries, err := os.ReadDir(outside); err != nil || len(entries) != 0 {
		t.Errorf("something was created outside the volume: %v %v", entries, err)
	}
}

func TestExpandSubPathExpr(t *testing.T) {
	env := map[string]string{"A": "x", "B": "y"}
	tests := []struct {
		expr, want, wantErr string
	}{
		{expr: "plain", want: "plain"},
		{expr: "$(A)/$(B)", want: "x/y"},
		{expr: "$$(A)", want: "$(A)"},
		{expr: "cost$5", want: "cost$5"},
		{expr: "trailing$", want: "trailing$"},
		{expr: "open$(A", want: "open$(A"},
		{expr: "$(C)", wantErr: "missing value for C"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got, err := expandSubPathExpr(tt.expr, env)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("expand(%q) = %q, %v; want %q", tt.expr, got, err, tt.want)
			}
		})
	}
}
