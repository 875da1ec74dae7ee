package storage

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	// A second server in the same process shares the series.
	m2, err := NewMetrics(reg)
	if err != nil {
		t.Fatalf("second NewMetrics: %v", err)
	}
	client := startEtcd(t)
	newPod := func() runtime.Object { return &corev1.Pod{} }
	s := NewEtcd(client, newPod, Options{Resource: "pods", Metrics: m, Logger: quiet})
	s2 := NewEtcd(client, newPod, Options{Resource: "pods", Metrics: m2, Logger: quiet})
	mustCreate(t, s, makePod("ns", "a").obj())
	mustCreate(t, s2, makePod("ns", "b").obj())
	c := newPodCacher(t, s, func(cfg *CacherConfig) { cfg.Metrics = m })

	w, err := c.Watch(context.Background(), podPrefix, WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		got  func() float64
		want float64
	}{
		{name: "both creates timed in one series", got: func() float64 {
			return gathered(t, reg, "skiff_storage_request_duration_seconds", "create")
		}, want: 2},
		{name: "cacher's initial list timed", got: func() float64 {
			return gathered(t, reg, "skiff_storage_request_duration_seconds", "list")
		}, want: 1},
		// The cacher's own etcd watch plus one client watch.
		{name: "watchers counted", got: func() float64 { return gathered(t, reg, "skiff_storage_watchers", "") }, want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.got(); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	w.Stop()
	expectClosed(t, w)
	if got := gathered(t, reg, "skiff_storage_watchers", ""); got != 1 {
		t.Errorf("watchers after Stop = %v, want 1", got)
	}
}

// gathered returns the value (gauge) or sample count (histogram) of the
// pods series of metric name, for operation op if given.
func gathered(t *testing.T, reg *prometheus.Registry, name, op string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if (l.GetName() == "operation" && l.GetValue() != op) || (l.GetName() == "resource" && l.GetValue() != "pods") {
					continue metrics
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
