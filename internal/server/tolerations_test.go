package server

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffhq/skiff/internal/apiserver"
	"github.com/skiffhq/skiff/internal/apiserver/resource"
)

func TestDefaultTolerations(t *testing.T) {
	t.Parallel()
	notReady := corev1.Toleration{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}
	cases := []struct {
		name string
		op   apiserver.Operation
		sub  string
		tols []corev1.Toleration
		// want maps each not-ready/unreachable key to the seconds its
		// NoExecute toleration ends with (-1: unbounded, absent: none).
		want map[string]int64
	}{
		{"bare pod gets both", apiserver.Create, "", nil,
			map[string]int64{corev1.TaintNodeNotReady: 7, corev1.TaintNodeUnreachable: 9}},
		{"own not-ready toleration kept", apiserver.Create, "", []corev1.Toleration{notReady},
			map[string]int64{corev1.TaintNodeNotReady: -1, corev1.TaintNodeUnreachable: 9}},
		{"wildcard covers both", apiserver.Create, "", []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			map[string]int64{}},
		{"NoSchedule toleration does not count", apiserver.Create, "",
			[]corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			map[string]int64{corev1.TaintNodeNotReady: 7, corev1.TaintNodeUnreachable: 9}},
		{"updates untouched", apiserver.Update, "", nil, map[string]int64{}},
		{"status untouched", apiserver.Create, "status", nil, map[string]int64{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			pod := &corev1.Pod{Spec: corev1.PodSpec{Tolerations: append([]corev1.Toleration(nil), c.tols...)}}
			d := &defaultTolerations{notReady: 7, unreachable: 9}
			if err := d.Admit(context.Background(), &apiserver.Attributes{Operation: c.op, Subresource: c.sub, Resource: resource.Pods(), Object: pod}); err != nil {
				t.Fatal(err)
			}
			got := map[string]int64{}
			for _, tol := range pod.Spec.Tolerations {
				if tol.Effect != corev1.TaintEffectNoExecute || tol.Key == "" {
					continue
				}
				got[tol.Key] = -1
				if tol.TolerationSeconds != nil {
					got[tol.Key] = *tol.TolerationSeconds
				}
			}
			if len(got) != len(c.want) {
				t.Fatalf("NoExecute tolerations = %v, want %v", got, c.want)
			}
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("%s: %d s, want %d", k, got[k], v)
				}
			}
		})
	}
}
