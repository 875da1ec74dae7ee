package server

import (
	"context"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/internal/apiserver"
)

// DefaultTolerationSeconds is how long, by default, a pod stays bound to a
// not-ready or unreachable node before it is evicted. Upstream gives 300 s;
// with the 20 s node-monitor grace period and 5 s checks, 25 s more puts
// the eviction of a dead node's pods under 50 s, leaving time to start the
// replacements within a minute (docs/node-failure.md).
const DefaultTolerationSeconds int64 = 25

// defaultTolerations gives new pods that say nothing about node failure a
// bounded toleration of the not-ready and unreachable NoExecute taints, as
// upstream's DefaultTolerationSeconds admission plugin does: without it
// they would be evicted the moment a node blinked, and with an unbounded
// one never. It is admission, not the kind's defaulting, because the
// durations are the operator's choice (server flags).
type defaultTolerations struct {
	notReady, unreachable int64
}

var _ apiserver.Admitter = (*defaultTolerations)(nil)

func (d *defaultTolerations) Admit(_ context.Context, a *apiserver.Attributes) error {
	pod, ok := a.Object.(*corev1.Pod)
	if !ok || a.Operation != apiserver.Create || a.Subresource != "" {
		return nil
	}
	for _, t := range []struct {
		key     string
		seconds int64
	}{{corev1.TaintNodeNotReady, d.notReady}, {corev1.TaintNodeUnreachable, d.unreachable}} {
		if !toleratesNoExecute(pod.Spec.Tolerations, t.key) {
			secs := t.seconds
			pod.Spec.Tolerations = append(pod.Spec.Tolerations, corev1.Toleration{
				Key: t.key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs,
			})
		}
	}
	return nil
}

// toleratesNoExecute reports whether some toleration already speaks for
// the key's NoExecute taint (naming it, or every key, with that effect or
// every effect); the pod's own choice wins over ours.
func toleratesNoExecute(tols []corev1.Toleration, key string) bool {
	for _, t := range tols {
		if (t.Key == key || t.Key == "") && (t.Effect == corev1.TaintEffectNoExecute || t.Effect == "") {
			return true
		}
	}
	return false
}
