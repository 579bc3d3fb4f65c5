// Package metrics exposes Prometheus metrics on the admin listener. It uses
// its own registry (never the global one) and never puts identities,
// credentials or paths in labels: only route names, decisions and status.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sekisho/sekisho/internal/upstream"
)

// Metrics records request outcomes and upstream health.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// New builds the metrics and a registry with Go and process collectors.
// pools feed the upstream health gauges, read at scrape time.
func New(pools []*upstream.Pool) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_requests_total",
			Help: "Requests by route, gateway decision and status code.",
		}, []string{"route", "decision", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sekisho_request_duration_seconds",
			Help:    "Time to the end of the response, by route (streams count their whole life).",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 30, 120, 600},
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.duration, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(&poolCollector{pools: pools, desc: prometheus.NewDesc("sekisho_upstream_healthy",
		"1 when the upstream target takes traffic, 0 when it is unhealthy or ejected.", []string{"pool", "target"}, nil),
		inflight: prometheus.NewDesc("sekisho_upstream_inflight", "Requests in flight to the target, streams included.", []string{"pool", "target"}, nil)})
	return m
}

// Observe records one finished request.
func (m *Metrics) Observe(route, decision string, status int, elapsed time.Duration) {
	if route == "" {
		route = "(gateway)"
	}
	m.requests.WithLabelValues(route, decision, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(elapsed.Seconds())
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return mux
}

type poolCollector struct {
	pools          []*upstream.Pool
	desc, inflight *prometheus.Desc
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc; ch <- c.inflight }

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.pools {
		for _, t := range p.Status() {
			v := 0.0
			if t.Healthy {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, p.Name(), t.URL)
			ch <- prometheus.MustNewConstMetric(c.inflight, prometheus.GaugeValue, float64(t.Inflight), p.Name(), t.URL)
		}
	}
}
