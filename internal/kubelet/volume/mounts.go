package volume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ContainerMounts turns c's volumeMounts into CRI mounts. volumes is what
// Setup returned; env is c's resolved environment, for subPathExpr.
//
// configMap, secret, downwardAPI and projected volumes are always mounted
// read-only, as upstream does since containers writing into them could
// otherwise corrupt what the kubelet publishes. A subPath is resolved
// inside the volume (symlinks included) and created if missing; one that
// leads outside the volume is refused, since a container can plant symlinks
// in a writable volume to reach the host.
func ContainerMounts(pod *corev1.Pod, c *corev1.Container, volumes, env map[string]string) ([]*runtimeapi.Mount, error) {
	apiData := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		s := v.VolumeSource
		apiData[v.Name] = s.ConfigMap != nil || s.Secret != nil || s.DownwardAPI != nil || s.Projected != nil
	}
	privileged := c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged
	mounts := make([]*runtimeapi.Mount, 0, len(c.VolumeMounts))
	for i := range c.VolumeMounts {
		vm := &c.VolumeMounts[i]
		host, ok := volumes[vm.Name]
		if !ok {
			return nil, fmt.Errorf("cannot find volume %q to mount into container %q", vm.Name, c.Name)
		}
		prop, err := propagation(vm.MountPropagation)
		if err != nil {
			return nil, fmt.Errorf("volumeMount %q of container %q: %w", vm.Name, c.Name, err)
		}
		if prop == runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL && !privileged {
			return nil, fmt.Errorf("volumeMount %q of container %q: Bidirectional mount propagation is available only to privileged containers", vm.Name, c.Name)
		}
		if vm.RecursiveReadOnly != nil && *vm.RecursiveReadOnly == corev1.RecursiveReadOnlyEnabled {
			// containerd 1.6 cannot make submounts read-only; IfPossible
			// degrades to a plain read-only mount below.
			return nil, fmt.Errorf("volumeMount %q of container %q: recursiveReadOnly Enabled is not supported by the container runtime", vm.Name, c.Name)
		}
		subPath := vm.SubPath
		if vm.SubPathExpr != "" {
			if subPath, err = expandSubPathExpr(vm.SubPathExpr, env); err != nil {
				return nil, fmt.Errorf("volumeMount %q of container %q: subPathExpr: %w", vm.Name, c.Name, err)
			}
		}
		if subPath != "" {
			if host, err = prepareSubPath(host, subPath); err != nil {
				return nil, fmt.Errorf("volumeMount %q of container %q: %w", vm.Name, c.Name, err)
			}
		}
		mounts = append(mounts, &runtimeapi.Mount{
			ContainerPath:  vm.MountPath,
			HostPath:       host,
			Readonly:       vm.ReadOnly || apiData[vm.Name],
			SelinuxRelabel: false,
			Propagation:    prop,
		})
	}
	return mounts, nil
}

func propagation(mode *corev1.MountPropagationMode) (runtimeapi.MountPropagation, error) {
	if mode == nil {
		return runtimeapi.MountPropagation_PROPAGATION_PRIVATE, nil
	}
	switch *mode {
	case corev1.MountPropagationNone:
		return runtimeapi.MountPropagation_PROPAGATION_PRIVATE, nil
	case corev1.MountPropagationHostToContainer:
		return runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER, nil
	case corev1.MountPropagationBidirectional:
		return runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL, nil
	}
	return 0, fmt.Errorf("invalid MountPropagation mode: %q", *mode)
}

// expandSubPathExpr expands $(VAR) from env; $$ is a literal $. As
// upstream, a variable that is unset or empty is an error, since silently
// collapsing the path would put containers' data in the same place.
func expandSubPathExpr(expr string, env map[string]string) (string, error) {
	var b strings.Builder
	missing := map[string]bool{}
	for i := 0; i < len(expr); i++ {
		if expr[i] != '$' || i+1 == len(expr) {
			b.WriteByte(expr[i])
			continue
		}
		switch expr[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(expr[i+2:], ')')
			if end < 0 {
				b.WriteString(expr[i:])
				i = len(expr)
				continue
			}
			name := expr[i+2 : i+2+end]
			if v := env[name]; v != "" {
				b.WriteString(v)
			} else {
				missing[name] = true
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	if len(missing) > 0 {
		names := make([]string, 0, len(missing))
		for n := range missing {
			names = append(names, n)
		}
		sort.Strings(names)
		return "", fmt.Errorf("missing value for %s", strings.Join(names, ", "))
	}
	return b.String(), nil
}

// noBacksteps rejects any ".." element.
func noBacksteps(p string) error {
	for _, part := range strings.Split(filepath.ToSlash(p), "/") {
		if part == ".." {
			return errors.New("must not contain '..'")
		}
	}
	return nil
}

// prepareSubPath returns the real path of subPath inside volume, creating
// missing directories with the volume's own mode (as upstream does, so an
// emptyDir's subPath stays writable for every user). Each component is
// resolved as it is reached, so a symlink planted by a container cannot
// steer the walk, or the directories we create, outside the volume.
//
// The check and the runtime's bind mount are not atomic; upstream closes
// that window by bind mounting an fd it holds, which skiff does not (yet).
func prepareSubPath(volume, subPath string) (string, error) {
	if filepath.IsAbs(subPath) {
		return "", fmt.Errorf("error SubPath `%s` must not be an absolute path", subPath)
	}
	if err := noBacksteps(subPath); err != nil {
		return "", fmt.Errorf("unable to provision SubPath `%s`: %w", subPath, err)
	}
	base, err := filepath.EvalSymlinks(volume)
	if err != nil {
		return "", fmt.Errorf("resolve volume path: %w", err)
	}
	fi, err := os.Stat(base)
	if err != nil {
		return "", fmt.Errorf("stat volume path: %w", err)
	}
	perm := fi.Mode().Perm()
	cur := base
	for _, part := range strings.Split(filepath.Clean(subPath), "/") {
		if part == "" || part == "." {
			continue
		}
		next := filepath.Join(cur, part)
		if _, err := os.Lstat(next); errors.Is(err, os.ErrNotExist) {
			if err := os.Mkdir(next, perm); err != nil && !errors.Is(err, os.ErrExist) {
				return "", fmt.Errorf("failed to create subPath directory %s: %w", subPath, err)
			} else if err == nil {
				if err := os.Chmod(next, perm); err != nil {
					return "", fmt.Errorf("chmod subPath directory %s: %w", subPath, err)
				}
			}
		} else if err != nil {
			return "", fmt.Errorf("subPath %s: %w", subPath, err)
		}
		resolved, err := filepath.EvalSymlinks(next)
		if err != nil {
			return "", fmt.Errorf("subPath %s: %w", subPath, err)
		}
		if !within(base, resolved) {
			return "", fmt.Errorf("subpath %q not within volume path %q", resolved, base)
		}
		cur = resolved
	}
	return cur, nil
}

func within(base, p string) bool {
	return base == "/" || p == base || strings.HasPrefix(p, base+"/")
}
