// Package volume makes a pod's volumes ready on the node before its
// containers start, keeps API-backed volumes (configMap, secret,
// downwardAPI, projected) in step with the objects they come from, and
// removes everything again when the pod is gone.
//
// The kubelet calls Setup on every pod sync: it is idempotent and, when
// nothing changed, only reads what is already on disk. Files that come from
// the API are published the way upstream's kubelet does, behind a "..data"
// symlink that is swapped in one rename, so a container never sees half an
// update.
package volume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Kind directories under <pod dir>/volumes. Each kind gets its own directory
// so that two volumes of different kinds never collide and Teardown can tell
// from the path what it is looking at.
const (
	kindEmptyDir    = "empty-dir"
	kindConfigMap   = "configmap"
	kindSecret      = "secret"
	kindDownwardAPI = "downward-api"
	kindProjected   = "projected"
)

// Config is what the Manager needs from the kubelet.
type Config struct {
	// RootDir holds one directory per pod, <RootDir>/<podUID>, with the
	// volumes under <RootDir>/<podUID>/volumes/<kind>/<name>.
	RootDir string
	// ConfigMaps and Secrets return the object, or an error for which
	// apierrors.IsNotFound is true when it does not exist. They are called
	// on every sync, so they should be cheap (informer listers).
	ConfigMaps func(namespace, name string) (*corev1.ConfigMap, error)
	Secrets    func(namespace, name string) (*corev1.Secret, error)
	// NodeAllocatable stands in for a container's missing cpu, memory or
	// ephemeral-storage limit in downwardAPI resourceFieldRefs, and sizes
	// memory-backed emptyDirs without a sizeLimit. Optional.
	NodeAllocatable func() corev1.ResourceList
	Logger          *slog.Logger
}

// Manager sets up and tears down pod volumes under Config.RootDir. Its
// methods may be called concurrently for different pods; calls for one pod
// must not overlap (the kubelet's per-pod worker serialises them).
type Manager struct {
	root            string
	configMaps      func(namespace, name string) (*corev1.ConfigMap, error)
	secrets         func(namespace, name string) (*corev1.Secret, error)
	nodeAllocatable func() corev1.ResourceList
	log             *slog.Logger
}

// New checks cfg and creates RootDir.
func New(cfg Config) (*Manager, error) {
	if cfg.RootDir == "" {
		return nil, errors.New("volume: RootDir is required")
	}
	if cfg.ConfigMaps == nil || cfg.Secrets == nil {
		return nil, errors.New("volume: ConfigMaps and Secrets getters are required")
	}
	root, err := filepath.Abs(cfg.RootDir)
	if err != nil {
		return nil, fmt.Errorf("volume: root dir: %w", err)
	}
	if err := os.MkdirAll(root, 0o750); err != nil {
		return nil, fmt.Errorf("volume: create root dir: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NodeAllocatable == nil {
		cfg.NodeAllocatable = func() corev1.ResourceList { return nil }
	}
	return &Manager{
		root:            root,
		configMaps:      cfg.ConfigMaps,
		secrets:         cfg.Secrets,
		nodeAllocatable: cfg.NodeAllocatable,
		log:             cfg.Logger,
	}, nil
}

// PodDir is the pod's directory under RootDir. The kubelet may keep its own
// per-pod files there; Teardown removes them along with the volumes.
func (m *Manager) PodDir(podUID types.UID) string {
	return filepath.Join(m.root, string(podUID))
}

func (m *Manager) volumeDir(podUID types.UID, kind, name string) string {
	return filepath.Join(m.PodDir(podUID), "volumes", kind, name)
}

// Setup makes every volume of pod ready and returns each volume's name
// mapped to the host path to bind into containers. It reports every failing
// volume, not just the first, so one event tells the user all that is wrong.
func (m *Manager) Setup(ctx context.Context, pod *corev1.Pod) (map[string]string, error) {
	if err := checkUID(pod.UID); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(m.PodDir(pod.UID), 0o750); err != nil {
		return nil, fmt.Errorf("create pod dir: %w", err)
	}
	paths := make(map[string]string, len(pod.Spec.Volumes))
	var errs []error
	for i := range pod.Spec.Volumes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		v := &pod.Spec.Volumes[i]
		p, err := m.setupVolume(pod, v)
		if err != nil {
			errs = append(errs, fmt.Errorf("volume %q: %w", v.Name, err))
			continue
		}
		paths[v.Name] = p
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return paths, nil
}

func (m *Manager) setupVolume(pod *corev1.Pod, v *corev1.Volume) (string, error) {
	src := &v.VolumeSource
	switch {
	case src.HostPath != nil:
		return setupHostPath(src.HostPath)
	case src.EmptyDir != nil:
		dir := m.volumeDir(pod.UID, kindEmptyDir, v.Name)
		return dir, m.setupEmptyDir(dir, src.EmptyDir)
	case src.ConfigMap != nil:
		dir := m.volumeDir(pod.UID, kindConfigMap, v.Name)
		payload, err := m.configMapVolume(pod.Namespace, src.ConfigMap)
		if err != nil {
			return "", err
		}
		return dir, m.publish(pod, v.Name, dir, false, payload)
	case src.Secret != nil:
		dir := m.volumeDir(pod.UID, kindSecret, v.Name)
		payload, err := m.secretVolume(pod.Namespace, src.Secret)
		if err != nil {
			return "", err
		}
		return dir, m.publish(pod, v.Name, dir, true, payload)
	case src.DownwardAPI != nil:
		dir := m.volumeDir(pod.UID, kindDownwardAPI, v.Name)
		payload, err := m.downwardAPIVolume(pod, src.DownwardAPI.Items, modeOr(src.DownwardAPI.DefaultMode))
		if err != nil {
			return "", err
		}
		return dir, m.publish(pod, v.Name, dir, false, payload)
	case src.Projected != nil:
		dir := m.volumeDir(pod.UID, kindProjected, v.Name)
		payload, err := m.projectedVolume(pod, src.Projected)
		if err != nil {
			return "", err
		}
		return dir, m.publish(pod, v.Name, dir, true, payload)
	default:
		return "", errors.New("volume type not supported by skiff (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected)")
	}
}

// publish writes payload into dir. Secret-bearing volumes live on a tmpfs,
// as upstream keeps them, so secret values never reach the node's disk.
func (m *Manager) publish(pod *corev1.Pod, name, dir string, inMemory bool, payload map[string]file) error {
	if inMemory {
		if err := ensureTmpfs(dir, ""); err != nil {
			return err
		}
	} else if err := ensureDir(dir); err != nil {
		return err
	}
	changed, err := writeAtomic(dir, payload)
	if err != nil {
		return err
	}
	if changed {
		m.log.Info("volume content updated", "pod", pod.Namespace+"/"+pod.Name, "podUID", string(pod.UID), "volume", name, "files", len(payload))
	}
	return nil
}

// ensureDir creates a world-writable volume directory, as upstream's
// emptyDir does, so containers running as any user can use it.
func ensureDir(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil && fi.IsDir() && fi.Mode().Perm() == 0o777 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create volume dir: %w", err)
	}
	// Chmod after MkdirAll because the umask would strip group/other bits.
	if err := os.Chmod(dir, 0o777); err != nil {
		return fmt.Errorf("chmod volume dir: %w", err)
	}
	return nil
}

func modeOr(mode *int32) int32 {
	if mode == nil {
		return corev1.ConfigMapVolumeSourceDefaultMode
	}
	return *mode
}
