package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/testclock"
)

// flappy is an upstream whose health endpoint answers with a switchable
// status and counts the checks it answered in each state.
type flappy struct {
	status atomic.Int32
	mu     sync.Mutex
	served map[int]int // status -> checks answered since the last switch
	seen   []string    // host and request URI of the checks
}

func newFlappy(status int) *flappy {
	f := &flappy{served: map[int]int{}}
	f.status.Store(int32(status))
	return f
}

func (f *flappy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := int(f.status.Load())
	f.mu.Lock()
	f.served[st]++
	if len(f.seen) < 4 {
		f.seen = append(f.seen, r.Host+" "+r.RequestURI+" "+r.UserAgent())
	}
	f.mu.Unlock()
	w.WriteHeader(st)
}

func (f *flappy) set(status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status.Store(int32(status))
	clear(f.served)
}

func (f *flappy) count(status int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.served[status]
}

func TestHealthCheckInitialState(t *testing.T) {
	good, bad := newFlappy(http.StatusNoContent), newFlappy(http.StatusServiceUnavailable)
	redirect := newFlappy(http.StatusFound)
	gs, bs, rs := newServer(t, good), newServer(t, bad), newServer(t, redirect)
	pool := mustPool(t, PoolOptions{HealthCheck: &HealthCheck{
		Path: "/healthz?deep=1", Interval: time.Hour, Timeout: 5 * time.Second, Host: "app.internal",
	}}, gs.URL+"/base", bs.URL, rs.URL)

	healthy := func() []bool {
		var out []bool
		for _, s := range pool.Status() {
			out = append(out, s.Healthy)
		}
		return out
	}
	if diff := cmp.Diff([]bool{true, true, true}, healthy()); diff != "" {
		t.Errorf("before Start (-want +got):\n%s", diff)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool.Start(ctx) // one synchronous round: no waiting for thresholds
	if diff := cmp.Diff([]bool{true, false, true}, healthy()); diff != "" {
		t.Errorf("after Start (-want +got):\n%s", diff)
	}
	good.mu.Lock()
	seen := good.seen
	good.mu.Unlock()
	if diff := cmp.Diff([]string{"app.internal /base/healthz?deep=1 sekisho-health-check"}, seen); diff != "" {
		t.Errorf("health check request (-want +got):\n%s", diff)
	}
	if got := pool.Status()[1].LastError; got == "" {
		t.Error("unhealthy target has no LastError")
	}
}

func TestHealthCheckThresholds(t *testing.T) {
	f := newFlappy(http.StatusOK)
	up := newServer(t, f)
	const healthyAfter, unhealthyAfter = 2, 3
	pool := mustPool(t, PoolOptions{HealthCheck: &HealthCheck{
		Path: "/healthz", Interval: 50 * time.Millisecond, Timeout: 50 * time.Millisecond,
		HealthyThreshold: healthyAfter, UnhealthyThreshold: unhealthyAfter,
	}}, up.URL)
	front := newFront(t, ProxyOptions{Pool: pool})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool.Start(ctx)
	healthy := func() bool { return pool.Status()[0].Healthy }
	if !healthy() {
		t.Fatal("not healthy after Start")
	}

	f.set(http.StatusInternalServerError)
	waitFor(t, "target to turn unhealthy", func() bool { return !healthy() })
	if n := f.count(http.StatusInternalServerError); n < unhealthyAfter {
		t.Errorf("unhealthy after %d failed checks, want at least %d", n, unhealthyAfter)
	}
	if status, _ := get(t, front.Client(), front.URL+"/app"); status != http.StatusServiceUnavailable {
		t.Errorf("request to an unhealthy pool: status %d, want 503", status)
	}

	f.set(http.StatusOK)
	waitFor(t, "target to turn healthy", healthy)
	if n := f.count(http.StatusOK); n < healthyAfter {
		t.Errorf("healthy after %d passed checks, want at least %d", n, healthyAfter)
	}
	if status, _ := get(t, front.Client(), front.URL+"/app"); status != http.StatusOK {
		t.Errorf("request to a healthy pool: status %d, want 200", status)
	}

	// The checks stop with the context.
	cancel()
	time.Sleep(100 * time.Millisecond) // let a check in progress finish
	before := f.count(http.StatusOK)
	time.Sleep(300 * time.Millisecond)
	if after := f.count(http.StatusOK); after != before {
		t.Errorf("%d health checks after the context ended", after-before)
	}
}

// A target ejected by passive failures that its active checks then find
// healthy takes traffic again after HealthyThreshold passes in a row made
// since the ejection began, not only when EjectFor (here an hour) runs out.
// A failing check in between starts the count again; passes from before the
// ejection do not count.
func TestPassingChecksEndEjection(t *testing.T) {
	clock := testclock.New(time.Unix(1000, 0))
	pool := mustPool(t, PoolOptions{MaxFails: 1, EjectFor: time.Hour, Now: clock.Now,
		HealthCheck: &HealthCheck{Path: "/", Interval: time.Hour, HealthyThreshold: 2}}, deadURL(t))
	tg := pool.targets[0]
	fail := errors.New("check failed")
	available := func() bool { return pool.Status()[0].Available }

	pool.record(tg, nil) // before the ejection: does not count
	pool.failed(tg, errors.New("connection refused"))
	if available() {
		t.Fatal("target available after a failure with MaxFails 1")
	}
	pool.record(tg, nil)
	if available() {
		t.Fatal("one pass (HealthyThreshold 2), one of them from before the ejection, ended the ejection")
	}
	pool.record(tg, fail)
	pool.record(tg, nil)
	if available() {
		t.Fatal("a fail, then one pass ended the ejection")
	}
	pool.record(tg, nil)
	if s := pool.Status()[0]; !s.Available || !s.EjectedUntil.IsZero() {
		t.Fatalf("after 2 passes in a row: %+v, want available and not ejected", s)
	}
	// As after an ejection that ran out: one more failure ejects again.
	pool.failed(tg, errors.New("connection refused"))
	if got, want := pool.Status()[0].EjectedUntil, clock.Now().Add(time.Hour); !got.Equal(want) {
		t.Errorf("ejected again until %v, want %v", got, want)
	}
}

// End to end: a target ejected by a connection failure while its health
// checks pass is back in rotation with the checks, long before EjectFor.
func TestRecoveredTargetTakesTrafficBeforeEjectionEnds(t *testing.T) {
	up := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/boom" { // a connection failure: closed without an answer
			c, _, _ := http.NewResponseController(w).Hijack()
			c.Close()
			return
		}
		io.WriteString(w, "ok")
	}))
	pool := mustPool(t, PoolOptions{MaxFails: 1, EjectFor: time.Hour, Retries: -1,
		HealthCheck: &HealthCheck{Path: "/healthz", Interval: 50 * time.Millisecond, Timeout: 50 * time.Millisecond, HealthyThreshold: 2}}, up.URL)
	pool.Start(t.Context())
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "/boom", nil)
	if res, err := pool.RoundTrip(req); err == nil {
		res.Body.Close()
		t.Fatal("/boom answered")
	}
	if s := pool.Status()[0]; s.Available || s.EjectedUntil.IsZero() {
		t.Fatalf("after the failure: %+v, want ejected", s)
	}
	waitFor(t, "passing checks to end the ejection", func() bool { return pool.Status()[0].Available })
}
