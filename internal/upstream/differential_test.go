package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The README keeps sekisho's own HTTP/1.1 client (h1.go) only while it
// behaves as http.Transport does. These tests run the same exchanges
// through a pool whose target uses the own client and through one that
// uses http.Transport (NewTransport), against the same upstream behaviour,
// and demand the same outcome: the requests the upstream saw, the
// connections it accepted, each response's status, headers, framing, body
// and trailers, the class of any error, and what the pool counted against
// the target.

// diffReq is one request of a differential case.
type diffReq struct {
	method, path, body string
	timeout            time.Duration // 0: waitDeadline
}

// outcome is what a caller of the pool sees of one exchange.
type outcome struct {
	Status           int
	Proto            string
	Header           http.Header
	ContentLength    int64
	TransferEncoding []string
	Body             string
	BodyErr          string // class of the body's read error
	Trailer          http.Header
	Err              string // class of RoundTrip's error
}

// run is everything a differential case compares.
type run struct {
	Outcomes []outcome
	Seen     []string // requests as the upstream read them, by connection
	Conns    int32
	Fails    int32 // failures counted against the target
}

// errClass sorts an error as the comparison sees it.
func errClass(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case neverConnected(err):
		return "dial"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, errUnaskedUpgrade):
		return "unasked upgrade"
	case connClosed(err):
		return "reset"
	}
	return "malformed"
}

// seenLog records what an upstream read, for both runs alike.
type seenLog struct {
	mu   sync.Mutex
	seen []string
}

// take reads one request on c and records it (method, URI, the headers
// that a client chooses, and the body); it returns false when none came.
func (l *seenLog) take(c *rawConn) bool {
	req, err := http.ReadRequest(c.br)
	if err != nil {
		return false
	}
	req.Header.Del("User-Agent")
	req.Host = "upstream" // each run has its own port
	dump, err := httputil.DumpRequest(req, true)
	if err != nil {
		return false
	}
	l.mu.Lock()
	l.seen = append(l.seen, fmt.Sprintf("c%d %s", c.n, dump))
	l.mu.Unlock()
	return true
}

// diffRun sends reqs, in order, through a one-target pool on an upstream
// that serves each connection with serve (nil: nothing listens), using
// the own client or (transport) http.Transport. With refuseAfter > 0, dials
// after the first refuseAfter are refused (the upstream went away).
func diffRun(t *testing.T, serve func(l *seenLog, c *rawConn), reqs []diffReq, transport bool, refuseAfter int32) run {
	t.Helper()
	var l seenLog
	var conns atomic.Int32
	target := deadURL(t)
	if serve != nil {
		target = "http://" + rawUpstream(t, func(c *rawConn) {
			conns.Add(1)
			serve(&l, c)
		})
	}
	tr := NewTransport()
	var dials atomic.Int32
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if n := dials.Add(1); refuseAfter > 0 && n > refuseAfter {
			return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
		}
		return dial(ctx, network, addr)
	}
	pool := mustPool(t, PoolOptions{Retries: -1, MaxFails: 1000, Transport: tr}, target)
	if transport {
		pool.targets[0].h1 = nil
	} else if pool.targets[0].h1 == nil {
		t.Skip("no own HTTP/1.1 client on this system")
	}
	var r run
	for _, dr := range reqs {
		d := dr.timeout
		if d == 0 {
			d = waitDeadline
		}
		ctx, cancel := context.WithTimeout(t.Context(), d)
		var body io.Reader
		if dr.body != "" {
			body = strings.NewReader(dr.body)
		}
		req, err := http.NewRequestWithContext(ctx, dr.method, "/"+strings.TrimPrefix(dr.path, "/"), body)
		if err != nil {
			t.Fatal(err)
		}
		res, err := pool.RoundTrip(req)
		o := outcome{Err: errClass(err)}
		if err == nil {
			var b []byte
			var berr error
			if res.StatusCode != http.StatusSwitchingProtocols { // a 101's body is the connection
				b, berr = io.ReadAll(res.Body)
			}
			res.Body.Close()
			o = outcome{Status: res.StatusCode, Proto: res.Proto, Header: res.Header, ContentLength: res.ContentLength,
				TransferEncoding: res.TransferEncoding, Body: string(b), BodyErr: errClass(berr), Trailer: res.Trailer}
		}
		cancel()
		r.Outcomes = append(r.Outcomes, o)
	}
	pool.CloseIdleConnections()
	r.Conns = conns.Load()
	r.Fails = pool.targets[0].fails.Load()
	l.mu.Lock()
	r.Seen = l.seen
	l.mu.Unlock()
	return r
}

// answering serves each request on a connection with the response that
// respond gives for it (by connection and request number), until the
// connection ends; respond returning "" closes the connection unanswered.
func answering(respond func(conn, i int) string) func(l *seenLog, c *rawConn) {
	return func(l *seenLog, c *rawConn) {
		for i := 0; l.take(c); i++ {
			r := respond(c.n, i)
			if r == "" {
				return
			}
			if _, err := io.WriteString(c, r); err != nil {
				return
			}
		}
	}
}

func always(response string) func(l *seenLog, c *rawConn) {
	return answering(func(int, int) string { return response })
}

// once answers the first request on each connection with response, then
// closes it.
func once(response string) func(l *seenLog, c *rawConn) {
	return func(l *seenLog, c *rawConn) {
		if l.take(c) {
			io.WriteString(c, response)
		}
	}
}

const ok5 = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-App: a\r\n\r\nhello"

func TestH1MatchesTransport(t *testing.T) {
	get := []diffReq{{method: http.MethodGet, path: "/a"}}
	gets := func(n int) []diffReq {
		var rs []diffReq
		for i := range n {
			rs = append(rs, diffReq{method: http.MethodGet, path: fmt.Sprintf("/r%d", i)})
		}
		return rs
	}
	tests := []struct {
		name  string
		serve func(l *seenLog, c *rawConn) // nil: dial refused
		reqs  []diffReq
	}{
		{"normal", always(ok5), get},
		{"keep-alive reuse", answering(func(conn, i int) string {
			return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nc%di%d", conn, i)
		}), gets(3)},
		{"POST body on a kept-alive connection", always(ok5),
			[]diffReq{{method: http.MethodPost, path: "/p", body: "pay 100"}, {method: http.MethodPut, path: "/q", body: "x"}}},
		{"Connection: close response", always("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"), gets(2)},
		{"HTTP/1.0 body until close", once("HTTP/1.0 200 OK\r\n\r\nuntil the end"), gets(2)},
		{"closed before response", once(""), get},
		{"reset before response", func(l *seenLog, c *rawConn) {
			if l.take(c) {
				c.Conn.(*net.TCPConn).SetLinger(0)
			}
		}, get},
		{"stale kept-alive connection, GET sent again", answering(func(conn, i int) string {
			if conn == 0 && i == 1 {
				return ""
			}
			return ok5
		}), gets(2)},
		{"stale kept-alive connection, POST not sent again", answering(func(conn, i int) string {
			if conn == 0 && i == 1 {
				return ""
			}
			return ok5
		}), []diffReq{{method: http.MethodGet, path: "/a"}, {method: http.MethodPost, path: "/b", body: "once"}}},
		{"stale connection, new one closed too", answering(func(conn, i int) string {
			if conn > 0 || i == 1 {
				return ""
			}
			return ok5
		}), gets(2)},
		{"stale connection, then dial refused", answering(func(conn, i int) string {
			if i == 1 {
				return ""
			}
			return ok5
		}), gets(2)},
		{"malformed status line", always("SSH-2.0-OpenSSH\r\n\r\n"), get},
		{"malformed status code", always("HTTP/1.1 2x0 OK\r\n\r\n"), get},
		{"malformed header line", always("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"), get},
		{"malformed Content-Length", always("HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\nhello"), get},
		{"two Content-Lengths", always("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"), get},
		{"dial refused", nil, get},
		{"1xx before the response", always("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n" + ok5), gets(2)},
		{"many 1xx before the response", always(strings.Repeat("HTTP/1.1 102 Processing\r\n\r\n", 50) + ok5), get},
		{"101 nobody asked for", always("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"), get},
		{"chunked with trailer", always("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n"), gets(2)},
		{"malformed chunk size", once("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"), gets(2)},
		{"chunked body cut short", once("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"), get},
		{"Content-Length longer than the body", once("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"), gets(2)},
		{"Content-Length shorter than the body", always("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhello"), gets(2)},
		{"Transfer-Encoding and Content-Length", always("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"), gets(2)},
		{"HEAD with Content-Length", answering(func(_, i int) string {
			if i == 0 {
				return "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
			}
			return ok5
		}),
			[]diffReq{{method: http.MethodHead, path: "/h"}, {method: http.MethodGet, path: "/g"}}},
		{"204 and 304 without bodies", answering(func(_, i int) string {
			return [...]string{"HTTP/1.1 204 No Content\r\n\r\n", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", ok5}[i%3]
		}), gets(3)},
		{"response header too large", always("HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", maxResponseHeaderBytes) + "\r\n\r\n"), get},
		{"upstream never answers", func(l *seenLog, c *rawConn) {
			if l.take(c) {
				<-c.ctx.Done()
			}
		}, []diffReq{{method: http.MethodGet, path: "/slow", timeout: 200 * time.Millisecond}}},
	}
	// The cases whose upstream goes away: dials after these many are refused.
	refuseAfter := map[string]int32{"stale connection, then dial refused": 1}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			own := diffRun(t, tc.serve, tc.reqs, false, refuseAfter[tc.name])
			std := diffRun(t, tc.serve, tc.reqs, true, refuseAfter[tc.name])
			if diff := cmp.Diff(std, own); diff != "" {
				t.Errorf("own client differs from http.Transport (-Transport +own):\n%s", diff)
			}
		})
	}
}

// FuzzH1MatchesTransport sends a GET to an upstream that answers with the
// fuzzed bytes and closes; the own client and http.Transport must agree.
func FuzzH1MatchesTransport(f *testing.F) {
	for _, seed := range []string{
		ok5,
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\n" + ok5,
		"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nbody",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nlonger" + ok5,
		"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\nabc",
		"garbage",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, response []byte) {
		serve := once(string(response))
		reqs := []diffReq{{method: http.MethodGet, path: "/f", timeout: 5 * time.Second}}
		own := diffRun(t, serve, reqs, false, 0)
		std := diffRun(t, serve, reqs, true, 0)
		if diff := cmp.Diff(std, own); diff != "" {
			t.Errorf("response %q: own client differs from http.Transport (-Transport +own):\n%s", response, diff)
		}
	})
}
