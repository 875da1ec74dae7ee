package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
)

// setupHostPath checks (and for the *OrCreate types creates) the host path
// and returns it. Nothing is created under the pod dir, so Teardown can
// never reach into the host through a hostPath volume.
func setupHostPath(src *corev1.HostPathVolumeSource) (string, error) {
	p := src.Path
	if p == "" {
		return "", errors.New("hostPath path must not be empty")
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("hostPath path %q must be absolute", p)
	}
	if err := noBacksteps(p); err != nil {
		return "", fmt.Errorf("hostPath path %q: %w", p, err)
	}
	p = filepath.Clean(p)
	typ := corev1.HostPathUnset
	if src.Type != nil {
		typ = *src.Type
	}
	if err := checkHostPathType(p, typ); err != nil {
		return "", err
	}
	return p, nil
}

// checkHostPathType applies upstream's rules and error texts: the checks
// follow symlinks, the *OrCreate types create only what is missing and do
// not create a file's parent directory.
func checkHostPathType(p string, typ corev1.HostPathType) error {
	fi, statErr := os.Stat(p)
	exists := statErr == nil
	mode := fs.FileMode(0)
	if exists {
		mode = fi.Mode()
	}
	switch typ {
	case corev1.HostPathUnset:
		return nil
	case corev1.HostPathDirectoryOrCreate:
		if !exists {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("hostPath type check failed: create directory %s: %w", p, err)
			}
			// Upstream relies on the kubelet's umask; be explicit instead.
			return os.Chmod(p, 0o755)
		}
		fallthrough
	case corev1.HostPathDirectory:
		if !exists || !mode.IsDir() {
			return fmt.Errorf("hostPath type check failed: %s is not a directory", p)
		}
	case corev1.HostPathFileOrCreate:
		if !exists {
			f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE, 0o644)
			if err != nil {
				return fmt.Errorf("hostPath type check failed: create file %s: %w", p, err)
			}
			if err := f.Close(); err != nil {
				return err
			}
			return os.Chmod(p, 0o644)
		}
		fallthrough
	case corev1.HostPathFile:
		if !exists || !mode.IsRegular() {
			return fmt.Errorf("hostPath type check failed: %s is not a file", p)
		}
	case corev1.HostPathSocket:
		if !exists || mode&fs.ModeSocket == 0 {
			return fmt.Errorf("hostPath type check failed: %s is not a socket file", p)
		}
	case corev1.HostPathCharDev:
		if !exists || mode&fs.ModeCharDevice == 0 {
			return fmt.Errorf("hostPath type check failed: %s is not a character device", p)
		}
	case corev1.HostPathBlockDev:
		if !exists || mode&fs.ModeDevice == 0 || mode&fs.ModeCharDevice != 0 {
			return fmt.Errorf("hostPath type check failed: %s is not a block device", p)
		}
	default:
		return fmt.Errorf("%s is an invalid volume type", typ)
	}
	return nil
}
