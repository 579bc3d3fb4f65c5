package metrics

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/upstream"
)

type observation struct {
	route, decision string
	status          int
	elapsed         time.Duration
}

// observations is a mix of routes, decisions and codes, with the gateway's
// own requests (no route), odd codes and durations past the last bucket.
var observations = []observation{
	{"app", "allow", 200, 3 * time.Millisecond},
	{"app", "allow", 200, 4 * time.Millisecond},
	{"app", "deny", 403, time.Millisecond},
	{"", "gateway", 302, 500 * time.Microsecond},
	{"app", "allow", 502, 2 * time.Second},
	{"other", "login", 302, 40 * time.Millisecond},
	{"app", "allow", 200, 3 * time.Millisecond},
	{"", "gateway", 200, 20 * time.Millisecond},
	{"other", "allow", 999, 700 * time.Second},
	{"other", "allow", 0, 0},
	{"app", "allow", 101, 90 * time.Second},
}

// wantSeries is what the metrics showed for observations before Observe
// cached its series (taken from the WithLabelValues version): names, help,
// labels, buckets and values must stay as they are for dashboards and alerts.
const wantSeries = `# HELP sekisho_request_duration_seconds Time to the end of the response, by route (streams count their whole life).
# TYPE sekisho_request_duration_seconds histogram
sekisho_request_duration_seconds_bucket{route="(gateway)",le="0.001"} 1
sekisho_request_duration_seconds_bucket{route="(gateway)",le="0.005"} 1
sekisho_request_duration_seconds_bucket{route="(gateway)",le="0.01"} 1
sekisho_request_duration_seconds_bucket{route="(gateway)",le="0.05"} 2
sekisho_request_duration_seconds_bucket{route="(gateway)",le="0.1"} 2
sekisho_request_duration_seconds_bucket{route="(gateway)",le="0.5"} 2
sekisho_request_duration_seconds_bucket{route="(gateway)",le="1"} 2
sekisho_request_duration_seconds_bucket{route="(gateway)",le="5"} 2
sekisho_request_duration_seconds_bucket{route="(gateway)",le="30"} 2
sekisho_request_duration_seconds_bucket{route="(gateway)",le="120"} 2
sekisho_request_duration_seconds_bucket{route="(gateway)",le="600"} 2
sekisho_request_duration_seconds_bucket{route="(gateway)",le="+Inf"} 2
sekisho_request_duration_seconds_sum{route="(gateway)"} 0.0205
sekisho_request_duration_seconds_count{route="(gateway)"} 2
sekisho_request_duration_seconds_bucket{route="app",le="0.001"} 1
sekisho_request_duration_seconds_bucket{route="app",le="0.005"} 4
sekisho_request_duration_seconds_bucket{route="app",le="0.01"} 4
sekisho_request_duration_seconds_bucket{route="app",le="0.05"} 4
sekisho_request_duration_seconds_bucket{route="app",le="0.1"} 4
sekisho_request_duration_seconds_bucket{route="app",le="0.5"} 4
sekisho_request_duration_seconds_bucket{route="app",le="1"} 4
sekisho_request_duration_seconds_bucket{route="app",le="5"} 5
sekisho_request_duration_seconds_bucket{route="app",le="30"} 5
sekisho_request_duration_seconds_bucket{route="app",le="120"} 6
sekisho_request_duration_seconds_bucket{route="app",le="600"} 6
sekisho_request_duration_seconds_bucket{route="app",le="+Inf"} 6
sekisho_request_duration_seconds_sum{route="app"} 92.011
sekisho_request_duration_seconds_count{route="app"} 6
sekisho_request_duration_seconds_bucket{route="busy",le="0.001"} 800
sekisho_request_duration_seconds_bucket{route="busy",le="0.005"} 800
sekisho_request_duration_seconds_bucket{route="busy",le="0.01"} 800
sekisho_request_duration_seconds_bucket{route="busy",le="0.05"} 800
sekisho_request_duration_seconds_bucket{route="busy",le="0.1"} 800
sekisho_request_duration_seconds_bucket{route="busy",le="0.5"} 800
sekisho_request_duration_seconds_bucket{route="busy",le="1"} 800
sekisho_request_duration_seconds_bucket{route="busy",le="5"} 800
sekisho_request_duration_seconds_bucket{route="busy",le="30"} 800
sekisho_request_duration_seconds_bucket{route="busy",le="120"} 800
sekisho_request_duration_seconds_bucket{route="busy",le="600"} 800
sekisho_request_duration_seconds_bucket{route="busy",le="+Inf"} 800
sekisho_request_duration_seconds_sum{route="busy"} 0
sekisho_request_duration_seconds_count{route="busy"} 800
sekisho_request_duration_seconds_bucket{route="other",le="0.001"} 1
sekisho_request_duration_seconds_bucket{route="other",le="0.005"} 1
sekisho_request_duration_seconds_bucket{route="other",le="0.01"} 1
sekisho_request_duration_seconds_bucket{route="other",le="0.05"} 2
sekisho_request_duration_seconds_bucket{route="other",le="0.1"} 2
sekisho_request_duration_seconds_bucket{route="other",le="0.5"} 2
sekisho_request_duration_seconds_bucket{route="other",le="1"} 2
sekisho_request_duration_seconds_bucket{route="other",le="5"} 2
sekisho_request_duration_seconds_bucket{route="other",le="30"} 2
sekisho_request_duration_seconds_bucket{route="other",le="120"} 2
sekisho_request_duration_seconds_bucket{route="other",le="600"} 2
sekisho_request_duration_seconds_bucket{route="other",le="+Inf"} 3
sekisho_request_duration_seconds_sum{route="other"} 700.04
sekisho_request_duration_seconds_count{route="other"} 3
# HELP sekisho_requests_total Requests by route, gateway decision and status code.
# TYPE sekisho_requests_total counter
sekisho_requests_total{code="0",decision="allow",route="other"} 1
sekisho_requests_total{code="101",decision="allow",route="app"} 1
sekisho_requests_total{code="200",decision="allow",route="app"} 3
sekisho_requests_total{code="200",decision="allow",route="busy"} 400
sekisho_requests_total{code="200",decision="gateway",route="(gateway)"} 1
sekisho_requests_total{code="302",decision="gateway",route="(gateway)"} 1
sekisho_requests_total{code="302",decision="login",route="other"} 1
sekisho_requests_total{code="304",decision="allow",route="busy"} 400
sekisho_requests_total{code="403",decision="deny",route="app"} 1
sekisho_requests_total{code="502",decision="allow",route="app"} 1
sekisho_requests_total{code="999",decision="allow",route="other"} 1
`

func TestObserveExposesSameSeries(t *testing.T) {
	m := New(nil)
	for _, o := range observations {
		m.Observe(o.route, o.decision, o.status, o.elapsed)
	}
	// Many goroutines making and using the same series at once.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for range 100 {
				m.Observe("busy", "allow", 200+104*(g%2), 0)
			}
		})
	}
	wg.Wait()
	if diff := cmp.Diff(wantSeries, scrape(t, m, "sekisho_request")); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
}

func TestObserveDoesNotAllocate(t *testing.T) {
	m := New(nil)
	for _, o := range observations {
		m.Observe(o.route, o.decision, o.status, o.elapsed)
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, o := range observations {
			m.Observe(o.route, o.decision, o.status, o.elapsed)
		}
	}); n != 0 {
		t.Errorf("Observe of known series allocates %.1f times per %d calls, want 0", n, len(observations))
	}
}

// scrape gets /metrics from the handler and keeps the lines, HELP and TYPE
// included, of the families whose names start with prefix.
func scrape(t *testing.T, m *Metrics, prefix string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	body, err := io.ReadAll(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for line := range strings.Lines(string(body)) {
		name := strings.TrimPrefix(strings.TrimPrefix(line, "# HELP "), "# TYPE ")
		if strings.HasPrefix(name, prefix) {
			out.WriteString(line)
		}
	}
	return out.String()
}

// observeUncached is Observe as it was before the series cache, kept for the
// benchmark.
func observeUncached(m *Metrics, route, decision string, status int, elapsed time.Duration) {
	if route == "" {
		route = "(gateway)"
	}
	m.requests.WithLabelValues(route, decision, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(elapsed.Seconds())
}

// BenchmarkObserve compares the cached Observe with the WithLabelValues
// lookups it replaced, over a mix of series, on one goroutine and on all.
func BenchmarkObserve(b *testing.B) {
	for _, tc := range []struct {
		name    string
		observe func(*Metrics, string, string, int, time.Duration)
	}{{"WithLabelValues", observeUncached}, {"cached", (*Metrics).Observe}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			m := New(nil)
			i := 0
			for b.Loop() {
				o := observations[i%len(observations)]
				tc.observe(m, o.route, o.decision, o.status, o.elapsed)
				i++
			}
		})
		b.Run(tc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			m := New(nil)
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					o := observations[i%len(observations)]
					tc.observe(m, o.route, o.decision, o.status, o.elapsed)
					i++
				}
			})
		})
	}
}

// A target that its active checks call healthy (none here) but that was
// ejected after failures takes no traffic: sekisho_upstream_healthy says so,
// and sekisho_upstream_ejected says why.
func TestUpstreamHealthyMeansTakingTraffic(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	live := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer live.Close()
	var targets []*url.URL
	for _, s := range []string{dead, live.URL} {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, u)
	}
	pool, err := upstream.NewPool(upstream.PoolOptions{Name: "app", Targets: targets, MaxFails: 1, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "/", nil)
	if res, err := pool.RoundTrip(req); err == nil { // round robin: the dead target first
		res.Body.Close()
		t.Fatal("request to the dead target succeeded")
	}
	if s := pool.Status()[0]; !s.Healthy || s.Available {
		t.Fatalf("dead target %+v, want healthy (no checks) and not available (ejected)", s)
	}
	m := New(func() []*upstream.Pool { return []*upstream.Pool{pool} })
	want := strings.NewReplacer("DEAD", dead, "LIVE", live.URL).Replace(`# HELP sekisho_upstream_ejected 1 while the upstream target is passively ejected after failures, 0 otherwise.
# TYPE sekisho_upstream_ejected gauge
sekisho_upstream_ejected{pool="app",target="DEAD"} 1
sekisho_upstream_ejected{pool="app",target="LIVE"} 0
# HELP sekisho_upstream_healthy 1 when the upstream target takes traffic, 0 when it is unhealthy (active checks) or ejected (passive).
# TYPE sekisho_upstream_healthy gauge
sekisho_upstream_healthy{pool="app",target="DEAD"} 0
sekisho_upstream_healthy{pool="app",target="LIVE"} 1
`)
	lines := func(s string) []string { l := strings.Split(s, "\n"); slices.Sort(l); return l }
	got := scrape(t, m, "sekisho_upstream_e") + scrape(t, m, "sekisho_upstream_h")
	if diff := cmp.Diff(lines(want), lines(got)); diff != "" {
		t.Errorf("upstream gauges (-want +got):\n%s", diff)
	}
}

func TestOIDCProviderUp(t *testing.T) {
	m := New(nil)
	up := true
	m.AddOIDCProviders(func() []Probe {
		return []Probe{{Name: "corp", Up: func() bool { return up }}, {Name: "google", Up: func() bool { return true }}}
	})
	want := "sekisho_oidc_provider_up{provider=\"corp\"} 1\nsekisho_oidc_provider_up{provider=\"google\"} 1\n"
	if got := scrape(t, m, "sekisho_oidc_provider_up{"); got != want {
		t.Errorf("reachable: got\n%s\nwant\n%s", got, want)
	}
	up = false
	if got := scrape(t, m, "sekisho_oidc_provider_up{provider=\"corp\""); got != "sekisho_oidc_provider_up{provider=\"corp\"} 0\n" {
		t.Errorf("unreachable provider still reads up: %q", got)
	}
}

func TestAuditMetrics(t *testing.T) {
	m := New(nil)
	st := AuditStats{PendingLines: 3, PendingBytes: 300, Dropped: 2, WriteErrors: 7, Failing: true}
	m.AddAudit(func() AuditStats { return st })
	got := scrape(t, m, "sekisho_audit_")
	for _, want := range []string{"sekisho_audit_failing 1\n", "sekisho_audit_pending_lines 3\n", "sekisho_audit_pending_bytes 300\n",
		"sekisho_audit_write_errors_total 7\n", "sekisho_audit_dropped_lines_total 2\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics lack %q:\n%s", want, got)
		}
	}
}

func TestReloadMetrics(t *testing.T) {
	m := New(nil)
	if got := scrape(t, m, "sekisho_config_reloads_total{"); got != "sekisho_config_reloads_total{result=\"applied\"} 0\nsekisho_config_reloads_total{result=\"refused\"} 0\n" {
		t.Errorf("before any reload: %q", got)
	}
	m.Reloaded(true)
	m.Reloaded(false)
	m.Reloaded(false)
	if got := scrape(t, m, "sekisho_config_reloads_total{"); got != "sekisho_config_reloads_total{result=\"applied\"} 1\nsekisho_config_reloads_total{result=\"refused\"} 2\n" {
		t.Errorf("after one applied and two refused reloads: %q", got)
	}
	if got := scrape(t, m, "sekisho_config_last_reload_success_timestamp_seconds 1"); got == "" {
		t.Errorf("last success timestamp: %q", got)
	}
}
