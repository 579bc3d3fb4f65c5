package upstream

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/testclock"
)

// waitDeadline bounds every wait in these tests; it is generous so a loaded
// machine does not make them flaky.
const waitDeadline = 10 * time.Second

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("url.Parse(%q): %v", s, err)
	}
	return u
}

func mustPool(t testing.TB, opts PoolOptions, targets ...string) *Pool {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "test"
	}
	for _, s := range targets {
		opts.Targets = append(opts.Targets, mustURL(t, s))
	}
	p, err := NewPool(opts)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	t.Cleanup(p.CloseIdleConnections)
	return p
}

// deadURL returns an http URL on 127.0.0.1 where nothing listens.
func deadURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func newServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// newFront serves the proxy made from opts on 127.0.0.1.
func newFront(t testing.TB, opts ProxyOptions) *httptest.Server {
	t.Helper()
	return newServer(t, NewProxy(opts))
}

// named answers every request with its name.
func named(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name)
	})
}

func get(t testing.TB, c *http.Client, u string) (int, string) {
	t.Helper()
	res, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", u, err)
	}
	return res.StatusCode, string(b)
}

// waitFor polls cond until it holds or waitDeadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recv returns the next value of ch, failing the test after waitDeadline.
func recv[T any](t testing.TB, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitDeadline):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// fakeClock is the settable test clock.
type fakeClock = testclock.Clock

// httptestServerWithConnState serves h on 127.0.0.1 and reports connection
// state changes to cs; it returns the server's URL.
func httptestServerWithConnState(t testing.TB, h http.Handler, cs func(net.Conn, http.ConnState)) string {
	t.Helper()
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = cs
	s.Start()
	t.Cleanup(s.Close)
	return s.URL
}

// countingWriter is the kind of ResponseWriter wrapper an audit middleware
// uses: it counts bytes and exposes the original through Unwrap only, so
// flushing and hijacking must go through http.ResponseController.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// audited wraps h's ResponseWriter in a countingWriter.
func audited(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&countingWriter{ResponseWriter: w}, r)
	})
}
