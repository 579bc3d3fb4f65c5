package upstream

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// sleeper answers after its request context ends or 5s pass, and reports
// which came first.
func sleeper(ended chan<- string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			ended <- "cancelled"
		case <-time.After(5 * time.Second):
			ended <- "slept 5s"
		}
	})
}

// garbage is a TCP server that answers every connection with bytes that are
// not HTTP.
func garbage(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			bufio.NewReader(c).ReadString('\n')
			io.WriteString(c, "SSH-2.0-not-http\r\n\r\n")
			c.Close()
		}
	}()
	return "http://" + ln.Addr().String()
}

func TestProxyErrors(t *testing.T) {
	ended := make(chan string, 1)
	slow := newServer(t, sleeper(ended))
	down := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable) // fails the health check
	}))
	tests := []struct {
		name    string
		target  string
		opts    PoolOptions
		timeout time.Duration
		start   bool
		want    int
		wantErr error
	}{
		{name: "refused", target: deadURL(t), want: http.StatusBadGateway},
		{name: "malformed response", target: garbage(t), want: http.StatusBadGateway},
		{name: "no healthy target", target: down.URL, start: true, want: http.StatusServiceUnavailable, wantErr: ErrNoHealthyUpstream,
			opts: PoolOptions{HealthCheck: &HealthCheck{Path: "/", Interval: time.Hour, Timeout: 5 * time.Second}}},
		{name: "upstream slower than timeout", target: slow.URL, timeout: 100 * time.Millisecond, want: http.StatusGatewayTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pool := mustPool(t, tc.opts, tc.target)
			if tc.start {
				ctx := t.Context()
				pool.Start(ctx)
			}
			var (
				mu      sync.Mutex
				gotCode int
				gotErr  error
			)
			front := newFront(t, ProxyOptions{
				Pool:    pool,
				Timeout: tc.timeout,
				Rewrite: func(pr *httputil.ProxyRequest) { pr.Out.Header.Del("X-Request-Id") },
				ErrorHandler: func(w http.ResponseWriter, r *http.Request, status int, err error) {
					mu.Lock()
					gotCode, gotErr = status, err
					mu.Unlock()
					w.WriteHeader(status)
					// r is the client's request: its headers are untouched by Rewrite.
					fmt.Fprintf(w, "request id %s", r.Header.Get("X-Request-Id"))
				},
			})
			req, _ := http.NewRequest(http.MethodGet, front.URL+"/x", nil)
			req.Header.Set("X-Request-Id", "r-42")
			res, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tc.want || string(body) != "request id r-42" {
				t.Errorf("got %d %q, want %d %q", res.StatusCode, body, tc.want, "request id r-42")
			}
			mu.Lock()
			defer mu.Unlock()
			if gotCode != tc.want {
				t.Errorf("ErrorHandler status %d, want %d", gotCode, tc.want)
			}
			if tc.wantErr != nil && !errors.Is(gotErr, tc.wantErr) {
				t.Errorf("ErrorHandler error %v, want %v", gotErr, tc.wantErr)
			}
		})
	}
	if got := recv(t, "the slow upstream to end", ended); got != "cancelled" {
		t.Errorf("slow upstream %s, want its request cancelled at the timeout", got)
	}
}

func TestDefaultErrorResponse(t *testing.T) {
	front := newFront(t, ProxyOptions{}) // no pool
	res, err := front.Client().Get(front.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	got := []string{res.Status, res.Header.Get(ErrorHeader), res.Header.Get("Content-Type"), string(body)}
	want := []string{"503 Service Unavailable", "upstream", "text/plain; charset=utf-8", "Service Unavailable\n"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("default error response (-want +got):\n%s", diff)
	}
}

func TestRetry(t *testing.T) {
	var liveHits atomic.Int32
	live := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		liveHits.Add(1)
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "live")
	}))
	tests := []struct {
		name   string
		method string
		body   string
		header string
		want   []int // sorted statuses of two requests
		hits   int32
	}{
		{name: "GET is retried", method: http.MethodGet, want: []int{200, 200}, hits: 2},
		{name: "DELETE is retried", method: http.MethodDelete, want: []int{200, 200}, hits: 2},
		{name: "POST is not retried", method: http.MethodPost, body: "x", want: []int{200, 502}, hits: 1},
		{name: "POST without body is not retried", method: http.MethodPost, want: []int{200, 502}, hits: 1},
		{name: "POST with Idempotency-Key is retried", method: http.MethodPost, header: "Idempotency-Key", want: []int{200, 200}, hits: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			liveHits.Store(0)
			front := newFront(t, ProxyOptions{Pool: mustPool(t, PoolOptions{}, deadURL(t), live.URL)})
			var got []int
			for range 2 { // round robin: one of the two starts on the dead target
				var body io.Reader
				if tc.body != "" {
					body = strings.NewReader(tc.body)
				}
				req, _ := http.NewRequest(tc.method, front.URL, body)
				if tc.header != "" {
					req.Header.Set(tc.header, "k")
				}
				res, err := front.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				got = append(got, res.StatusCode)
			}
			sort.Ints(got)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
			if n := liveHits.Load(); n != tc.hits {
				t.Errorf("live upstream got %d requests, want %d", n, tc.hits)
			}
		})
	}
}

// A retry goes to the next target with that target's base path, not the
// path the first attempt was aimed at (the proxy aims its outbound request
// in place on the first attempt).
func TestRetryUsesEachTargetsBasePath(t *testing.T) {
	var paths []string
	var mu sync.Mutex
	live := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.RequestURI())
		mu.Unlock()
	}))
	front := newFront(t, ProxyOptions{Pool: mustPool(t, PoolOptions{}, deadURL(t)+"/first", live.URL+"/second")})
	for range 2 { // round robin: one of the two starts on the dead target
		res, err := front.Client().Get(front.URL + "/x?q=1")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("status %d, want 200", res.StatusCode)
		}
	}
	if diff := cmp.Diff([]string{"/second/x?q=1", "/second/x?q=1"}, paths); diff != "" {
		t.Errorf("paths the live target saw (-want +got):\n%s", diff)
	}
}

func TestHostAndPath(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s", r.Host, r.RequestURI, r.Header.Get("X-Auth-User"))
	})
	up := newServer(t, echo)
	upHost := strings.TrimPrefix(up.URL, "http://")
	tests := []struct {
		name         string
		base         string
		path         string
		preserveHost bool
		want         string
	}{
		{"target host", "", "/a/b?q=1", false, upHost + " /a/b?q=1 alice"},
		{"preserved host", "", "/a", true, "app.example.com /a alice"},
		{"base path joined", "/app", "/x/y", false, upHost + " /app/x/y alice"},
		{"escaped slash kept", "/app/", "/a%2Fb", false, upHost + " /app/a%2Fb alice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			front := newFront(t, ProxyOptions{
				Pool:         mustPool(t, PoolOptions{}, up.URL+tc.base),
				PreserveHost: tc.preserveHost,
				Rewrite: func(pr *httputil.ProxyRequest) {
					pr.Out.Header.Del("X-Auth-User") // the client never speaks for the gateway
					pr.Out.Header.Set("X-Auth-User", "alice")
				},
			})
			req, _ := http.NewRequest(http.MethodGet, front.URL+tc.path, nil)
			req.Host = "app.example.com"
			req.Header.Set("X-Auth-User", "mallory")
			res, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if string(body) != tc.want {
				t.Errorf("upstream saw %q, want %q", body, tc.want)
			}
		})
	}
}

func TestKeepAlive(t *testing.T) {
	var conns atomic.Int32
	up := httptestServerWithConnState(t, named("ok"), func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	})
	front := newFront(t, ProxyOptions{Pool: mustPool(t, PoolOptions{}, up)})
	for range 20 {
		if status, _ := get(t, front.Client(), front.URL); status != http.StatusOK {
			t.Fatalf("status %d", status)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 sequential requests used %d upstream connections, want 1", n)
	}
}
