package volume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// setupEmptyDir creates a disk-backed emptyDir, or mounts a tmpfs for
// medium Memory. A tmpfs is sized by sizeLimit, else by the node's
// allocatable memory, so one pod cannot fill all of RAM by writing files.
func (m *Manager) setupEmptyDir(dir string, src *corev1.EmptyDirVolumeSource) error {
	switch src.Medium {
	case corev1.StorageMediumDefault:
		return ensureDir(dir)
	case corev1.StorageMediumMemory:
		size := ""
		if src.SizeLimit != nil && src.SizeLimit.Sign() > 0 {
			size = strconv.FormatInt(src.SizeLimit.Value(), 10)
		} else if mem, ok := m.nodeAllocatable()[corev1.ResourceMemory]; ok && mem.Sign() > 0 {
			size = strconv.FormatInt(mem.Value(), 10)
		}
		return ensureTmpfs(dir, size)
	default:
		return fmt.Errorf("emptyDir medium %q is not supported", src.Medium)
	}
}

// ensureTmpfs mounts a tmpfs on dir unless one is already there, so that
// repeated Setup calls neither stack mounts nor hide files already written.
func ensureTmpfs(dir, size string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create volume dir: %w", err)
	}
	mounted, err := isMountPoint(dir)
	if err != nil {
		return err
	}
	if mounted {
		return nil
	}
	opts := ""
	if size != "" {
		opts = "size=" + size
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return nil
}

// isMountPoint reports whether dir is the root of a filesystem other than
// its parent's. It sees the tmpfs mounts this package makes; a bind mount
// of the parent's own filesystem would go unnoticed, which is why Teardown
// reads the mount table instead.
func isMountPoint(dir string) (bool, error) {
	var st, parent syscall.Stat_t
	if err := syscall.Lstat(dir, &st); err != nil {
		return false, fmt.Errorf("stat %s: %w", dir, err)
	}
	if err := syscall.Lstat(filepath.Dir(dir), &parent); err != nil {
		return false, fmt.Errorf("stat %s: %w", filepath.Dir(dir), err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return false, errors.New(dir + " is not a directory")
	}
	return st.Dev != parent.Dev, nil
}
