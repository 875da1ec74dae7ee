package volume

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
)

func TestEmptyDir(t *testing.T) {
	tests := []struct {
		name      string
		src       corev1.EmptyDirVolumeSource
		wantTmpfs string // expected size= option; "" means disk-backed
		wantErr   string
	}{
		{name: "disk", src: corev1.EmptyDirVolumeSource{}},
		{name: "memory with sizeLimit", src: corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: ptr(resource.MustParse("8Mi"))},
			wantTmpfs: "size=8192k"},
		{name: "memory sized by node allocatable", src: corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory},
			wantTmpfs: "size=16384k"},
		{name: "hugepages", src: corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumHugePages},
			wantErr: `emptyDir medium "HugePages" is not supported`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			uid := types.UID("u-empty-" + string(rune('a'+i)))
			m := newTestManager(t, newFakeAPI(), uid)
			pod := testPod(uid, corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &tt.src}})
			paths, err := m.Setup(context.Background(), pod)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			dir := paths["scratch"]
			if want := filepath.Join(m.PodDir(uid), "volumes", kindEmptyDir, "scratch"); dir != want {
				t.Fatalf("path = %s, want %s", dir, want)
			}
			fi, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantTmpfs == "" && fi.Mode().Perm() != 0o777 {
				t.Errorf("disk emptyDir mode = %v, want world-writable", fi.Mode())
			}
			mustDo(t, os.WriteFile(filepath.Join(dir, "data"), []byte("x"), 0o644))
			// Setup again, as every sync does: no second mount, data kept.
			if _, err := m.Setup(context.Background(), pod); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "data")); err != nil {
				t.Errorf("data lost on second Setup: %v", err)
			}
			mounts := mountsAt(t, dir)
			if tt.wantTmpfs == "" {
				if len(mounts) != 0 {
					t.Fatalf("disk emptyDir has mounts %v", mounts)
				}
			} else {
				if len(mounts) != 1 || mounts[0].fsType != "tmpfs" || !strings.Contains(mounts[0].superOpts, tt.wantTmpfs) {
					t.Fatalf("mounts on %s = %v, want one tmpfs with %s", dir, mounts, tt.wantTmpfs)
				}
			}
			mustDo(t, m.Teardown(uid))
			if mounts := mountsAt(t, dir); len(mounts) != 0 {
				t.Errorf("mounts left after Teardown: %v", mounts)
			}
			if _, err := os.Lstat(m.PodDir(uid)); !os.IsNotExist(err) {
				t.Errorf("pod dir left after Teardown: %v", err)
			}
		})
	}
}
