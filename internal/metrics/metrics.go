// Package metrics exposes Prometheus metrics on the admin listener. It uses
// its own registry (never the global one) and never puts identities,
// credentials or paths in labels: only route names, decisions and status.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
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

	// series caches the counter and histogram of each (route, decision,
	// status) seen, so that Observe looks up no labels and formats no status
	// code once a series exists. It holds no more than the vectors do: config
	// routes × decisions × status codes. The vectors are never Reset nor have
	// series deleted, which would leave cached ones counting unexported.
	mu     sync.RWMutex
	series map[seriesKey]series

	reloads    *prometheus.CounterVec
	lastReload prometheus.Gauge
}

type seriesKey struct {
	route, decision string
	status          int
}

type series struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// New builds the metrics and a registry with Go and process collectors.
// pools returns the pools of the config in force, read at scrape time for
// the upstream health gauges (a reload changes them); nil: none.
func New(pools func() []*upstream.Pool) *Metrics {
	if pools == nil {
		pools = func() []*upstream.Pool { return nil }
	}
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg:    reg,
		series: make(map[seriesKey]series),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_requests_total",
			Help: "Requests by route, gateway decision and status code.",
		}, []string{"route", "decision", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sekisho_request_duration_seconds",
			Help:    "Time to the end of the response, by route (streams count their whole life).",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 30, 120, 600},
		}, []string{"route"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sekisho_config_reloads_total",
			Help: "Config reloads by result: \"applied\", or \"refused\" (the config in force was kept).",
		}, []string{"result"}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sekisho_config_last_reload_success_timestamp_seconds",
			Help: "When the config in force was applied (start or last applied reload), as a Unix time.",
		}),
	}
	m.reloads.WithLabelValues("applied")
	m.reloads.WithLabelValues("refused")
	m.lastReload.SetToCurrentTime()
	reg.MustRegister(m.requests, m.duration, m.reloads, m.lastReload, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	labels := []string{"pool", "target"}
	reg.MustRegister(&poolCollector{pools: pools,
		available: prometheus.NewDesc("sekisho_upstream_healthy",
			"1 when the upstream target takes traffic, 0 when it is unhealthy (active checks) or ejected (passive).", labels, nil),
		ejected: prometheus.NewDesc("sekisho_upstream_ejected",
			"1 while the upstream target is passively ejected after failures, 0 otherwise.", labels, nil),
		inflight: prometheus.NewDesc("sekisho_upstream_inflight", "Requests in flight to the target, streams included.", labels, nil)})
	return m
}

// Observe records one finished request. A request for no route (sekisho's
// own pages) is counted under route "(gateway)".
func (m *Metrics) Observe(route, decision string, status int, elapsed time.Duration) {
	if route == "" {
		route = "(gateway)"
	}
	s := m.seriesFor(seriesKey{route, decision, status})
	s.requests.Inc()
	s.duration.Observe(elapsed.Seconds())
}

// seriesFor returns the cached series for k, making it on first use.
func (m *Metrics) seriesFor(k seriesKey) series {
	m.mu.RLock()
	s, ok := m.series[k]
	m.mu.RUnlock()
	if ok {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.series[k]; ok {
		return s
	}
	s = series{
		requests: m.requests.WithLabelValues(k.route, k.decision, strconv.Itoa(k.status)),
		duration: m.duration.WithLabelValues(k.route),
	}
	m.series[k] = s
	return s
}

// Reloaded records a config reload: applied, or refused with the config in
// force kept.
func (m *Metrics) Reloaded(applied bool) {
	if !applied {
		m.reloads.WithLabelValues("refused").Inc()
		return
	}
	m.reloads.WithLabelValues("applied").Inc()
	m.lastReload.SetToCurrentTime()
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	return mux
}

// AuditStats is the audit writer's state, read at scrape time.
type AuditStats struct {
	PendingLines, PendingBytes int
	Dropped, WriteErrors       uint64
	Failing                    bool
}

// AddAudit exports the audit log's health: sekisho_audit_failing (1 while
// lines wait because the output cannot be written; /.sekisho/healthz then
// answers 503), sekisho_audit_pending_lines and _pending_bytes,
// sekisho_audit_write_errors_total and sekisho_audit_dropped_lines_total
// (lines lost: dropped under audit.on_failure drop_and_count, or unwritten
// at shutdown). Call it once, before serving.
func (m *Metrics) AddAudit(read func() AuditStats) {
	m.reg.MustRegister(&auditCollector{read: read,
		failing: prometheus.NewDesc("sekisho_audit_failing", "1 while audit lines wait because the audit output cannot be written.", nil, nil),
		lines:   prometheus.NewDesc("sekisho_audit_pending_lines", "Audit lines logged but not yet written.", nil, nil),
		bytes:   prometheus.NewDesc("sekisho_audit_pending_bytes", "Bytes of audit lines logged but not yet written.", nil, nil),
		errors:  prometheus.NewDesc("sekisho_audit_write_errors_total", "Failed writes of the audit output (each retry counts).", nil, nil),
		dropped: prometheus.NewDesc("sekisho_audit_dropped_lines_total", "Audit lines lost: dropped with on_failure drop_and_count, or unwritten at shutdown.", nil, nil),
	})
}

type auditCollector struct {
	read                                   func() AuditStats
	failing, lines, bytes, errors, dropped *prometheus.Desc
}

func (c *auditCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.failing, c.lines, c.bytes, c.errors, c.dropped} {
		ch <- d
	}
}

func (c *auditCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.read()
	ch <- prometheus.MustNewConstMetric(c.failing, prometheus.GaugeValue, gauge(st.Failing))
	ch <- prometheus.MustNewConstMetric(c.lines, prometheus.GaugeValue, float64(st.PendingLines))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(st.PendingBytes))
	ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(st.WriteErrors))
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(st.Dropped))
}

// Probe is a named yes/no state read at scrape time (an OIDC provider's
// reachability).
type Probe struct {
	Name string
	Up   func() bool
}

// AddOIDCProviders exports sekisho_oidc_provider_up{provider}: 1 while the
// provider is taken to be reachable, 0 while new sign-ins with it get the
// "unreachable" page. providers returns the probes of the config in force,
// read at scrape time. Call it once, before serving.
func (m *Metrics) AddOIDCProviders(providers func() []Probe) {
	m.reg.MustRegister(&probeCollector{probes: providers,
		desc: prometheus.NewDesc("sekisho_oidc_provider_up",
			"1 while the OIDC provider answers, 0 while it is unreachable (new sign-ins with it get the unreachable page).", []string{"provider"}, nil)})
}

type probeCollector struct {
	probes func() []Probe
	desc   *prometheus.Desc
}

func (c *probeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *probeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.probes() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, gauge(p.Up()), p.Name)
	}
}

// poolCollector reads the pools' target status at scrape time.
// sekisho_upstream_healthy is TargetStatus.Available: whether the target
// takes traffic, so a target that passes its active checks but is
// passively ejected reads 0, with sekisho_upstream_ejected 1.
type poolCollector struct {
	pools                        func() []*upstream.Pool
	available, ejected, inflight *prometheus.Desc
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.available
	ch <- c.ejected
	ch <- c.inflight
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.pools() {
		for _, t := range p.Status() {
			ch <- prometheus.MustNewConstMetric(c.available, prometheus.GaugeValue, gauge(t.Available), p.Name(), t.URL)
			ch <- prometheus.MustNewConstMetric(c.ejected, prometheus.GaugeValue, gauge(!t.EjectedUntil.IsZero()), p.Name(), t.URL)
			ch <- prometheus.MustNewConstMetric(c.inflight, prometheus.GaugeValue, float64(t.Inflight), p.Name(), t.URL)
		}
	}
}

func gauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
