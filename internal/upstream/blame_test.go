package upstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// failure is what the proxy handed its ErrorHandler.
type failure struct {
	status int
	err    error
}

// blameFront serves a proxy to pool whose ErrorHandler reports on the
// returned channel, with wrap (if not nil) around the proxy. It returns
// the front's host:port and the proxy's log.
func blameFront(t *testing.T, opts ProxyOptions, wrap func(http.Handler) http.Handler) (string, <-chan failure, *syncBuffer) {
	t.Helper()
	failures := make(chan failure, 16)
	logs := new(syncBuffer)
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.ErrorHandler = func(w http.ResponseWriter, r *http.Request, status int, err error) {
		failures <- failure{status, err}
		if status != StatusClientClosedRequest {
			w.WriteHeader(status)
		}
	}
	var h http.Handler = NewProxy(opts)
	if wrap != nil {
		h = wrap(h)
	}
	front := newServer(t, h)
	return strings.TrimPrefix(front.URL, "http://"), failures, logs
}

// syncBuffer is a log sink shared by the handler's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// rawRequest writes raw to the front at addr; with close, it then closes the
// connection (a client that left), otherwise it returns the response's
// status line.
func rawRequest(t *testing.T, addr, raw string, close bool) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	if close {
		return ""
	}
	c.SetReadDeadline(time.Now().Add(waitDeadline))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the front's answer: %v", err)
	}
	return strings.TrimSpace(line)
}

// notCounted checks that pool's single target has no failure counted and
// still takes traffic.
func notCounted(t *testing.T, pool *Pool) {
	t.Helper()
	if n := pool.targets[0].fails.Load(); n != 0 {
		t.Errorf("%d failures counted against the target, want 0", n)
	}
	if s := pool.Status()[0]; !s.Available {
		t.Errorf("target ejected: %+v", s)
	}
}

// A client's broken request body is the client's failure, whichever client
// (sekisho's own for a known length up to maxFastBody, http.Transport for
// a chunked one) carried it: it never counts against the target, so a few
// such uploads cannot eject a healthy target for everyone, and the answer
// says whose fault it was.
func TestAnonymousEjectionByBadRequestBodies(t *testing.T) {
	limit := func(h http.Handler) http.Handler { // an upload limit in front of the proxy
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Body = http.MaxBytesReader(w, r.Body, 10)
			h.ServeHTTP(w, r)
		})
	}
	tests := []struct {
		name   string
		raw    string
		left   bool // the client leaves after sending raw
		wrap   func(http.Handler) http.Handler
		status int
	}{
		{name: "malformed chunked body (http.Transport)", status: http.StatusBadRequest,
			raw: "POST /up HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz-not-a-size\r\n\r\n"},
		{name: "client gone mid-body, chunked (http.Transport)", left: true, status: StatusClientClosedRequest,
			raw: "POST /up HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"},
		{name: "client gone mid-body, Content-Length (own client)", left: true, status: StatusClientClosedRequest,
			raw: "POST /up HTTP/1.1\r\nHost: app\r\nContent-Length: 100\r\n\r\nhello"},
		{name: "body over the upload limit (own client)", wrap: limit, status: http.StatusRequestEntityTooLarge,
			raw: "POST /up HTTP/1.1\r\nHost: app\r\nContent-Length: 20\r\n\r\n01234567890123456789"},
	}
	up := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return
		}
		io.WriteString(w, "ok")
	}))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pool := mustPool(t, PoolOptions{MaxFails: 1}, up.URL)
			addr, failures, logs := blameFront(t, ProxyOptions{Pool: pool}, tc.wrap)
			for range 3 {
				line := rawRequest(t, addr, tc.raw, tc.left)
				f := recv(t, "the ErrorHandler", failures)
				var be *RequestBodyError
				if f.status != tc.status || !errors.As(f.err, &be) {
					t.Errorf("ErrorHandler got %d %v, want %d and a *RequestBodyError", f.status, f.err, tc.status)
				}
				if want := fmt.Sprintf("HTTP/1.1 %d ", tc.status); !tc.left && !strings.HasPrefix(line, want) {
					t.Errorf("client got %q, want %q", line, want)
				}
			}
			notCounted(t, pool)
			if strings.Contains(logs.String(), "level=WARN") {
				t.Errorf("the client's failure was logged as a warning:\n%s", logs)
			}
			if status, body := get(t, http.DefaultClient, "http://"+addr+"/"); status != http.StatusOK || body != "ok" {
				t.Errorf("next GET: %d %q, want 200 ok", status, body)
			}
		})
	}
}

// A client that leaves before the upstream answers is the client's: the
// ErrorHandler gets 499, the log says it at Debug, the target is not
// blamed, on either client.
func TestClientGoneIsNotUpstreamFailure(t *testing.T) {
	arrived := make(chan struct{}, 1)
	up := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		arrived <- struct{}{}
		<-r.Context().Done() // never answers
	}))
	tests := []struct {
		name string
		body io.Reader
	}{
		{"GET (own client)", nil},
		{"chunked POST (http.Transport)", struct{ io.Reader }{strings.NewReader("data")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pool := mustPool(t, PoolOptions{MaxFails: 1}, up.URL)
			addr, failures, logs := blameFront(t, ProxyOptions{Pool: pool}, nil)
			ctx, cancel := context.WithCancel(t.Context())
			method := http.MethodGet
			if tc.body != nil {
				method = http.MethodPost
			}
			req, _ := http.NewRequestWithContext(ctx, method, "http://"+addr+"/slow", tc.body)
			done := make(chan error, 1)
			go func() {
				res, err := http.DefaultClient.Do(req)
				if err == nil {
					res.Body.Close()
				}
				done <- err
			}()
			recv(t, "the request to reach the upstream", arrived)
			cancel()
			recv(t, "the client to give up", done)
			f := recv(t, "the ErrorHandler", failures)
			if f.status != StatusClientClosedRequest {
				t.Errorf("ErrorHandler got %d %v, want %d", f.status, f.err, StatusClientClosedRequest)
			}
			notCounted(t, pool)
			if l := logs.String(); strings.Contains(l, "level=WARN") || !strings.Contains(l, "level=DEBUG") {
				t.Errorf("log, want the client's failure at Debug and no warning:\n%s", l)
			}
		})
	}
}

// The gateway running out of file descriptors (or memory, or socket
// buffers) is not the target's fault: it is not ejected and the request
// is not retried on the others; the answer is 503.
func TestGatewayOutOfFileDescriptorsDoesNotEjectTarget(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		t.Run(errno.Error(), func(t *testing.T) {
			var dials int
			var mu sync.Mutex
			tr := NewTransport()
			tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				mu.Lock()
				dials++
				mu.Unlock()
				return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("socket", errno)}
			}
			pool := mustPool(t, PoolOptions{MaxFails: 1, Transport: tr}, "http://127.0.0.1:1", "http://127.0.0.1:2")
			addr, failures, _ := blameFront(t, ProxyOptions{Pool: pool}, nil)
			for _, raw := range []string{
				"GET / HTTP/1.1\r\nHost: app\r\n\r\n",                                                   // own client
				"POST / HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", // http.Transport
			} {
				if line := rawRequest(t, addr, raw, false); !strings.HasPrefix(line, "HTTP/1.1 503 ") {
					t.Errorf("answer %q, want 503", line)
				}
				if f := recv(t, "the ErrorHandler", failures); !errors.Is(f.err, ErrGatewayOverloaded) {
					t.Errorf("ErrorHandler error %v, want ErrGatewayOverloaded", f.err)
				}
			}
			for i, tg := range pool.targets {
				if n := tg.fails.Load(); n != 0 {
					t.Errorf("target %d: %d failures counted, want 0", i, n)
				}
			}
			if dials != 2 {
				t.Errorf("%d dials for 2 requests, want 2 (no retries)", dials)
			}
		})
	}
}

// A request that the gateway itself made invalid (a header value with a
// line break, from a claim) is refused before anything is sent: no
// target's fault.
func TestInvalidOutboundHeaderDoesNotEjectTarget(t *testing.T) {
	up := newServer(t, named("ok"))
	pool := mustPool(t, PoolOptions{MaxFails: 1}, up.URL)
	addr, failures, _ := blameFront(t, ProxyOptions{Pool: pool, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.Out.Header.Set("X-User", "alice\r\nX-Admin: true")
	}}, nil)
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: app\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
	} {
		rawRequest(t, addr, raw, false)
		if f := recv(t, "the ErrorHandler", failures); !errors.Is(f.err, errInvalidRequest) {
			t.Errorf("ErrorHandler error %v, want errInvalidRequest", f.err)
		}
	}
	notCounted(t, pool)
}

// A target that is going away closes its kept-alive connections and
// refuses new ones. The GETs that were on their way to it go to the
// healthy target instead of failing 502.
func TestDyingTargetInFlightGETsGoToHealthyTarget(t *testing.T) {
	dying := rawUpstream(t, func(c *rawConn) {
		c.answer()
		c.next() // the next request on the kept-alive connection: closed unanswered
	})
	healthy := newServer(t, named("healthy"))
	pool := mustPool(t, PoolOptions{}, "http://"+dying, healthy.URL)
	h := pool.targets[0].h1
	var dials int
	var mu sync.Mutex
	dial := h.dial
	h.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		if dials++; dials > 1 { // gone: nothing listens any more
			return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
		}
		return dial(ctx, network, addr)
	}
	front := newFront(t, ProxyOptions{Pool: pool})
	want := []string{"c0 GET /", "healthy", "healthy"} // round robin: dying, healthy, dying
	for i, w := range want {
		status, body := get(t, front.Client(), front.URL+"/")
		if status != http.StatusOK || body != w {
			t.Errorf("GET %d: %d %q, want 200 %q", i+1, status, body, w)
		}
	}
}

// Ejection by slow uploads: an app that gives up on a slow upload (a
// gunicorn worker killed at its timeout) resets the connection while the
// client is still sending. Any client allowed on the route could eject the
// target so; such a failure is not counted (active checks still see an app
// that is really broken).
func TestUpstreamGivingUpOnSlowUploadDoesNotEjectTarget(t *testing.T) {
	up := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/up" {
			io.WriteString(w, "ok")
			return
		}
		time.Sleep(200 * time.Millisecond)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetLinger(0) // a reset, not a clean close
		}
		conn.Close()
	}))
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			pool := mustPool(t, PoolOptions{MaxFails: 1}, up.URL)
			addr, _, _ := blameFront(t, ProxyOptions{Pool: pool}, nil)
			for range 2 {
				pr, pw := io.Pipe()
				go func() {
					defer pw.Close()
					for range 20 { // 5 bytes every 50ms: 1 s for 100 bytes
						if _, err := pw.Write([]byte("hello")); err != nil {
							return
						}
						time.Sleep(50 * time.Millisecond)
					}
				}()
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/up", pr)
				if !chunked {
					req.ContentLength = 100
				}
				res, err := http.DefaultClient.Do(req)
				if err == nil {
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
			}
			notCounted(t, pool)
		})
	}
}
