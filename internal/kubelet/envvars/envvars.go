// Package envvars computes a container's environment the way the kubelet
// does: service link variables, then envFrom ConfigMaps and Secrets, then
// the container's own env with $(VAR) expansion and downward-API,
// resource, ConfigMap and Secret references resolved to plain values.
package envvars

import (
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Sources is what a container's environment may draw on besides the pod.
type Sources struct {
	// ConfigMap and Secret fetch an object of the pod's namespace. For a
	// missing object they must return an error apierrors.IsNotFound
	// recognises, so optional references can be skipped.
	ConfigMap func(namespace, name string) (*corev1.ConfigMap, error)
	Secret    func(namespace, name string) (*corev1.Secret, error)
	// Services are the services of the pod's namespace and of "default"
	// (for the "kubernetes" service); see ServiceEnv.
	Services []*corev1.Service
	// NodeAllocatable stands in for unset cpu, memory and
	// ephemeral-storage limits in resourceFieldRef, as the container may
	// use up to that much.
	NodeAllocatable corev1.ResourceList
	// HostIP/HostIPs and PodIP/PodIPs answer the status.* field refs; the
	// single form defaults to the first of the list and vice versa.
	HostIP   string
	HostIPs  []string
	PodIP    string
	PodIPs   []string
	NodeName string
}

// Container returns the environment of container c of pod, resolved to
// plain values. Later definitions override earlier ones of the same name
// in this order: service variables, envFrom sources in order, env in
// order; each name appears once, at its first definition's place. A
// missing required ConfigMap, Secret or key is an error, since the
// container must not start without it; optional ones are skipped.
func Container(pod *corev1.Pod, c *corev1.Container, src Sources) ([]corev1.EnvVar, error) {
	links := pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks
	r := resolver{pod: pod, c: c, src: src.normalized(), configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}

	var env orderedEnv
	for _, v := range ServiceEnv(src.Services, pod.Namespace, links) {
		env.set(v.Name, v.Value)
	}
	for i := range c.EnvFrom {
		if err := r.envFrom(&env, &c.EnvFrom[i]); err != nil {
			return nil, err
		}
	}
	for i := range c.Env {
		v := &c.Env[i]
		value, skip, err := r.value(v, &env)
		if err != nil {
			return nil, err
		}
		if !skip {
			env.set(v.Name, value)
		}
	}
	return env.list(), nil
}

func (s Sources) normalized() Sources {
	if len(s.HostIPs) == 0 && s.HostIP != "" {
		s.HostIPs = []string{s.HostIP}
	}
	if s.HostIP == "" && len(s.HostIPs) > 0 {
		s.HostIP = s.HostIPs[0]
	}
	if len(s.PodIPs) == 0 && s.PodIP != "" {
		s.PodIPs = []string{s.PodIP}
	}
	if s.PodIP == "" && len(s.PodIPs) > 0 {
		s.PodIP = s.PodIPs[0]
	}
	return s
}

// resolver resolves one container's references, fetching each ConfigMap
// and Secret at most once so that all keys come from the same version.
type resolver struct {
	pod        *corev1.Pod
	c          *corev1.Container
	src        Sources
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
}

// envFrom adds every key of one envFrom source. Keys that are not valid
// variable names even under the relaxed rules are skipped rather than
// failing the container, as upstream does (it only emits an event).
func (r *resolver) envFrom(env *orderedEnv, from *corev1.EnvFromSource) error {
	var data map[string]string
	switch {
	case from.ConfigMapRef != nil:
		cm, err := r.configMap(from.ConfigMapRef.Name)
		if err != nil {
			if apierrors.IsNotFound(err) && isTrue(from.ConfigMapRef.Optional) {
				return nil
			}
			return err
		}
		data = cm.Data
	case from.SecretRef != nil:
		s, err := r.secret(from.SecretRef.Name)
		if err != nil {
			if apierrors.IsNotFound(err) && isTrue(from.SecretRef.Optional) {
				return nil
			}
			return err
		}
		data = make(map[string]string, len(s.Data))
		for k, v := range s.Data {
			data[k] = string(v)
		}
	default:
		return nil
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	// Sorted so the result does not depend on map order.
	sort.Strings(keys)
	for _, k := range keys {
		name := from.Prefix + k
		if len(validation.IsRelaxedEnvVarName(name)) != 0 {
			continue
		}
		env.set(name, data[k])
	}
	return nil
}

// value resolves one env entry against the variables defined so far.
// skip is set for an optional reference whose object or key is missing:
// such a variable is left undefined rather than set empty.
func (r *resolver) value(v *corev1.EnvVar, env *orderedEnv) (value string, skip bool, err error) {
	if v.Value != "" || v.ValueFrom == nil {
		return expand(v.Value, env.get), false, nil
	}
	from := v.ValueFrom
	switch {
	case from.FieldRef != nil:
		value, err = fieldValue(from.FieldRef, r.pod, r.src)
		return value, false, err
	case from.ResourceFieldRef != nil:
		value, err = resourceValue(from.ResourceFieldRef, r.pod, r.c, r.src.NodeAllocatable)
		return value, false, err
	case from.ConfigMapKeyRef != nil:
		ref := from.ConfigMapKeyRef
		cm, err := r.configMap(ref.Name)
		if err != nil {
			if apierrors.IsNotFound(err) && isTrue(ref.Optional) {
				return "", true, nil
			}
			return "", false, err
		}
		value, ok := cm.Data[ref.Key]
		if !ok {
			if isTrue(ref.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, r.pod.Namespace, ref.Name)
		}
		return value, false, nil
	case from.SecretKeyRef != nil:
		ref := from.SecretKeyRef
		s, err := r.secret(ref.Name)
		if err != nil {
			if apierrors.IsNotFound(err) && isTrue(ref.Optional) {
				return "", true, nil
			}
			return "", false, err
		}
		value, ok := s.Data[ref.Key]
		if !ok {
			if isTrue(ref.Optional) {
				return "", true, nil
			}
			return "", false, fmt.Errorf("couldn't find key %s in Secret %s/%s", ref.Key, r.pod.Namespace, ref.Name)
		}
		return string(value), false, nil
	}
	return "", false, fmt.Errorf("env %s: unsupported valueFrom source", v.Name)
}

func (r *resolver) configMap(name string) (*corev1.ConfigMap, error) {
	if cm, ok := r.configMaps[name]; ok {
		return cm, nil
	}
	if r.src.ConfigMap == nil {
		return nil, fmt.Errorf("couldn't get ConfigMap %s/%s: no ConfigMap source", r.pod.Namespace, name)
	}
	cm, err := r.src.ConfigMap(r.pod.Namespace, name)
	if err == nil && cm == nil {
		err = apierrors.NewNotFound(corev1.Resource("configmaps"), name)
	}
	if err != nil {
		return nil, fmt.Errorf("get ConfigMap %s/%s: %w", r.pod.Namespace, name, err)
	}
	r.configMaps[name] = cm
	return cm, nil
}

func (r *resolver) secret(name string) (*corev1.Secret, error) {
	if s, ok := r.secrets[name]; ok {
		return s, nil
	}
	if r.src.Secret == nil {
		return nil, fmt.Errorf("couldn't get Secret %s/%s: no Secret source", r.pod.Namespace, name)
	}
	s, err := r.src.Secret(r.pod.Namespace, name)
	if err == nil && s == nil {
		err = apierrors.NewNotFound(corev1.Resource("secrets"), name)
	}
	if err != nil {
		return nil, fmt.Errorf("get Secret %s/%s: %w", r.pod.Namespace, name, err)
	}
	r.secrets[name] = s
	return s, nil
}

func isTrue(b *bool) bool { return b != nil && *b }
