package volume

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// hostFixture builds one of each kind of file the hostPath types check.
func hostFixture(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	mustDo(t, os.Mkdir(filepath.Join(root, "dir"), 0o700))
	mustDo(t, os.WriteFile(filepath.Join(root, "file"), []byte("keep"), 0o600))
	mustDo(t, os.Symlink("dir", filepath.Join(root, "link-to-dir")))
	// We are root: real device nodes make the device checks honest.
	mustDo(t, unix.Mknod(filepath.Join(root, "chr"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))))
	mustDo(t, unix.Mknod(filepath.Join(root, "blk"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 0))))
	l, err := net.Listen("unix", filepath.Join(root, "sock"))
	mustDo(t, err)
	t.Cleanup(func() { l.Close() })
	return root
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestHostPath(t *testing.T) {
	root := hostFixture(t)
	tests := []struct {
		name     string
		path     string
		typ      *corev1.HostPathType
		wantErr  string
		wantMode os.FileMode // checked when non-zero: what *OrCreate made
	}{
		{name: "unset type, missing path", path: "missing"},
		{name: "unset type, file", path: "file", typ: ptr(corev1.HostPathUnset)},
		{name: "DirectoryOrCreate creates", path: "new/sub", typ: ptr(corev1.HostPathDirectoryOrCreate), wantMode: os.ModeDir | 0o755},
		{name: "DirectoryOrCreate keeps existing", path: "dir", typ: ptr(corev1.HostPathDirectoryOrCreate), wantMode: os.ModeDir | 0o700},
		{name: "DirectoryOrCreate on a file", path: "file", typ: ptr(corev1.HostPathDirectoryOrCreate), wantErr: "is not a directory"},
		{name: "Directory", path: "dir", typ: ptr(corev1.HostPathDirectory)},
		{name: "Directory through a symlink", path: "link-to-dir", typ: ptr(corev1.HostPathDirectory)},
		{name: "Directory missing", path: "missing", typ: ptr(corev1.HostPathDirectory), wantErr: "hostPath type check failed: ROOT/missing is not a directory"},
		{name: "Directory on a file", path: "file", typ: ptr(corev1.HostPathDirectory), wantErr: "ROOT/file is not a directory"},
		{name: "FileOrCreate creates", path: "newfile", typ: ptr(corev1.HostPathFileOrCreate), wantMode: 0o644},
		{name: "FileOrCreate keeps existing", path: "file", typ: ptr(corev1.HostPathFileOrCreate), wantMode: 0o600},
		{name: "FileOrCreate does not create parents", path: "nodir/f", typ: ptr(corev1.HostPathFileOrCreate), wantErr: "no such file or directory"},
		{name: "FileOrCreate on a dir", path: "dir", typ: ptr(corev1.HostPathFileOrCreate), wantErr: "ROOT/dir is not a file"},
		{name: "File", path: "file", typ: ptr(corev1.HostPathFile)},
		{name: "File on a dir", path: "dir", typ: ptr(corev1.HostPathFile), wantErr: "ROOT/dir is not a file"},
		{name: "File on a device", path: "chr", typ: ptr(corev1.HostPathFile), wantErr: "is not a file"},
		{name: "Socket", path: "sock", typ: ptr(corev1.HostPathSocket)},
		{name: "Socket on a file", path: "file", typ: ptr(corev1.HostPathSocket), wantErr: "ROOT/file is not a socket file"},
		{name: "CharDevice", path: "chr", typ: ptr(corev1.HostPathCharDev)},
		{name: "CharDevice on a block device", path: "blk", typ: ptr(corev1.HostPathCharDev), wantErr: "ROOT/blk is not a character device"},
		{name: "BlockDevice", path: "blk", typ: ptr(corev1.HostPathBlockDev)},
		{name: "BlockDevice on a char device", path: "chr", typ: ptr(corev1.HostPathBlockDev), wantErr: "ROOT/chr is not a block device"},
		{name: "BlockDevice missing", path: "missing", typ: ptr(corev1.HostPathBlockDev), wantErr: "is not a block device"},
		{name: "invalid type", path: "file", typ: ptr(corev1.HostPathType("Pipe")), wantErr: "Pipe is an invalid volume type"},
		{name: "backsteps", path: "dir/../file", wantErr: "must not contain '..'"},
		{name: "relative", path: "-relative", wantErr: "must be absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(root, tt.path)
			if tt.path == "dir/../file" {
				p = root + "/dir/../file" // Join would clean the backstep away
			}
			if tt.path == "-relative" {
				p = "relative/path"
			}
			got, err := setupHostPath(&corev1.HostPathVolumeSource{Path: p, Type: tt.typ})
			if tt.wantErr != "" {
				want := strings.ReplaceAll(tt.wantErr, "ROOT", root)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("error = %v, want %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != p {
				t.Errorf("path = %s, want %s", got, p)
			}
			if tt.wantMode != 0 {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode() != tt.wantMode {
					t.Errorf("mode = %v, want %v", fi.Mode(), tt.wantMode)
				}
			}
		})
	}
}

// TestHostPathSetupAndTeardown checks that a hostPath volume is handed out
// as the host path itself and that tearing the pod down leaves it alone.
func TestHostPathSetupAndTeardown(t *testing.T) {
	const uid = types.UID("u-hostpath")
	root := hostFixture(t)
	m := newTestManager(t, newFakeAPI(), uid)
	pod := testPod(uid, corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{
		HostPath: &corev1.HostPathVolumeSource{Path: root + "/dir/", Type: ptr(corev1.HostPathDirectory)}}})
	paths, err := m.Setup(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	if paths["host"] != filepath.Join(root, "dir") {
		t.Fatalf("host path = %s, want %s", paths["host"], filepath.Join(root, "dir"))
	}
	mustDo(t, os.WriteFile(filepath.Join(root, "dir", "data"), []byte("x"), 0o600))
	mustDo(t, m.Teardown(uid))
	if _, err := os.Stat(filepath.Join(root, "dir", "data")); err != nil {
		t.Errorf("host file gone after Teardown: %v", err)
	}
	if _, err := os.Stat(m.PodDir(uid)); !os.IsNotExist(err) {
		t.Errorf("pod dir still there: %v", err)
	}
}
