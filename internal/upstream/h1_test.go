package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/testclock"
)

// rawConn is one connection accepted by a rawUpstream.
type rawConn struct {
	net.Conn
	// n is the connection's place in the listener's accepts: 0 for the
	// first, 1 for the next, and so on.
	n   int
	br  *bufio.Reader
	ctx context.Context // ends when the test does
}

// rawUpstream is a TCP server on 127.0.0.1 that hands every connection it
// accepts to serve, for tests that control the bytes on the wire. serve
// runs on its own goroutine; the connection is closed when it returns, and
// at the end of the test every connection is closed and every serve
// awaited. It returns the server's host:port.
func rawUpstream(t *testing.T, serve func(c *rawConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		conns  []net.Conn
		closed bool
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				nc.Close()
				return
			}
			conns = append(conns, nc)
			wg.Add(1)
			mu.Unlock()
			go func() {
				defer wg.Done()
				defer nc.Close()
				serve(&rawConn{Conn: nc, n: n, br: bufio.NewReader(nc), ctx: ctx})
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// readReq reads one request and returns "METHOD request-URI", followed by
// " body" when it has a body.
func (c *rawConn) readReq() (string, error) {
	req, err := http.ReadRequest(c.br)
	if err != nil {
		return "", err
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return "", err
	}
	s := req.Method + " " + req.RequestURI
	if len(body) > 0 {
		s += " " + string(body)
	}
	return s, nil
}

// reply writes a 200 response that carries body, with its Content-Length.
func (c *rawConn) reply(body string) error {
	_, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	return err
}

// echo answers every request with "c<n> <request>" (see readReq) until the
// connection ends, and returns the requests it answered followed by how
// the connection ended (see next).
func (c *rawConn) echo() []string {
	var log []string
	for {
		r, err := c.answer()
		if r != "" {
			log = append(log, r)
		}
		if err != nil {
			return append(log, ending(err))
		}
	}
}

// answer reads one request and answers it as echo does, "c<n> <request>";
// it returns the request (see readReq), "" when none could be read.
func (c *rawConn) answer() (string, error) {
	r, err := c.readReq()
	if err != nil {
		return "", err
	}
	return r, c.reply(fmt.Sprintf("c%d %s", c.n, r))
}

// next reads the next request and returns it (see readReq), or "closed"
// when the client closed the connection instead, or the read error.
func (c *rawConn) next() string {
	r, err := c.readReq()
	if err != nil {
		return ending(err)
	}
	return r
}

func ending(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return "closed"
	}
	return err.Error()
}

// report sends v on ch unless the test has ended.
func report[T any](ctx context.Context, ch chan<- T, v T) {
	select {
	case ch <- v:
	case <-ctx.Done():
	}
}

// newH1 returns sekisho's HTTP/1.1 client for addr, counting its dials.
func newH1(t *testing.T, addr string) (*h1Conns, *atomic.Int32) {
	t.Helper()
	dials := new(atomic.Int32)
	d := &net.Dialer{}
	h := &h1Conns{
		addr: addr,
		now:  time.Now,
		dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(h.closeIdle)
	return h, dials
}

func newReq(t testing.TB, ctx context.Context, method, url, body string) *http.Request {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// send makes one exchange on h and returns the response body, read to its
// end and closed.
func send(t *testing.T, h *h1Conns, method, url, body string) (string, error) {
	t.Helper()
	res, err := h.roundTrip(newReq(t, t.Context(), method, url, body))
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return string(b), err
}

func mustSend(t *testing.T, h *h1Conns, method, url, body string) string {
	t.Helper()
	got, err := send(t, h, method, url, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return got
}

// nextRequest checks that h holds idle connections, then that the next GET
// of path is answered by the upstream's connection number conn (c0 is the
// first it accepted), with conn+1 dials in all.
func nextRequest(t *testing.T, h *h1Conns, dials *atomic.Int32, addr, path string, idle, conn int) {
	t.Helper()
	if n := idleCount(h); n != idle {
		t.Fatalf("%d idle connections, want %d", n, idle)
	}
	if got, want := mustSend(t, h, http.MethodGet, "http://"+addr+path, ""), fmt.Sprintf("c%d GET %s", conn, path); got != want {
		t.Errorf("next request: %q, want %q", got, want)
	}
	if n := dials.Load(); n != int32(conn+1) {
		t.Errorf("dials = %d, want %d", n, conn+1)
	}
}

// nextOnNewConn checks that h kept no connection: the next GET goes out on
// a new one, the upstream's second.
func nextOnNewConn(t *testing.T, h *h1Conns, dials *atomic.Int32, addr, path string) {
	t.Helper()
	nextRequest(t, h, dials, addr, path, 0, 1)
}

func idleCount(h *h1Conns) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.idle)
}

// waitPeekSees waits until the connection h would use next has something
// to read, bytes or the upstream's end of stream, as h's peek sees it: the
// moment the upstream's bytes have reached this side.
func waitPeekSees(t *testing.T, h *h1Conns) {
	t.Helper()
	h.mu.Lock()
	if len(h.idle) == 0 {
		h.mu.Unlock()
		t.Fatal("no idle connection")
	}
	c := h.idle[len(h.idle)-1]
	h.mu.Unlock()
	waitFor(t, "the upstream's bytes to reach the idle connection", func() bool { return !idleConnUsable(c.raw) })
}

// Sequential requests share one keep-alive connection, and a small body
// arrives byte for byte (a body that looks like a second request included).
func TestH1KeepAlive(t *testing.T) {
	addr := rawUpstream(t, func(c *rawConn) { c.echo() })
	h, dials := newH1(t, addr)
	base := "http://" + addr
	for i := range 20 {
		path := fmt.Sprintf("/get/%d", i)
		if got, want := mustSend(t, h, http.MethodGet, base+path, ""), "c0 GET "+path; got != want {
			t.Fatalf("response %q, want %q", got, want)
		}
	}
	payload := strings.Repeat("\x00\xff\r\n", 512) + "\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
	if got, want := mustSend(t, h, http.MethodPost, base+"/post", payload), "c0 POST /post "+payload; got != want {
		t.Errorf("POST echo differs (got %d bytes, want %d)", len(got), len(want))
	}
	if got, want := mustSend(t, h, http.MethodGet, base+"/after", ""), "c0 GET /after"; got != want {
		t.Errorf("after the POST: %q, want %q", got, want)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("22 sequential requests dialed %d connections, want 1", n)
	}
	if n := idleCount(h); n != 1 {
		t.Errorf("%d idle connections, want 1", n)
	}
}

// A body closed before its end closes the connection: what is left of it
// must never be read as the next response.
func TestH1BodyClosedEarly(t *testing.T) {
	ends := make(chan []string, 2)
	addr := rawUpstream(t, func(c *rawConn) { report(c.ctx, ends, c.echo()) })
	h, dials := newH1(t, addr)
	res, err := h.roundTrip(newReq(t, t.Context(), http.MethodGet, "http://"+addr+"/first", ""))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3)
	if _, err := io.ReadFull(res.Body, buf); err != nil {
		t.Fatal(err)
	}
	if err := res.Body.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if diff := cmp.Diff([]string{"GET /first", "closed"}, recv(t, "the first connection to end", ends)); diff != "" {
		t.Errorf("first connection (-want +got):\n%s", diff)
	}
	nextOnNewConn(t, h, dials, addr, "/second")
}

// Closing the body of a stream that never ends returns at once: Close must
// not read the rest of it.
func TestH1CloseEndlessBody(t *testing.T) {
	tests := []struct {
		name   string
		header string
		chunk  string
	}{
		{"read until the upstream closes", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n", "data: tick\n\n"},
		{"chunked", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n", "c\r\ndata: tick\n\n\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stopped := make(chan error, 1)
			addr := rawUpstream(t, func(c *rawConn) {
				if _, err := c.readReq(); err != nil {
					return
				}
				_, err := io.WriteString(c, tc.header)
				for err == nil {
					_, err = io.WriteString(c, tc.chunk)
				}
				report(c.ctx, stopped, err)
			})
			h, _ := newH1(t, addr)
			res, err := h.roundTrip(newReq(t, t.Context(), http.MethodGet, "http://"+addr+"/events", ""))
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			if _, err := io.ReadFull(res.Body, buf); err != nil {
				t.Fatal(err)
			}
			closed := make(chan error, 1)
			go func() { closed <- res.Body.Close() }()
			recv(t, "Close of an endless body to return", closed)
			recv(t, "the upstream's writes to fail on the closed connection", stopped)
			if n := idleCount(h); n != 0 {
				t.Errorf("%d idle connections, want 0", n)
			}
		})
	}
}

// A connection that either side asked to close, or whose response ended
// with the connection, is never kept.
func TestH1NotReused(t *testing.T) {
	tests := []struct {
		name       string
		response   string
		closeWrite bool // the upstream ends its side after the response
		reqClose   bool
	}{
		{name: "upstream sent Connection: close", response: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"},
		{name: "HTTP/1.0 response without keep-alive", response: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"},
		{name: "no Content-Length: body read to end of file", response: "HTTP/1.1 200 OK\r\n\r\nok", closeWrite: true},
		{name: "request asked to close", response: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", reqClose: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			end := make(chan string, 1)
			addr := rawUpstream(t, func(c *rawConn) {
				if _, err := c.readReq(); err != nil {
					report(c.ctx, end, ending(err))
					return
				}
				io.WriteString(c, tc.response)
				if tc.closeWrite {
					c.Conn.(*net.TCPConn).CloseWrite()
				}
				report(c.ctx, end, c.next())
			})
			h, _ := newH1(t, addr)
			req := newReq(t, t.Context(), http.MethodGet, "http://"+addr+"/", "")
			req.Close = tc.reqClose
			res, err := h.roundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil || string(body) != "ok" {
				t.Fatalf("body %q, %v; want \"ok\"", body, err)
			}
			if n := idleCount(h); n != 0 {
				t.Fatalf("%d idle connections, want 0", n)
			}
			if got := recv(t, "the upstream to see the connection end", end); got != "closed" {
				t.Errorf("upstream saw %q, want the connection closed", got)
			}
		})
	}
}

// An idle connection that the upstream closed after answering is dropped
// before use (the peek sees its end): the next request goes out once, on a
// new connection, whether it could be replayed or not.
func TestH1IdleConnClosedByUpstream(t *testing.T) {
	tests := []struct{ method, body, want string }{
		{http.MethodGet, "", "c1 GET /second"},
		{http.MethodPost, "data", "c1 POST /second data"},
	}
	for _, tc := range tests {
		t.Run(tc.method, func(t *testing.T) {
			first := make(chan string, 1)
			addr := rawUpstream(t, func(c *rawConn) {
				if c.n > 0 {
					c.echo()
					return
				}
				c.answer()
				// Close our side; a request that still comes is written
				// on a connection the upstream has given up.
				c.Conn.(*net.TCPConn).CloseWrite()
				report(c.ctx, first, c.next())
			})
			h, dials := newH1(t, addr)
			base := "http://" + addr
			if got := mustSend(t, h, http.MethodGet, base+"/first", ""); got != "c0 GET /first" {
				t.Fatalf("first response %q", got)
			}
			waitPeekSees(t, h)
			if got := mustSend(t, h, tc.method, base+"/second", tc.body); got != tc.want {
				t.Errorf("second response %q, want %q", got, tc.want)
			}
			if got := recv(t, "the first connection to end", first); got != "closed" {
				t.Errorf("the closed connection still carried %q", got)
			}
			if n := dials.Load(); n != 2 {
				t.Errorf("dials = %d, want 2", n)
			}
		})
	}
}

// The race the peek cannot see: the upstream reads the next request on a
// kept-alive connection and closes it without an answer. A request that
// may be sent twice goes again on a new connection; one that may not gets
// an error and reaches the upstream exactly once.
func TestH1StaleConnRace(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		body       string
		want       string // response to the second request; "" for an error
		partial    string // what the first connection writes before it closes
		wantUnseen string // what the first connection read and left unanswered
		wantDials  int32
	}{
		{name: "GET is sent again on a new connection", method: http.MethodGet,
			want: "c1 GET /second", wantUnseen: "GET /second", wantDials: 2},
		{name: "never replays a POST", method: http.MethodPost, body: "pay 100",
			wantUnseen: "POST /second pay 100", wantDials: 1},
		// Bytes of an answer came back: the upstream took the request, so
		// the connection was not stale and nothing is sent again.
		{name: "GET answered in part is not sent again", method: http.MethodGet, partial: "HTTP/1.1 200 OK\r\n",
			wantUnseen: "GET /second", wantDials: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			unanswered := make(chan string, 1)
			addr := rawUpstream(t, func(c *rawConn) {
				if c.n > 0 {
					c.echo()
					return
				}
				c.answer()
				r := c.next()
				io.WriteString(c, tc.partial)
				report(c.ctx, unanswered, r) // then close without (a whole) answer
			})
			h, dials := newH1(t, addr)
			base := "http://" + addr
			if got := mustSend(t, h, http.MethodGet, base+"/first", ""); got != "c0 GET /first" {
				t.Fatalf("first response %q", got)
			}
			got, err := send(t, h, tc.method, base+"/second", tc.body)
			switch {
			case tc.want == "" && err == nil:
				t.Errorf("second request answered %q, want an error", got)
			case tc.want != "" && (err != nil || got != tc.want):
				t.Errorf("second request: %q, %v; want %q", got, err, tc.want)
			}
			if got := recv(t, "the first connection to read the second request", unanswered); got != tc.wantUnseen {
				t.Errorf("first connection read %q, want %q", got, tc.wantUnseen)
			}
			if n := dials.Load(); n != tc.wantDials {
				t.Errorf("dials = %d, want %d", n, tc.wantDials)
			}
		})
	}
}

// Bytes the upstream sends beyond its response (a second response nobody
// asked for) must never answer the next request: the connection is
// dropped, whether the bytes came with the response or later, while the
// connection sat idle.
func TestH1ResponseSmuggling(t *testing.T) {
	const smuggled = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"
	tests := []struct {
		name  string
		first string // the answer to the first request
		later string // written once the connection is idle
	}{
		{name: "response splitting: extra response in the same write",
			first: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst" + smuggled},
		{name: "response splitting after a chunked body",
			first: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n0\r\n\r\n" + smuggled},
		{name: "response queued on the idle connection",
			first: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst", later: smuggled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idle := make(chan struct{})
			addr := rawUpstream(t, func(c *rawConn) {
				if c.n == 0 {
					if _, err := c.readReq(); err != nil {
						return
					}
					io.WriteString(c, tc.first)
					if tc.later != "" {
						select {
						case <-idle:
						case <-c.ctx.Done():
							return
						}
						io.WriteString(c, tc.later)
					}
				}
				c.echo() // a request that still comes here gets the smuggled answer first
			})
			h, dials := newH1(t, addr)
			base := "http://" + addr
			if got := mustSend(t, h, http.MethodGet, base+"/first", ""); got != "first" {
				t.Fatalf("first response %q", got)
			}
			if tc.later != "" {
				if n := idleCount(h); n != 1 {
					t.Fatalf("%d idle connections after a clean response, want 1", n)
				}
				close(idle)
				waitPeekSees(t, h)
			}
			if got, want := mustSend(t, h, http.MethodGet, base+"/second", ""), "c1 GET /second"; got != want {
				t.Errorf("second response %q, want %q", got, want)
			}
			if n := dials.Load(); n != 2 {
				t.Errorf("dials = %d, want 2", n)
			}
		})
	}
}

func TestH1ResponseHeaderLimit(t *testing.T) {
	tests := []struct {
		name    string
		size    int // of one header value
		wantErr error
	}{
		{"just under the limit", maxResponseHeaderBytes - 1024, nil},
		{"over the limit", maxResponseHeaderBytes, errResponseHeaderTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			end := make(chan string, 1)
			addr := rawUpstream(t, func(c *rawConn) {
				if _, err := c.readReq(); err != nil {
					return
				}
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Big: %s\r\nContent-Length: 2\r\n\r\nok", strings.Repeat("a", tc.size))
				report(c.ctx, end, c.next())
			})
			h, _ := newH1(t, addr)
			res, err := h.roundTrip(newReq(t, t.Context(), http.MethodGet, "http://"+addr+"/", ""))
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("roundTrip: %v", err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if len(res.Header.Get("X-Big")) != tc.size || string(body) != "ok" {
					t.Errorf("got a %d-byte header and body %q", len(res.Header.Get("X-Big")), body)
				}
				return
			}
			if res != nil {
				res.Body.Close()
				t.Fatalf("got a %d response, want none", res.StatusCode)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("roundTrip error %v, want %v", err, tc.wantErr)
			}
			if got := recv(t, "the connection to end", end); got != "closed" {
				t.Errorf("upstream saw %q, want the connection closed", got)
			}
		})
	}
}

func TestH1Informational(t *testing.T) {
	const (
		hint  = "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
		final = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	)
	// Two 1xx responses of 600 KiB each: more than maxResponseHeaderBytes
	// together, less each.
	bigHint := "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\nX-Pad: " +
		strings.Repeat("a", 600<<10) + "\r\n\r\n"
	tests := []struct {
		name     string
		response string
		noHook   bool // no Got1xxResponse in the request's trace
		want1xx  []string
		wantErr  error
	}{
		{name: "103 Early Hints reach the trace", response: hint + final,
			want1xx: []string{"103 </style.css>; rel=preload"}},
		{name: "many delivered 1xx responses pass, as with http.Transport", response: strings.Repeat(hint, 20) + final,
			want1xx: slices.Repeat([]string{"103 </style.css>; rel=preload"}, 20)},
		{name: "each delivered 1xx starts the header limit afresh", response: bigHint + bigHint + final,
			want1xx: slices.Repeat([]string{"103 </style.css>; rel=preload"}, 2)},
		{name: "header flood: undelivered 1xx count against the header limit", response: bigHint + bigHint + final,
			noHook: true, wantErr: errResponseHeaderTooLarge},
		{name: "unasked 101 Switching Protocols", response: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
			wantErr: errUnaskedUpgrade},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			end := make(chan string, 1)
			addr := rawUpstream(t, func(c *rawConn) {
				if _, err := c.readReq(); err != nil {
					return
				}
				io.WriteString(c, tc.response)
				c.Conn.(*net.TCPConn).CloseWrite() // nothing more will come
				report(c.ctx, end, c.next())
			})
			h, _ := newH1(t, addr)
			var got1xx []string
			ctx := t.Context()
			if !tc.noHook {
				ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
					Got1xxResponse: func(code int, header textproto.MIMEHeader) error {
						got1xx = append(got1xx, fmt.Sprintf("%d %s", code, header.Get("Link")))
						return nil
					},
				})
			}
			res, err := h.roundTrip(newReq(t, ctx, http.MethodGet, "http://"+addr+"/", ""))
			if tc.wantErr != nil {
				if res != nil {
					res.Body.Close()
					t.Fatalf("got a %d response, want none", res.StatusCode)
				}
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("roundTrip error %v, want %v", err, tc.wantErr)
				}
				if got := recv(t, "the connection to end", end); got != "closed" {
					t.Errorf("upstream saw %q, want the connection closed", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || string(body) != "ok" {
				t.Errorf("final response %d %q, want 200 \"ok\"", res.StatusCode, body)
			}
			if diff := cmp.Diff(tc.want1xx, got1xx); diff != "" {
				t.Errorf("1xx responses seen by the trace (-want +got):\n%s", diff)
			}
			if n := idleCount(h); n != 1 {
				t.Errorf("%d idle connections, want 1", n)
			}
		})
	}
}

var errClientGone = errors.New("client went away")

// A request whose context ends while it waits for the response header
// returns at once with the context's cause.
func TestH1CancelWaitingForHeader(t *testing.T) {
	arrived := make(chan struct{})
	end := make(chan string, 1)
	addr := rawUpstream(t, func(c *rawConn) {
		if _, err := c.readReq(); err != nil {
			return
		}
		close(arrived)
		report(c.ctx, end, c.next()) // never answer
	})
	h, _ := newH1(t, addr)
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	type result struct {
		res *http.Response
		err error
	}
	done := make(chan result, 1)
	req := newReq(t, ctx, http.MethodGet, "http://"+addr+"/slow", "")
	go func() {
		res, err := h.roundTrip(req)
		done <- result{res, err}
	}()
	recv(t, "the request to reach the upstream", arrived)
	cancel(errClientGone)
	r := recv(t, "roundTrip to return after the cancel", done)
	if r.res != nil {
		r.res.Body.Close()
		t.Fatalf("got a %d response, want none", r.res.StatusCode)
	}
	if !errors.Is(r.err, errClientGone) {
		t.Errorf("roundTrip error %v, want it to wrap %v", r.err, errClientGone)
	}
	if got := recv(t, "the connection to end", end); got != "closed" {
		t.Errorf("upstream saw %q, want the connection closed", got)
	}
}

// A request whose context ends while its body is read: the read fails and
// the connection, in the middle of a response, is not reused.
func TestH1CancelReadingBody(t *testing.T) {
	first := make(chan string, 1)
	addr := rawUpstream(t, func(c *rawConn) {
		if c.n > 0 {
			c.echo()
			return
		}
		if _, err := c.readReq(); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
		report(c.ctx, first, c.next()) // the other 90 bytes never come
	})
	h, dials := newH1(t, addr)
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	res, err := h.roundTrip(newReq(t, ctx, http.MethodGet, "http://"+addr+"/slow", ""))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(res.Body, buf); err != nil {
		t.Fatal(err)
	}
	cancel(errClientGone)
	readErr := make(chan error, 1)
	go func() {
		_, err := res.Body.Read(buf)
		readErr <- err
	}()
	// The cause, as http.Transport returns it: ReverseProxy logs a failed
	// copy unless the error is context.Canceled.
	if err := recv(t, "Read to return after the cancel", readErr); !errors.Is(err, errClientGone) {
		t.Errorf("Read after the cancel: %v, want the cancel's cause", err)
	}
	res.Body.Close()
	if got := recv(t, "the first connection to end", first); got != "closed" {
		t.Errorf("first connection saw %q, want it closed", got)
	}
	nextOnNewConn(t, h, dials, addr, "/next")
}

// A context that ends after the body's end but before Close has put the
// connection's deadline in the past: the connection is not kept.
func TestH1CancelAfterBodyEnd(t *testing.T) {
	addr := rawUpstream(t, func(c *rawConn) { c.echo() })
	h, dials := newH1(t, addr)
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	res, err := h.roundTrip(newReq(t, ctx, http.MethodGet, "http://"+addr+"/first", ""))
	if err != nil {
		t.Fatal(err)
	}
	if body, err := io.ReadAll(res.Body); err != nil || string(body) != "c0 GET /first" {
		t.Fatalf("body %q, %v", body, err)
	}
	cancel(errClientGone)
	res.Body.Close()
	nextOnNewConn(t, h, dials, addr, "/next")
}

// A request that would inject header lines, or whose body disagrees with
// its Content-Length (request smuggling, desync), fails before a single
// byte reaches the upstream.
func TestH1HeaderInjection(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		modify func(*http.Request)
	}{
		{name: "header injection via CRLF in a value", modify: func(r *http.Request) {
			r.Header["X-User"] = []string{"alice\r\nX-Admin: true"}
		}},
		{name: "header injection via LF in a value", modify: func(r *http.Request) {
			r.Header["X-User"] = []string{"alice\nX-Admin: true"}
		}},
		{name: "header injection via CRLF in a name", modify: func(r *http.Request) {
			r.Header["X-User: alice\r\nX-Admin"] = []string{"true"}
		}},
		{name: "header name with a space", modify: func(r *http.Request) {
			r.Header["X Admin"] = []string{"true"}
		}},
		{name: "request line injection via the method", modify: func(r *http.Request) {
			r.Method = "GET / HTTP/1.1\r\nX-Admin: true\r\nX:"
		}},
		{name: "request line injection via the query", modify: func(r *http.Request) {
			r.URL.RawQuery = "a=1 HTTP/1.1\r\nX-Admin: true\r\nX:"
		}},
		{name: "request smuggling via a body longer than its Content-Length", body: "data" + "GET /admin HTTP/1.1\r\nHost: x\r\n\r\n",
			modify: func(r *http.Request) { r.ContentLength = 4 }},
		{name: "desync via a body shorter than its Content-Length", body: "data",
			modify: func(r *http.Request) { r.ContentLength = 100 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen := make(chan string, 4)
			addr := rawUpstream(t, func(c *rawConn) {
				buf := make([]byte, 64<<10)
				n, _ := c.br.Read(buf) // whatever comes first, or the end
				if n > 0 {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				}
				report(c.ctx, seen, string(buf[:n]))
			})
			h, dials := newH1(t, addr)
			req := newReq(t, t.Context(), http.MethodPost, "http://"+addr+"/", tc.body)
			tc.modify(req)
			if !fast(req) {
				t.Fatal("fast(req) = false: the test does not reach the h1 client")
			}
			res, err := h.roundTrip(req)
			if err == nil {
				res.Body.Close()
				t.Errorf("roundTrip sent the request: %d", res.StatusCode)
			}
			h.closeIdle()
			for range dials.Load() {
				if got := recv(t, "a connection to end", seen); got != "" {
					t.Errorf("upstream received %q", got)
				}
			}
		})
	}
}

// Responses that have no body by definition (a HEAD, 204, 304) and a
// chunked response with trailers leave the connection clean for the next.
func TestH1ResponsesKeepConnection(t *testing.T) {
	responses := map[string]string{
		"HEAD /head":   "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
		"GET /204":     "HTTP/1.1 204 No Content\r\n\r\n",
		"GET /304":     "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 1000\r\n\r\n",
		"GET /empty":   "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"GET /chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 42\r\n\r\n",
	}
	tests := []struct {
		name, method, path string
		wantStatus         int
		wantBody           string
		wantTrailer        string
	}{
		{"HEAD", http.MethodHead, "/head", 200, "", ""},
		{"204 No Content", http.MethodGet, "/204", 204, "", ""},
		{"304 Not Modified", http.MethodGet, "/304", 304, "", ""},
		{"empty 200", http.MethodGet, "/empty", 200, "", ""},
		{"chunked with trailer", http.MethodGet, "/chunked", 200, "hello world", "42"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := rawUpstream(t, func(c *rawConn) {
				for {
					r, err := c.readReq()
					if err != nil {
						return
					}
					if raw, ok := responses[r]; ok {
						io.WriteString(c, raw)
					} else {
						c.reply(fmt.Sprintf("c%d %s", c.n, r))
					}
				}
			})
			h, dials := newH1(t, addr)
			base := "http://" + addr
			res, err := h.roundTrip(newReq(t, t.Context(), tc.method, base+tc.path, ""))
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			got := []any{res.StatusCode, string(body), res.Trailer.Get("X-Checksum")}
			if diff := cmp.Diff([]any{tc.wantStatus, tc.wantBody, tc.wantTrailer}, got); diff != "" {
				t.Errorf("status, body, trailer (-want +got):\n%s", diff)
			}
			nextRequest(t, h, dials, addr, "/after", 1, 0)
		})
	}
}

func TestFast(t *testing.T) {
	body := func(n int64) func(*http.Request) {
		return func(r *http.Request) {
			r.Body = io.NopCloser(strings.NewReader(strings.Repeat("x", int(max(n, 0)))))
			r.ContentLength = n
		}
	}
	tests := []struct {
		name   string
		modify func(*http.Request)
		want   bool
	}{
		{"nil body", func(*http.Request) {}, true},
		{"http.NoBody", func(r *http.Request) { r.Body = http.NoBody }, true},
		{"Content-Length 1", body(1), true},
		{"Content-Length maxFastBody", body(maxFastBody), true},
		{"Content-Length maxFastBody+1", body(maxFastBody + 1), false},
		{"unknown length -1", body(-1), false},
		{"body with Content-Length 0 (unknown length)", body(0), false},
		{"Upgrade header", func(r *http.Request) { r.Header.Set("Upgrade", "websocket") }, false},
		{"Expect header", func(r *http.Request) { r.Header.Set("Expect", "100-continue") }, false},
		{"request trailer", func(r *http.Request) { r.Trailer = http.Header{"X-Sum": nil} }, false},
		{"Transfer-Encoding chunked", func(r *http.Request) { r.TransferEncoding = []string{"chunked"} }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := http.NewRequest(http.MethodPost, "http://h/", nil)
			if err != nil {
				t.Fatal(err)
			}
			tc.modify(r)
			if got := fast(r); got != tc.want {
				t.Errorf("fast = %v, want %v", got, tc.want)
			}
		})
	}
}

// An idle connection past idleConnTimeout is closed, not used.
func TestH1IdleTimeout(t *testing.T) {
	tests := []struct {
		name string
		idle time.Duration
		want string // which connection answers after the wait
	}{
		{"reused before the timeout", idleConnTimeout - time.Second, "c0 GET /second"},
		{"closed after the timeout", idleConnTimeout + time.Second, "c1 GET /second"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ends := make(chan []string, 2)
			addr := rawUpstream(t, func(c *rawConn) { report(c.ctx, ends, c.echo()) })
			h, _ := newH1(t, addr)
			clock := testclock.New(time.Unix(1000, 0))
			h.now = clock.Now
			base := "http://" + addr
			if got := mustSend(t, h, http.MethodGet, base+"/first", ""); got != "c0 GET /first" {
				t.Fatalf("first response %q", got)
			}
			clock.Advance(tc.idle)
			if got := mustSend(t, h, http.MethodGet, base+"/second", ""); got != tc.want {
				t.Fatalf("second response %q, want %q", got, tc.want)
			}
			if strings.HasPrefix(tc.want, "c1") {
				if diff := cmp.Diff([]string{"GET /first", "closed"}, recv(t, "the expired connection to end", ends)); diff != "" {
					t.Errorf("expired connection (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// put closes the connection that has waited longest once it has waited
// past idleConnTimeout, even if no request comes to find it.
func TestH1PutDropsExpiredConn(t *testing.T) {
	ends := make(chan string, 2)
	addr := rawUpstream(t, func(c *rawConn) {
		log := c.echo()
		report(c.ctx, ends, fmt.Sprintf("c%d %s", c.n, log[len(log)-1]))
	})
	h, dials := newH1(t, addr)
	clock := testclock.New(time.Unix(1000, 0))
	h.now = clock.Now
	base := "http://" + addr
	var open []*http.Response
	for _, path := range []string{"/a", "/b"} {
		res, err := h.roundTrip(newReq(t, t.Context(), http.MethodGet, base+path, ""))
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, res)
	}
	drain := func(res *http.Response) {
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	drain(open[0]) // c0 idle from now
	clock.Advance(idleConnTimeout)
	drain(open[1]) // c1 idle now: c0 has waited the whole timeout
	if got := recv(t, "the expired connection to be closed", ends); got != "c0 closed" {
		t.Errorf("ended: %q, want c0 closed", got)
	}
	nextRequest(t, h, dials, addr, "/c", 1, 1)
}

// A connection given back when maxIdlePerTarget are already idle is closed.
func TestH1MaxIdlePerTarget(t *testing.T) {
	ended := make(chan int, maxIdlePerTarget+1)
	addr := rawUpstream(t, func(c *rawConn) {
		c.echo()
		report(c.ctx, ended, c.n)
	})
	h, dials := newH1(t, addr)
	var open []*http.Response
	for i := range maxIdlePerTarget + 1 {
		res, err := h.roundTrip(newReq(t, t.Context(), http.MethodGet, fmt.Sprintf("http://%s/%d", addr, i), ""))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		open = append(open, res)
	}
	if n := dials.Load(); n != maxIdlePerTarget+1 {
		t.Fatalf("dials = %d, want %d", n, maxIdlePerTarget+1)
	}
	for _, res := range open {
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	if n := idleCount(h); n != maxIdlePerTarget {
		t.Errorf("%d idle connections, want %d", n, maxIdlePerTarget)
	}
	if n := recv(t, "the extra connection to be closed", ended); n != maxIdlePerTarget {
		t.Errorf("closed connection c%d, want the last one given back, c%d", n, maxIdlePerTarget)
	}
}

func TestPoolCloseIdleConnectionsClosesH1(t *testing.T) {
	setup := func(t *testing.T) (*Pool, *h1Conns, <-chan string) {
		ends := make(chan string, 2)
		addr := rawUpstream(t, func(c *rawConn) {
			log := c.echo()
			report(c.ctx, ends, fmt.Sprintf("c%d %s", c.n, log[len(log)-1]))
		})
		pool := mustPool(t, PoolOptions{}, "http://"+addr)
		return pool, pool.targets[0].h1, ends
	}
	get := func(t *testing.T, pool *Pool) *http.Response {
		t.Helper()
		res, err := pool.RoundTrip(newReq(t, t.Context(), http.MethodGet, "/x", ""))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	drain := func(res *http.Response) {
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}

	t.Run("idle connection", func(t *testing.T) {
		pool, h, ends := setup(t)
		drain(get(t, pool))
		if n := idleCount(h); n != 1 {
			t.Fatalf("%d idle connections before, want 1", n)
		}
		pool.CloseIdleConnections()
		if got := recv(t, "the upstream to see the connection closed", ends); got != "c0 closed" {
			t.Errorf("ended: %q, want c0 closed", got)
		}
		if n := idleCount(h); n != 0 {
			t.Errorf("%d idle connections after, want 0", n)
		}
	})

	// A reload closes the old pool's idle connections while some of its
	// responses (streams) are still being read. http.Transport closes the
	// connections that become idle after CloseIdleConnections; a connection
	// kept in the old pool is used by nobody and, with no idle timer, is
	// closed by nobody.
	t.Run("connection leak after reload: given back after CloseIdleConnections", func(t *testing.T) {
		pool, h, ends := setup(t)
		res := get(t, pool)
		pool.CloseIdleConnections()
		drain(res)
		if n := idleCount(h); n != 0 {
			t.Fatalf("%d idle connections in a pool whose idle connections were closed, want 0 (http.Transport closes newly idle connections after CloseIdleConnections)", n)
		}
		if got := recv(t, "the upstream to see the connection closed", ends); got != "c0 closed" {
			t.Errorf("ended: %q, want c0 closed", got)
		}
	})
}

type closeRecorder struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeRecorder) Close() error {
	c.closed.Store(true)
	return nil
}

// Pool is an http.RoundTripper, which "must always close the body,
// including on errors" (http.Transport does, before it returns).
func TestPoolClosesRequestBodyOnError(t *testing.T) {
	live := newServer(t, named("ok"))
	tests := []struct {
		name   string
		target string
		header http.Header
	}{
		{"connection refused", deadURL(t), nil},
		{"invalid header value", live.URL, http.Header{"X-User": {"alice\r\nX-Admin: true"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pool := mustPool(t, PoolOptions{Retries: -1}, tc.target)
			body := &closeRecorder{Reader: strings.NewReader("data")}
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "/x", body)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = 4
			for k, v := range tc.header {
				req.Header[k] = v
			}
			res, err := pool.RoundTrip(req)
			if err == nil {
				res.Body.Close()
				t.Fatal("RoundTrip: no error")
			}
			if !body.closed.Load() {
				t.Errorf("RoundTrip returned %q and left the request body open", err)
			}
		})
	}
}

// A dial failure is the dialer's error, which the pool's retry recognises.
func TestH1DialError(t *testing.T) {
	h, _ := newH1(t, strings.TrimPrefix(deadURL(t), "http://"))
	_, err := h.roundTrip(newReq(t, t.Context(), http.MethodGet, "http://"+h.addr+"/", ""))
	if !neverConnected(err) {
		t.Errorf("roundTrip error %v: not recognised as a dial failure", err)
	}
}

// Through the proxy: a plain GET and a body up to maxFastBody take the h1
// client's one connection; a larger body and a WebSocket go through
// http.Transport, on connections of their own, and still work.
func TestProxyH1AndTransport(t *testing.T) {
	var conns atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) { serveWSEcho(w, r) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %d %x", r.Method, r.URL.Path, len(b), sha256.Sum256(b))
	})
	up := httptestServerWithConnState(t, mux, func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	})
	pool := mustPool(t, PoolOptions{}, up)
	h := pool.targets[0].h1
	front := newFront(t, ProxyOptions{Pool: pool})

	check := func(step string, wantConns int32) {
		t.Helper()
		if n := conns.Load(); n != wantConns {
			t.Errorf("%s: upstream accepted %d connections in all, want %d", step, n, wantConns)
		}
		if n := idleCount(h); n != 1 {
			t.Errorf("%s: h1 client has %d idle connections, want 1", step, n)
		}
	}
	post := func(size int) {
		t.Helper()
		payload := bytes.Repeat([]byte{'x'}, size)
		res, err := front.Client().Post(front.URL+"/upload", "application/octet-stream", bytes.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if want := fmt.Sprintf("POST /upload %d %x", size, sha256.Sum256(payload)); string(got) != want {
			t.Errorf("POST of %d bytes: %d %q, want %q", size, res.StatusCode, got, want)
		}
	}

	if _, body := get(t, front.Client(), front.URL+"/a"); body != fmt.Sprintf("GET /a 0 %x", sha256.Sum256(nil)) {
		t.Errorf("GET: %q", body)
	}
	check("GET", 1)
	post(maxFastBody)
	check("POST of maxFastBody bytes", 1)

	ctx, cancel := context.WithTimeout(t.Context(), waitDeadline)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, wsURL(front.URL), nil)
	if err != nil {
		t.Fatalf("WebSocket through the proxy: %v", err)
	}
	echo(t, ctx, ws, "hello")
	ws.Close(websocket.StatusNormalClosure, "")
	check("WebSocket", 2)

	post(maxFastBody + 1)
	check("POST of maxFastBody+1 bytes", 3)
	if _, body := get(t, front.Client(), front.URL+"/b"); body != fmt.Sprintf("GET /b 0 %x", sha256.Sum256(nil)) {
		t.Errorf("GET: %q", body)
	}
	check("second GET", 3)
}

// Many goroutines share the pool's h1 connections; every response is the
// answer to its own request.
func TestH1Parallel(t *testing.T) {
	up := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Query().Get("id"), b)
	}))
	pool := mustPool(t, PoolOptions{}, up.URL)
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 50 {
				id := fmt.Sprintf("%d-%d", g, i)
				method, body := http.MethodGet, ""
				if i%2 == 1 {
					method, body = http.MethodPost, "body-"+id
				}
				req, err := http.NewRequest(method, "/echo?id="+id, strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				if body == "" {
					req.Body, req.ContentLength = nil, 0
				}
				res, err := pool.RoundTrip(req)
				if err != nil {
					t.Errorf("%s %s: %v", method, id, err)
					return
				}
				got, err := io.ReadAll(res.Body)
				res.Body.Close()
				if want := method + " " + id + " " + body; err != nil || string(got) != want {
					t.Errorf("%s %s: %q, %v; want %q", method, id, got, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := inflight(pool); n != 0 {
		t.Errorf("in flight after every body was closed: %d", n)
	}
	if n := idleCount(pool.targets[0].h1); n == 0 || n > 32 {
		t.Errorf("%d idle connections after 32 goroutines, want 1..32", n)
	}
}

// The sweep closes idle connections the upstream has closed (its keep-alive
// timeout is usually shorter than ours) or that waited past
// idleConnTimeout, keeps live ones, and is scheduled only while any
// connection is idle.
func TestH1Sweep(t *testing.T) {
	tests := []struct {
		name         string
		upstreamEnds bool          // the upstream closes its side after answering
		idle         time.Duration // how long the connection waits before the sweep
		kept         bool
	}{
		{"live connection kept", false, time.Second, true},
		{"connection the upstream closed is closed", true, time.Second, false},
		{"connection idle past the timeout is closed", false, idleConnTimeout, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ends := make(chan string, 1)
			addr := rawUpstream(t, func(c *rawConn) {
				c.answer()
				if tc.upstreamEnds {
					c.Conn.(*net.TCPConn).CloseWrite()
				}
				report(c.ctx, ends, c.next())
			})
			h, _ := newH1(t, addr)
			clock := testclock.New(time.Unix(1000, 0))
			h.now = clock.Now
			if got := mustSend(t, h, http.MethodGet, "http://"+addr+"/", ""); got != "c0 GET /" {
				t.Fatalf("response %q", got)
			}
			h.mu.Lock()
			scheduled := h.sweeping
			h.mu.Unlock()
			if !scheduled {
				t.Fatal("no sweep scheduled with a connection idle")
			}
			if tc.upstreamEnds {
				waitPeekSees(t, h)
			}
			clock.Advance(tc.idle)
			h.sweep()
			h.mu.Lock()
			idle, sweeping := len(h.idle), h.sweeping
			h.mu.Unlock()
			if tc.kept {
				if idle != 1 || !sweeping {
					t.Errorf("after the sweep: %d idle, sweep scheduled %v; want the connection kept and another sweep", idle, sweeping)
				}
				return
			}
			if idle != 0 || sweeping {
				t.Errorf("after the sweep: %d idle, sweep scheduled %v; want none and no further sweep", idle, sweeping)
			}
			if got := recv(t, "the upstream to see the connection end", ends); got != "closed" {
				t.Errorf("upstream saw %q, want the connection closed", got)
			}
		})
	}
}

// A request whose client left (or whose time ran out) before it was sent
// is not sent at all, as with http.Transport: a POST must not run upstream
// while the gateway answers 502, inviting the client to send it again.
// The idle connection stays usable.
func TestH1AlreadyCancelledIsNotSent(t *testing.T) {
	ends := make(chan []string, 1)
	addr := rawUpstream(t, func(c *rawConn) { report(c.ctx, ends, c.echo()) })
	h, dials := newH1(t, addr)
	base := "http://" + addr
	if got := mustSend(t, h, http.MethodGet, base+"/first", ""); got != "c0 GET /first" {
		t.Fatalf("first response %q", got)
	}
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(errClientGone)
	body := &closeRecorder{Reader: strings.NewReader("pay 100")}
	req := newReq(t, ctx, http.MethodPost, base+"/pay", "")
	req.Body, req.ContentLength = body, 7
	res, err := h.roundTrip(req)
	if res != nil {
		res.Body.Close()
		t.Fatalf("got a %d response for a cancelled request", res.StatusCode)
	}
	if !errors.Is(err, errClientGone) {
		t.Errorf("roundTrip error %v, want the cancel's cause", err)
	}
	if !body.closed.Load() {
		t.Error("the request body was not closed")
	}
	if got := mustSend(t, h, http.MethodGet, base+"/third", ""); got != "c0 GET /third" {
		t.Errorf("next request %q, want it on the kept connection", got)
	}
	h.closeIdle()
	if diff := cmp.Diff([]string{"GET /first", "GET /third", "closed"}, recv(t, "the connection to end", ends)); diff != "" {
		t.Errorf("requests the upstream saw (-want +got):\n%s", diff)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("dials = %d, want 1", n)
	}
}

// Slow upload: a client that stops sending its (small) body while the
// request is being written. When the route's time runs out the upstream
// connection is closed at once, so the app is not left waiting for the rest
// of the body until the client gives up.
func TestH1CancelWhileClientBodyStalls(t *testing.T) {
	got := make(chan string, 1)
	addr := rawUpstream(t, func(c *rawConn) { report(c.ctx, got, c.next()) })
	h, _ := newH1(t, addr)
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	req := newReq(t, ctx, http.MethodPost, "http://"+addr+"/upload", "")
	req.Body, req.ContentLength = pr, 10
	done := make(chan error, 1)
	go func() {
		res, err := h.roundTrip(req)
		if res != nil {
			res.Body.Close()
		}
		done <- err
	}()
	if _, err := pw.Write([]byte("01234")); err != nil { // half the body, then silence
		t.Fatal(err)
	}
	cancel(errTimeout)
	// Cut in the headers or in the body: either way no whole request.
	if r := recv(t, "the upstream connection to end", got); r != "closed" && r != io.ErrUnexpectedEOF.Error() {
		t.Errorf("upstream saw %q, want the connection cut", r)
	}
	pw.CloseWithError(errors.New("client went away")) // lets Request.Write return
	if err := recv(t, "roundTrip to return", done); !errors.Is(err, errTimeout) {
		t.Errorf("roundTrip error %v, want the timeout", err)
	}
}

// An empty method means GET, as for http.Transport.
func TestH1EmptyMethod(t *testing.T) {
	addr := rawUpstream(t, func(c *rawConn) { c.echo() })
	h, _ := newH1(t, addr)
	req := newReq(t, t.Context(), http.MethodGet, "http://"+addr+"/x", "")
	req.Method = ""
	res, err := h.roundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "c0 GET /x" {
		t.Errorf("upstream saw %q, want a GET", body)
	}
}

// Response desync with a connection that cannot be peeked at (a custom
// dialer that wraps the connection): bytes the upstream sends while it is
// idle must never be read as the next request's response, so such a
// connection serves one exchange and is closed.
func TestH1UnpeekableConnIsNotReused(t *testing.T) {
	addr := rawUpstream(t, func(c *rawConn) {
		c.answer()
		if c.n == 0 {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
		}
		c.next()
	})
	h, dials := newH1(t, addr)
	dial := h.dial
	h.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return struct{ net.Conn }{nc}, nil // hides syscall.Conn
	}
	base := "http://" + addr
	if got := mustSend(t, h, http.MethodGet, base+"/first", ""); got != "c0 GET /first" {
		t.Fatalf("first response %q", got)
	}
	nextOnNewConn(t, h, dials, addr, "/second")
}

// A GET sent again after a stale connection, whose new connection then
// cannot be made, fails with the dial error, as http.Transport's does: the
// GET is one that may be sent twice, so the pool may give it to another
// target (a dying target's in-flight GETs are not lost; see
// TestDyingTargetInFlightGETsGoToHealthyTarget).
func TestH1ReplayDialErrorIsNeverConnected(t *testing.T) {
	addr := rawUpstream(t, func(c *rawConn) {
		c.answer()
		c.next() // read the second request, close without an answer
	})
	h, dials := newH1(t, addr)
	dial := h.dial
	h.dial = func(ctx context.Context, network, a string) (net.Conn, error) {
		if dials.Load() >= 1 {
			dials.Add(1)
			return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
		}
		return dial(ctx, network, a)
	}
	base := "http://" + addr
	if got := mustSend(t, h, http.MethodGet, base+"/first", ""); got != "c0 GET /first" {
		t.Fatalf("first response %q", got)
	}
	_, err := send(t, h, http.MethodGet, base+"/second", "")
	if err == nil {
		t.Fatal("second request succeeded, want an error")
	}
	if !neverConnected(err) {
		t.Errorf("error %v does not read as never connected (http.Transport's would)", err)
	}
	if n := dials.Load(); n != 2 {
		t.Errorf("dials = %d, want 2 (the first, and the failed one for the replay)", n)
	}
}
