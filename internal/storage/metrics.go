package storage

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics records storage latencies and watcher counts. One Metrics is
// shared by every resource's store; a nil *Metrics records nothing.
type Metrics struct {
	latency    *prometheus.HistogramVec
	watchers   *prometheus.GaugeVec
	terminated *prometheus.CounterVec
}

// NewMetrics creates the storage metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "skiff_storage_request_duration_seconds",
			Help:    "Latency of storage operations by operation and resource.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"operation", "resource"}),
		watchers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "skiff_storage_watchers",
			Help: "Open watches by resource (watch cache watchers and direct etcd watches).",
		}, []string{"resource"}),
		terminated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_storage_watchers_terminated_total",
			Help: "Watchers closed by the watch cache because they fell behind.",
		}, []string{"resource"}),
	}
	if err := register(reg, &m.latency); err != nil {
		return nil, err
	}
	if err := register(reg, &m.watchers); err != nil {
		return nil, err
	}
	if err := register(reg, &m.terminated); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers *c, or, if an equal collector is already registered
// (a second server in one test process), switches *c to that one so both
// record into the same series.
func register[C prometheus.Collector](reg prometheus.Registerer, c *C) error {
	err := reg.Register(*c)
	if err == nil {
		return nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			*c = existing
			return nil
		}
	}
	return fmt.Errorf("register storage metrics: %w", err)
}

func (m *Metrics) observe(op, resource string, start time.Time) {
	if m == nil {
		return
	}
	m.latency.WithLabelValues(op, resource).Observe(time.Since(start).Seconds())
}

func (m *Metrics) watcherAdded(resource string, delta float64) {
	if m == nil {
		return
	}
	m.watchers.WithLabelValues(resource).Add(delta)
}

func (m *Metrics) watcherTerminated(resource string) {
	if m == nil {
		return
	}
	m.terminated.WithLabelValues(resource).Inc()
}
