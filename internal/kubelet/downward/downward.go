// Package downward reads the pod metadata the downward API exposes, the
// same way for environment variables and for downwardAPI volumes.
package downward

import (
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Field returns the pod metadata a fieldRef path names — metadata.name,
// .namespace, .uid, .labels, .annotations, or one label or annotation as
// metadata.labels['key'] — and whether path is one of those. Callers that
// expose more (environment variables also take spec.nodeName,
// status.podIP, …) look at path themselves when ok is false.
func Field(pod *corev1.Pod, path string) (value string, ok bool) {
	if base, key, sub := subscript(path); sub {
		switch base {
		case "metadata.labels":
			return pod.Labels[key], true
		case "metadata.annotations":
			return pod.Annotations[key], true
		}
		return "", false
	}
	switch path {
	case "metadata.name":
		return pod.Name, true
	case "metadata.namespace":
		return pod.Namespace, true
	case "metadata.uid":
		return string(pod.UID), true
	case "metadata.labels":
		return FormatMap(pod.Labels), true
	case "metadata.annotations":
		return FormatMap(pod.Annotations), true
	}
	return "", false
}

// subscript splits "metadata.labels['key']" into its map path and key.
func subscript(path string) (base, key string, ok bool) {
	rest, found := strings.CutSuffix(path, "']")
	if !found {
		return "", "", false
	}
	base, key, found = strings.Cut(rest, "['")
	if !found || base == "" {
		return "", "", false
	}
	return base, key, true
}

// FormatMap renders labels or annotations as upstream does, one
// key="value" line per entry, sorted, values Go-quoted, no trailing
// newline, so that tools written against Kubernetes parse them unchanged.
func FormatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	lines := make([]string, len(keys))
	for i, k := range keys {
		lines[i] = k + "=" + strconv.Quote(m[k])
	}
	return strings.Join(lines, "\n")
}
