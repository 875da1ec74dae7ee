package apiserver

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the API server's Prometheus series, named as upstream's so
// dashboards carry over.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	watchers *prometheus.GaugeVec
}

// NewMetrics registers the API server's series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiserver_request_total",
			Help: "Requests served, by verb, group, version, resource, subresource and HTTP code.",
		}, []string{"verb", "group", "version", "resource", "subresource", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "apiserver_request_duration_seconds",
			Help:    "Request latency, by verb, group, version, resource and subresource (watches excluded).",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"verb", "group", "version", "resource", "subresource"}),
		watchers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "apiserver_longrunning_requests",
			Help: "Open watches, by group, version and resource.",
		}, []string{"verb", "group", "version", "resource"}),
	}
	reg.MustRegister(m.requests, m.latency, m.watchers)
	return m
}

func (m *Metrics) observe(info *requestInfo, code int, start time.Time) {
	if m == nil {
		return
	}
	gvr := info.res.Resource()
	m.requests.WithLabelValues(info.verb, gvr.Group, gvr.Version, gvr.Resource, info.subresource, strconv.Itoa(code)).Inc()
	if info.verb != "watch" {
		m.latency.WithLabelValues(info.verb, gvr.Group, gvr.Version, gvr.Resource, info.subresource).Observe(time.Since(start).Seconds())
	}
}

func (m *Metrics) watchStarted(info *requestInfo) func() {
	if m == nil {
		return func() {}
	}
	gvr := info.res.Resource()
	g := m.watchers.WithLabelValues("WATCH", gvr.Group, gvr.Version, gvr.Resource)
	g.Inc()
	return g.Dec
}
