package volume

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// source is one configMap or secret flattened to what a volume needs.
type source struct {
	kind     string // "configmap" or "secret", for messages
	name     string
	data     map[string][]byte
	optional bool
}

func (m *Manager) configMapSource(namespace, name string, optional *bool) (*source, error) {
	s := &source{kind: "configmap", name: name, optional: optional != nil && *optional}
	cm, err := m.configMaps(namespace, name)
	if err != nil {
		if apierrors.IsNotFound(err) && s.optional {
			return nil, nil
		}
		return nil, fmt.Errorf("configmap %s/%s: %w", namespace, name, err)
	}
	s.data = make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		s.data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		s.data[k] = v
	}
	return s, nil
}

func (m *Manager) secretSource(namespace, name string, optional *bool) (*source, error) {
	s := &source{kind: "secret", name: name, optional: optional != nil && *optional}
	sec, err := m.secrets(namespace, name)
	if err != nil {
		if apierrors.IsNotFound(err) && s.optional {
			return nil, nil
		}
		return nil, fmt.Errorf("secret %s/%s: %w", namespace, name, err)
	}
	s.data = sec.Data
	return s, nil
}

// project adds s's keys to out: all of them under their own names, or only
// items, each at its path. A missing key is an error unless the source is
// optional, as upstream has it.
func (s *source) project(out map[string]file, items []corev1.KeyToPath, defaultMode int32) error {
	if s == nil {
		return nil // optional and absent: contributes nothing
	}
	if len(items) == 0 {
		for k, v := range s.data {
			out[k] = file{data: v, mode: defaultMode}
		}
		return nil
	}
	for _, it := range items {
		v, ok := s.data[it.Key]
		if !ok {
			if s.optional {
				continue
			}
			if s.kind == "secret" {
				return fmt.Errorf("secret %q references non-existent secret key: %s", s.name, it.Key)
			}
			return fmt.Errorf("configmap %q references non-existent config key: %s", s.name, it.Key)
		}
		mode := defaultMode
		if it.Mode != nil {
			mode = *it.Mode
		}
		out[it.Path] = file{data: v, mode: mode}
	}
	return nil
}

func (m *Manager) configMapVolume(namespace string, src *corev1.ConfigMapVolumeSource) (map[string]file, error) {
	s, err := m.configMapSource(namespace, src.Name, src.Optional)
	if err != nil {
		return nil, err
	}
	out := map[string]file{}
	return out, s.project(out, src.Items, modeOr(src.DefaultMode))
}

func (m *Manager) secretVolume(namespace string, src *corev1.SecretVolumeSource) (map[string]file, error) {
	s, err := m.secretSource(namespace, src.SecretName, src.Optional)
	if err != nil {
		return nil, err
	}
	out := map[string]file{}
	return out, s.project(out, src.Items, modeOr(src.DefaultMode))
}

// projectedVolume merges its sources into one payload. Token-like sources
// need a token or certificate issuer skiff's API server does not have, so
// they fail loudly rather than leave an empty file the app would misread.
func (m *Manager) projectedVolume(pod *corev1.Pod, src *corev1.ProjectedVolumeSource) (map[string]file, error) {
	defaultMode := modeOr(src.DefaultMode)
	out := map[string]file{}
	for i := range src.Sources {
		ps := &src.Sources[i]
		switch {
		case ps.ConfigMap != nil:
			s, err := m.configMapSource(pod.Namespace, ps.ConfigMap.Name, ps.ConfigMap.Optional)
			if err != nil {
				return nil, err
			}
			if err := s.project(out, ps.ConfigMap.Items, defaultMode); err != nil {
				return nil, err
			}
		case ps.Secret != nil:
			s, err := m.secretSource(pod.Namespace, ps.Secret.Name, ps.Secret.Optional)
			if err != nil {
				return nil, err
			}
			if err := s.project(out, ps.Secret.Items, defaultMode); err != nil {
				return nil, err
			}
		case ps.DownwardAPI != nil:
			files, err := m.downwardAPIVolume(pod, ps.DownwardAPI.Items, defaultMode)
			if err != nil {
				return nil, err
			}
			for p, f := range files {
				out[p] = f
			}
		case ps.ServiceAccountToken != nil:
			return nil, errors.New("projected serviceAccountToken sources are not supported by skiff")
		case ps.ClusterTrustBundle != nil:
			return nil, errors.New("projected clusterTrustBundle sources are not supported by skiff")
		case ps.PodCertificate != nil:
			return nil, errors.New("projected podCertificate sources are not supported by skiff")
		default:
			return nil, fmt.Errorf("projected source %d names no source", i)
		}
	}
	return out, nil
}
