package volume

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/types"
)

// maxUnmountRounds bounds how often Teardown re-reads the mount table, and
// maxStacked how many mounts it pops off one path, so a container that keeps
// mounting cannot keep Teardown looping.
const (
	maxUnmountRounds = 8
	maxStacked       = 64
)

// Teardown unmounts everything mounted under the pod's dir (tmpfs volumes,
// and anything a container propagated back) and then removes the whole pod
// dir, including files the kubelet kept there. Call it once the pod's
// containers are gone. hostPath volumes are never under the pod dir, so
// their contents are not touched; if anything stays mounted, nothing is
// removed, because deleting through a mount would delete someone else's
// files.
func (m *Manager) Teardown(podUID types.UID) error {
	if err := checkUID(podUID); err != nil {
		return err
	}
	dir, err := filepath.EvalSymlinks(m.PodDir(podUID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("resolve pod dir: %w", err)
	}
	if err := unmountUnder(dir); err != nil {
		return fmt.Errorf("tear down pod %s volumes: %w", podUID, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("stat pod dir: %w", err)
	}
	if err := removeTree(dir, st.Dev); err != nil {
		return fmt.Errorf("remove pod dir: %w", err)
	}
	m.log.Info("pod volumes torn down", "podUID", string(podUID))
	return nil
}

// checkUID refuses UIDs that would make PodDir the root dir or point
// outside it, which would turn Teardown into a much bigger delete.
func checkUID(uid types.UID) error {
	s := string(uid)
	if s == "" || s == "." || s == ".." || strings.ContainsRune(s, '/') {
		return fmt.Errorf("volume: invalid pod UID %q", s)
	}
	return nil
}

func unmountUnder(dir string) error {
	for round := 0; round < maxUnmountRounds; round++ {
		mps, err := mountsUnder(dir)
		if err != nil {
			return err
		}
		if len(mps) == 0 {
			return nil
		}
		// Deepest first: a parent cannot be unmounted while a child is busy.
		sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
		var errs []error
		for _, mp := range mps {
			if err := unmountAll(mp); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
	}
	mps, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	if len(mps) > 0 {
		return fmt.Errorf("still mounted after %d rounds: %s", maxUnmountRounds, strings.Join(mps, ", "))
	}
	return nil
}

// unmountAll pops every mount stacked on mp; the parent's unmount would
// fail while any layer remains.
func unmountAll(mp string) error {
	for range maxStacked {
		err := unix.Unmount(mp, 0)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil // no longer a mount point
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", mp, err)
		}
	}
	return fmt.Errorf("unmount %s: more than %d mounts stacked", mp, maxStacked)
}

// mountsUnder lists the distinct mount points at or below dir, from this
// process's mount table.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	seen := map[string]bool{}
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		// Field 5 is the mount point: "36 35 98:0 /mnt1 /mnt2 rw ..."
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if (mp == dir || strings.HasPrefix(mp, dir+"/")) && !seen[mp] {
			seen[mp] = true
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return out, nil
}

// unescapeMountPath undoes the kernel's octal escaping (\040 for a space)
// of whitespace and backslashes in mountinfo paths.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// removeTree deletes p without following symlinks and refuses to descend
// into a directory on another filesystem: a last guard should something be
// mounted between the mount table check and the delete.
func removeTree(p string, dev uint64) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("stat %s: %w", p, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return os.Remove(p)
	}
	if st.Dev != dev {
		return fmt.Errorf("refusing to remove %s: another filesystem is mounted there", p)
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return fmt.Errorf("list %s: %w", p, err)
	}
	for _, e := range entries {
		if err := removeTree(filepath.Join(p, e.Name()), dev); err != nil {
			return err
		}
	}
	return os.Remove(p)
}
