package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/testclock"
)

func TestNewPoolErrors(t *testing.T) {
	u := func(s string) *url.URL { return mustURL(t, s) }
	tests := []struct {
		name string
		opts PoolOptions
		want []string // substrings of the error
	}{
		{"no name", PoolOptions{Targets: []*url.URL{u("http://a")}}, []string{"name is empty"}},
		{"no targets", PoolOptions{Name: "p"}, []string{`pool "p": no targets`}},
		{"nil target", PoolOptions{Name: "p", Targets: []*url.URL{nil}}, []string{`pool "p": target 1: URL is nil`}},
		{"bad scheme", PoolOptions{Name: "p", Targets: []*url.URL{u("http://a"), u("ftp://b")}}, []string{`target 2: "ftp://b": scheme must be http or https`}},
		{"no host", PoolOptions{Name: "p", Targets: []*url.URL{u("http:///x")}}, []string{"no host"}},
		{"credentials are not printed", PoolOptions{Name: "p", Targets: []*url.URL{u("http://user:hunter2@a")}}, []string{"credentials in the URL are not supported", "xxxxx"}},
		{"query", PoolOptions{Name: "p", Targets: []*url.URL{u("http://a/?x=1")}}, []string{"query is not allowed"}},
		{"fragment", PoolOptions{Name: "p", Targets: []*url.URL{u("http://a/#x")}}, []string{"fragment is not allowed"}},
		{"duplicate", PoolOptions{Name: "p", Targets: []*url.URL{u("http://a"), u("http://a")}}, []string{`target "http://a" is listed twice`}},
		{"balance", PoolOptions{Name: "p", Targets: []*url.URL{u("http://a")}, Balance: "random"}, []string{`balance "random"`}},
		{"eject_for", PoolOptions{Name: "p", Targets: []*url.URL{u("http://a")}, EjectFor: -time.Second}, []string{"eject_for -1s is negative"}},
		{"health path", PoolOptions{Name: "p", Targets: []*url.URL{u("http://a")}, HealthCheck: &HealthCheck{Path: "healthz"}}, []string{`health check: path "healthz" must start with "/"`}},
		{"health timeout over interval", PoolOptions{Name: "p", Targets: []*url.URL{u("http://a")}, HealthCheck: &HealthCheck{Path: "/", Interval: time.Second, Timeout: 2 * time.Second}}, []string{"timeout 2s is longer than interval 1s"}},
		{"health thresholds", PoolOptions{Name: "p", Targets: []*url.URL{u("http://a")}, HealthCheck: &HealthCheck{Path: "/", HealthyThreshold: -1}}, []string{"must not be negative"}},
		{"several problems at once", PoolOptions{Name: "p", Targets: []*url.URL{u("ftp://a")}, Balance: "x"}, []string{"scheme", "balance"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewPool(tc.opts)
			if err == nil {
				t.Fatal("NewPool: no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

func TestNewPoolDefaults(t *testing.T) {
	tests := []struct {
		name        string
		targets     int
		retries     int
		maxFails    int
		wantRetries int
		wantFails   int32
	}{
		{"one target", 1, 0, 0, 0, 3},
		{"two targets", 2, 0, 0, 1, 3},
		{"many targets capped at 3", 6, 0, 0, 3, 3},
		{"explicit retries capped by targets", 2, 10, 5, 1, 5},
		{"negative retries and fails turn them off", 4, -1, -1, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var targets []string
			for i := range tc.targets {
				targets = append(targets, "http://h"+string(rune('a'+i)))
			}
			p := mustPool(t, PoolOptions{Retries: tc.retries, MaxFails: tc.maxFails}, targets...)
			got := []any{p.retries, p.maxFails, p.ejectFor}
			want := []any{tc.wantRetries, tc.wantFails, DefaultEjectFor}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("retries, maxFails, ejectFor (-want +got):\n%s", diff)
			}
		})
	}
}

func TestJoinURL(t *testing.T) {
	tests := []struct {
		name, target, req string
		want              string
	}{
		{"no base path", "http://h:1", "/a/b?q=1", "http://h:1/a/b?q=1"},
		{"root base path", "http://h:1/", "/a", "http://h:1/a"},
		{"base path", "https://h/app", "/x/y", "https://h/app/x/y"},
		{"base path with slash", "https://h/app/", "/x", "https://h/app/x"},
		{"escaped slash kept", "http://h/app", "/a%2Fb", "http://h/app/a%2Fb"},
		{"escaped base kept", "http://h/a%2Fpp", "/x", "http://h/a%2Fpp/x"},
		{"escaped slash without base", "http://h", "/a%2Fb?x=%20", "http://h/a%2Fb?x=%20"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := joinURL(mustURL(t, tc.target), mustURL(t, tc.req)).String()
			if got != tc.want {
				t.Errorf("joinURL(%q, %q) = %q, want %q", tc.target, tc.req, got, tc.want)
			}
		})
	}
}

func TestIsIdempotent(t *testing.T) {
	tests := []struct {
		method string
		header string
		want   bool
	}{
		{"GET", "", true}, {"HEAD", "", true}, {"OPTIONS", "", true}, {"TRACE", "", true},
		{"PUT", "", true}, {"DELETE", "", true}, {"POST", "", false}, {"PATCH", "", false},
		{"POST", "Idempotency-Key", true}, {"PATCH", "X-Idempotency-Key", true},
	}
	for _, tc := range tests {
		t.Run(tc.method+tc.header, func(t *testing.T) {
			r, _ := http.NewRequest(tc.method, "/", nil)
			if tc.header != "" {
				r.Header.Set(tc.header, "k1")
			}
			if got := isIdempotent(r); got != tc.want {
				t.Errorf("isIdempotent(%s %s) = %v, want %v", tc.method, tc.header, got, tc.want)
			}
		})
	}
}

func TestRoundRobin(t *testing.T) {
	a, b, c := newServer(t, named("a")), newServer(t, named("b")), newServer(t, named("c"))
	front := newFront(t, ProxyOptions{Pool: mustPool(t, PoolOptions{}, a.URL, b.URL, c.URL)})
	got := map[string]int{}
	for range 9 {
		status, body := get(t, front.Client(), front.URL)
		if status != http.StatusOK {
			t.Fatalf("status %d", status)
		}
		got[body]++
	}
	if diff := cmp.Diff(map[string]int{"a": 3, "b": 3, "c": 3}, got); diff != "" {
		t.Errorf("distribution (-want +got):\n%s", diff)
	}
}

func TestLeastRequests(t *testing.T) {
	release := make(chan struct{})
	held := make(chan string, 1)
	holder := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/hold" {
				held <- name
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}
			io.WriteString(w, name)
		})
	}
	a, b := newServer(t, holder("a")), newServer(t, holder("b"))
	pool := mustPool(t, PoolOptions{Balance: LeastRequests}, a.URL, b.URL)
	front := newFront(t, ProxyOptions{Pool: pool})

	done := make(chan error, 1)
	go func() {
		res, err := front.Client().Get(front.URL + "/hold")
		if err == nil {
			_, err = io.ReadAll(res.Body)
			res.Body.Close()
		}
		done <- err
	}()
	busy := recv(t, "the held request to arrive", held)
	idle := map[string]string{"a": "b", "b": "a"}[busy]
	if got := inflight(pool); got != 1 {
		t.Errorf("in flight while holding = %d, want 1", got)
	}
	for range 5 {
		if _, body := get(t, front.Client(), front.URL+"/fast"); body != idle {
			t.Errorf("request went to %q while %q was busy; want %q", body, busy, idle)
		}
	}
	close(release)
	if err := recv(t, "the held request to end", done); err != nil {
		t.Fatalf("held request: %v", err)
	}
	waitFor(t, "in-flight count to drop to 0", func() bool { return inflight(pool) == 0 })
}

func inflight(p *Pool) int64 {
	var n int64
	for _, s := range p.Status() {
		n += s.Inflight
	}
	return n
}

func TestPassiveEjection(t *testing.T) {
	clock := testclock.New(time.Unix(1000, 0))
	dead := deadURL(t)
	live := newServer(t, named("live"))
	pool := mustPool(t, PoolOptions{MaxFails: 2, EjectFor: 30 * time.Second, Retries: -1, Now: clock.Now}, dead, live.URL)
	send := func() error {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "/x", nil)
		res, err := pool.RoundTrip(req)
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		return err
	}
	failUntilEjected := func(max int) {
		t.Helper()
		for range max {
			if err := send(); err != nil && !pool.Status()[0].Available {
				return
			}
		}
		t.Fatalf("dead target not ejected after %d requests; status %+v", max, pool.Status())
	}

	failUntilEjected(4) // 2 failures, every other request
	want := TargetStatus{URL: dead, Healthy: true, EjectedUntil: time.Unix(1030, 0)}
	got := pool.Status()[0]
	got.LastError = ""
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dead target status (-want +got):\n%s", diff)
	}
	if !strings.Contains(pool.Status()[0].LastError, "connection refused") {
		t.Errorf("LastError = %q, want the refusal", pool.Status()[0].LastError)
	}
	for i := range 6 {
		if err := send(); err != nil {
			t.Fatalf("request %d while the dead target is ejected: %v", i, err)
		}
	}

	clock.Advance(31 * time.Second)
	if s := pool.Status()[0]; !s.Available || !s.EjectedUntil.IsZero() {
		t.Fatalf("after the ejection ended: %+v, want available", s)
	}
	failUntilEjected(2) // half-open: one more failure ejects again
	if got, want := pool.Status()[0].EjectedUntil, time.Unix(1061, 0); !got.Equal(want) {
		t.Errorf("ejected again until %v, want %v", got, want)
	}
}

func TestPoolNoTarget(t *testing.T) {
	var calls atomic.Int32
	up := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	pool := mustPool(t, PoolOptions{HealthCheck: &HealthCheck{Path: "/h", Interval: time.Hour, Timeout: 5 * time.Second}}, up.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool.Start(ctx)
	req, _ := http.NewRequest(http.MethodGet, "/x", nil)
	_, err := pool.RoundTrip(req)
	if !errors.Is(err, ErrNoHealthyUpstream) {
		t.Errorf("RoundTrip error = %v, want ErrNoHealthyUpstream", err)
	}
	if !strings.Contains(err.Error(), `pool "test"`) {
		t.Errorf("error %q does not name the pool", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("upstream got %d requests, want only the health check", n)
	}
}
