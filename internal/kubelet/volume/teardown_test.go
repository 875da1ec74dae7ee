package volume

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestTeardownNeverReachesTheHost plants, inside a pod's volumes, the ways
// a container can point at host files: a symlink, and a bind mount (what
// Bidirectional propagation brings back). Teardown must remove the pod dir
// and leave the host files intact.
func TestTeardownNeverReachesTheHost(t *testing.T) {
	tests := []struct {
		name  string
		plant func(t *testing.T, scratch, host string)
	}{
		{name: "symlink to a host dir", plant: func(t *testing.T, scratch, host string) {
			mustDo(t, os.Symlink(host, filepath.Join(scratch, "escape")))
		}},
		{name: "bind mount of a host dir", plant: func(t *testing.T, scratch, host string) {
			target := filepath.Join(scratch, "mnt")
			mustDo(t, os.Mkdir(target, 0o755))
			mustDo(t, unix.Mount(host, target, "", unix.MS_BIND, ""))
			t.Cleanup(func() { _ = unix.Unmount(target, unix.MNT_DETACH) }) // only if the test failed
		}},
		{name: "bind mount stacked twice", plant: func(t *testing.T, scratch, host string) {
			target := filepath.Join(scratch, "mnt")
			mustDo(t, os.Mkdir(target, 0o755))
			for range 2 {
				mustDo(t, unix.Mount(host, target, "", unix.MS_BIND, ""))
			}
			t.Cleanup(func() {
				_ = unix.Unmount(target, unix.MNT_DETACH)
				_ = unix.Unmount(target, unix.MNT_DETACH)
			})
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			uid := types.UID("u-teardown-" + string(rune('a'+i)))
			host := t.TempDir()
			mustDo(t, os.WriteFile(filepath.Join(host, "precious"), []byte("keep"), 0o600))
			m := newTestManager(t, newFakeAPI(), uid)
			pod := testPod(uid,
				corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				corev1.Volume{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
				corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: host}}})
			paths, err := m.Setup(context.Background(), pod)
			mustDo(t, err)
			tt.plant(t, paths["scratch"], host)
			tt.plant(t, paths["mem"], host)
			mustDo(t, os.WriteFile(filepath.Join(m.PodDir(uid), "etc-hosts"), []byte("127.0.0.1 localhost\n"), 0o644))

			mustDo(t, m.Teardown(uid))
			if data, err := os.ReadFile(filepath.Join(host, "precious")); err != nil || string(data) != "keep" {
				t.Fatalf("host file after Teardown: %q, %v", data, err)
			}
			if _, err := os.Lstat(m.PodDir(uid)); !os.IsNotExist(err) {
				t.Errorf("pod dir left after Teardown: %v", err)
			}
			if mps, err := mountsUnder(m.root); err != nil || len(mps) != 0 {
				t.Errorf("mounts left: %v %v", mps, err)
			}
			// Teardown of a pod already gone is a no-op.
			mustDo(t, m.Teardown(uid))
		})
	}
}

func TestTeardownRejectsBadUIDs(t *testing.T) {
	m := newTestManager(t, newFakeAPI())
	keep := filepath.Join(m.root, "other-pod", "file")
	mustDo(t, os.MkdirAll(filepath.Dir(keep), 0o755))
	mustDo(t, os.WriteFile(keep, nil, 0o644))
	for _, uid := range []types.UID{"", ".", "..", "a/b", "../x"} {
		t.Run(string(uid), func(t *testing.T) {
			if err := m.Teardown(uid); err == nil || !strings.Contains(err.Error(), "invalid pod UID") {
				t.Fatalf("Teardown(%q) = %v, want invalid UID", uid, err)
			}
			if _, err := os.Stat(keep); err != nil {
				t.Fatalf("other pod's file gone: %v", err)
			}
		})
	}
}

// TestRemoveTreeStopsAtOtherFilesystems checks the last guard on its own:
// with a tmpfs still mounted inside, nothing on it is deleted.
func TestRemoveTreeStopsAtOtherFilesystems(t *testing.T) {
	dir := t.TempDir()
	mnt := filepath.Join(dir, "a", "mnt")
	mustDo(t, os.MkdirAll(mnt, 0o755))
	mustDo(t, unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"))
	t.Cleanup(func() { mustDo(t, unix.Unmount(mnt, 0)) })
	mustDo(t, os.WriteFile(filepath.Join(mnt, "f"), []byte("x"), 0o644))
	var st unix.Stat_t
	mustDo(t, unix.Lstat(dir, &st))
	if err := removeTree(dir, st.Dev); err == nil || !strings.Contains(err.Error(), "another filesystem") {
		t.Fatalf("removeTree = %v, want refusal", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "f")); err != nil {
		t.Errorf("file on the mounted filesystem deleted: %v", err)
	}
}

func TestUnescapeMountPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/plain", "/plain"},
		{`/with\040space`, "/with space"},
		{`/tab\011and\012newline`, "/tab\tand\nnewline"},
		{`/back\134slash`, `/back\slash`},
		{`/short\04`, `/short\04`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := unescapeMountPath(tt.in); got != tt.want {
				t.Errorf("unescapeMountPath(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
