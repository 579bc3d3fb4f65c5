package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1Conns is sekisho's own HTTP/1.1 client for one plain-http target: a
// stack of idle keep-alive connections and an exchange that runs on the
// calling goroutine.
//
// Why not http.Transport for these: the Transport gives every connection a
// reader and a writer goroutine and hands each request and response between
// them and the caller over channels. For a proxy whose requests are small
// and whose upstream sits next to it, those hand-offs cost about a quarter
// of a bare ReverseProxy's CPU per request, a third of its user-space
// instructions (bench/README.md), and the two goroutines cost every open
// stream their stacks. Here the caller writes the request and
// reads the response itself; an idle connection has no goroutine.
//
// The wire format is net/http's own: [http.Request.Write] writes the request
// (the function the Transport uses) and [http.ReadResponse] parses the
// response (likewise), so both the request that leaves and the way a
// response is framed are exactly the Transport's. What the Transport adds
// around them is kept: header names and values are validated before
// anything is sent, a request whose context has already ended is not
// sent, response headers are limited (maxResponseHeaderBytes), 1xx
// responses are passed to the request's httptrace hook (ReverseProxy
// forwards 103 Early Hints that way; as with the Transport, each one
// delivered starts the header limit afresh, and without a hook they count
// against it), a connection is reused only when its response was read to
// the end and neither side asked to close it, an idle connection that the
// upstream closed (or that has bytes nobody asked for) is not reused, and a
// request that found a stale keep-alive connection is sent once more on a
// new one when that is safe.
//
// It runs where an idle connection can be peeked at without reading it
// (Unix: h1Supported); a connection that offers no file descriptor (a
// custom dialer's wrapper) is used for one exchange and closed.
//
// Requests it does not take, which the pool sends through http.Transport
// instead (see fast): https targets, upgrades (WebSocket), Expect:
// 100-continue, request trailers, and bodies of unknown length or larger
// than maxFastBody. A body is written whole before the response is read, so
// only a body that fits in the sockets' buffers is sent this way: an
// upstream that answers early without reading it cannot leave the exchange
// stuck.
type h1Conns struct {
	addr string
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	now  func() time.Time

	mu sync.Mutex
	// idle is a stack: idle[len-1] was used last, idle[0] has waited longest.
	idle []*h1Conn
	// closing is set by closeIdle and cleared by the next request: until
	// then a connection given back (a stream that outlived a reload) is
	// closed, not kept, as http.Transport does after CloseIdleConnections.
	closing bool
	// sweeping is set while a sweep is scheduled (see sweep).
	sweeping bool
}

const (
	// maxIdlePerTarget is how many idle connections a target keeps, as
	// http.Transport's MaxIdleConnsPerHost in NewTransport.
	maxIdlePerTarget = 256
	// idleConnTimeout closes a connection idle longer, as NewTransport's
	// IdleConnTimeout.
	idleConnTimeout = 90 * time.Second
	// maxResponseHeaderBytes limits what is read before the response's
	// header ends (NewTransport sets the same): from the request, or from
	// the last 1xx response delivered to the request's httptrace hook.
	maxResponseHeaderBytes = 1 << 20
	// maxFastBody is the largest request body (with a known length) sent on
	// the calling goroutine; see h1Conns.
	maxFastBody = 64 << 10
	// sweepEvery is how often the idle connections are checked while there
	// are any (see sweep).
	sweepEvery = 15 * time.Second
)

// errResponseHeaderTooLarge and errUnaskedUpgrade are the upstream's fault:
// 502. errInvalidRequest is wrapped by the refusal of a request that is not
// valid on the wire (validRequest): nothing was sent, so it is nobody
// upstream's fault.
var (
	errResponseHeaderTooLarge = fmt.Errorf("upstream response header is larger than %d bytes", maxResponseHeaderBytes)
	errUnaskedUpgrade         = errors.New("upstream switched protocols for a request that asked for no upgrade")
	errInvalidRequest         = errors.New("net/http: invalid request")
)

// fast reports whether req may be sent by an h1Conns (see there).
func fast(req *http.Request) bool {
	h := req.Header
	if h["Upgrade"] != nil || h["Expect"] != nil || req.Trailer != nil || len(req.TransferEncoding) != 0 {
		return false
	}
	return req.Body == nil || req.Body == http.NoBody || req.ContentLength > 0 && req.ContentLength <= maxFastBody
}

// h1Conn is one connection to the target.
type h1Conn struct {
	nc net.Conn
	// raw peeks at the idle connection (idleConnUsable); nil when the
	// connection has no file descriptor to peek at.
	raw syscall.RawConn
	// lr is what br reads through: it counts the bytes of the exchange and
	// stops the response header at maxResponseHeaderBytes.
	lr        limitedConn
	br        *bufio.Reader
	idleSince time.Time
}

// limitedConn reads from a connection, at most n bytes while n >= 0.
type limitedConn struct {
	nc   net.Conn
	n    int64 // -1: no limit
	read int64 // bytes read since the exchange began
}

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.n == 0 {
		return 0, errResponseHeaderTooLarge
	}
	if l.n > 0 && int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.nc.Read(p)
	l.read += int64(n)
	if l.n > 0 {
		l.n -= int64(n)
	}
	return n, err
}

var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

// roundTrip sends req on an idle connection, or a new one, and returns the
// response. The response body gives the connection back when it has been
// read to the end and closed. A dial error is returned as the dialer's
// (*net.OpError with Op "dial", which the pool's retry recognises), also
// when it came after a stale kept-alive connection: the request sent
// again then is one that may be sent twice (replayable), as
// http.Transport's is, and like the Transport's error, the pool may send
// it to another target.
func (h *h1Conns) roundTrip(req *http.Request) (*http.Response, error) {
	if err := validRequest(req); err != nil {
		closeRequestBody(req)
		return nil, err
	}
	ctx := req.Context()
	for replay := false; ; replay = true {
		// Like http.Transport: a request whose client left, or whose time
		// ran out, before it went out is not sent at all.
		if ctx.Err() != nil {
			closeRequestBody(req)
			return nil, fmt.Errorf("upstream request: %w", context.Cause(ctx))
		}
		c, reused, err := h.get(ctx)
		if err != nil {
			closeRequestBody(req)
			if replay {
				// Still the dial error to the pool, as http.Transport's
				// would be: the request may have reached the upstream on
				// the stale connection, but it is replayable, so another
				// target may take it (the pool's retry wants no more).
				return nil, fmt.Errorf("upstream closed a kept-alive connection, and a new one failed: %w", err)
			}
			return nil, err
		}
		res, stale, err := h.exchange(ctx, c, req)
		if err == nil {
			return res, nil
		}
		// The upstream closed a kept-alive connection as the request went
		// out on it. Like http.Transport, send it again (on the next idle
		// connection or a new one) when that cannot do anything twice. A
		// new connection's failure is final.
		if reused && stale && replayable(req) && ctx.Err() == nil {
			continue
		}
		return nil, err
	}
}

// closeRequestBody closes req's body when the request fails before
// Request.Write (which closes it) ran: a RoundTripper always closes it.
func closeRequestBody(req *http.Request) {
	if req.Body != nil && req.Body != http.NoBody {
		req.Body.Close()
	}
}

// validRequest refuses what http.Transport refuses before sending: a
// method, header name or header value that is not valid on the wire.
func validRequest(req *http.Request) error {
	if req.Method != "" && !httpguts.ValidHeaderFieldName(req.Method) {
		return fmt.Errorf("%w: method %q", errInvalidRequest, req.Method)
	}
	for k, vs := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("%w: header field name %q", errInvalidRequest, k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("%w: header field value for %q", errInvalidRequest, k)
			}
		}
	}
	return nil
}

// replayable reports whether req may be sent twice: http.Transport's rule,
// a method that changes nothing (or an idempotency key) and no body.
func replayable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return hasIdempotencyKey(req.Header)
}

// get returns the connection used last, if it is still good, or dials.
func (h *h1Conns) get(ctx context.Context) (*h1Conn, bool, error) {
	for {
		h.mu.Lock()
		h.closing = false
		n := len(h.idle)
		if n == 0 {
			h.mu.Unlock()
			break
		}
		c := h.idle[n-1]
		h.idle[n-1] = nil
		h.idle = h.idle[:n-1]
		h.mu.Unlock()
		if c.usable(h.now()) {
			return c, true, nil
		}
		c.nc.Close()
	}
	nc, err := h.dial(ctx, "tcp", h.addr)
	if err != nil {
		return nil, false, err
	}
	c := &h1Conn{nc: nc, lr: limitedConn{nc: nc, n: -1}}
	c.br = bufio.NewReaderSize(&c.lr, 4<<10)
	if sc, ok := nc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	return c, false, nil
}

// usable reports whether the idle connection c may carry a request at now:
// it has not waited past idleConnTimeout, and the upstream has neither
// closed it nor written to it (idleConnUsable).
func (c *h1Conn) usable(now time.Time) bool {
	return now.Sub(c.idleSince) < idleConnTimeout && idleConnUsable(c.raw)
}

// put keeps c for the next request, and closes the connection that has
// waited longest if it has waited past idleConnTimeout.
func (h *h1Conns) put(c *h1Conn) {
	c.idleSince = h.now()
	var drop *h1Conn
	h.mu.Lock()
	switch {
	case h.closing || len(h.idle) >= maxIdlePerTarget:
		drop = c
	case len(h.idle) > 0 && c.idleSince.Sub(h.idle[0].idleSince) >= idleConnTimeout:
		drop = h.idle[0]
		copy(h.idle, h.idle[1:])
		h.idle[len(h.idle)-1] = c
	default:
		h.idle = append(h.idle, c)
		if !h.sweeping {
			h.sweeping = true
			time.AfterFunc(sweepEvery, h.sweep)
		}
	}
	h.mu.Unlock()
	if drop != nil {
		drop.nc.Close()
	}
}

// sweep closes the idle connections that the upstream closed or wrote to,
// or that waited past idleConnTimeout, and runs again in sweepEvery while
// any are left. An upstream's keep-alive timeout is usually shorter than
// idleConnTimeout: without the sweep, the connections it closed would wait
// half-closed on sekisho's side until the next request (http.Transport's
// reader goroutine notices at once; the sweep, within sweepEvery).
func (h *h1Conns) sweep() {
	now := h.now()
	var drop []*h1Conn
	h.mu.Lock()
	kept := h.idle[:0]
	for _, c := range h.idle {
		if c.usable(now) {
			kept = append(kept, c)
		} else {
			drop = append(drop, c)
		}
	}
	clear(h.idle[len(kept):])
	h.idle = kept
	h.sweeping = len(kept) > 0
	if h.sweeping {
		time.AfterFunc(sweepEvery, h.sweep)
	}
	h.mu.Unlock()
	for _, c := range drop {
		c.nc.Close()
	}
}

// closeIdle closes every idle connection, and those given back before the
// next request.
func (h *h1Conns) closeIdle() {
	h.mu.Lock()
	idle := h.idle
	h.idle, h.closing = nil, true
	h.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
}

// exchange writes req on c and reads the response's header. stale reports
// that the connection turned out closed before any byte of a response came
// back (the request may be sent again on a new one, see roundTrip).
func (h *h1Conns) exchange(ctx context.Context, c *h1Conn, req *http.Request) (res *http.Response, stale bool, err error) {
	// Cancellation (client gone, the route's timeout) closes the
	// connection: a blocked write or read ends, and the upstream sees the
	// request abandoned at once (even while Request.Write waits for a slow
	// client's body). Such a connection is never reused.
	stop := func() bool { return true }
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { c.nc.Close() })
	}
	fail := func(err error) (*http.Response, bool, error) {
		stop()
		c.nc.Close()
		if ctx.Err() != nil {
			return nil, false, fmt.Errorf("upstream request: %w", context.Cause(ctx))
		}
		return nil, c.lr.read == 0 && connClosed(err), err
	}
	c.lr.read, c.lr.n = 0, -1
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(c.nc)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	writerPool.Put(bw)
	if err != nil {
		return fail(err)
	}
	c.lr.n = maxResponseHeaderBytes
	trace := httptrace.ContextClientTrace(ctx)
	for {
		res, err = http.ReadResponse(c.br, req)
		if err != nil {
			return fail(err)
		}
		code := res.StatusCode
		if code < 100 || code > 199 {
			break
		}
		if code == http.StatusSwitchingProtocols {
			return fail(errUnaskedUpgrade)
		}
		if trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(res.Header)); err != nil {
				return fail(err)
			}
			// Delivered: whoever took it limits how many (http.Transport
			// does the same); undelivered ones share the one limit.
			c.lr.n = maxResponseHeaderBytes
		}
	}
	c.lr.n = -1
	b := &h1Body{rc: res.Body, c: c, h: h, ctx: ctx, stop: stop, keep: !res.Close && !req.Close && c.raw != nil}
	if res.Body == http.NoBody {
		b.eof.Store(true)
	}
	res.Body = b
	return res, false, nil
}

// connClosed reports whether err says the peer had closed the connection.
func connClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// h1Body is a response body that gives its connection back when it was
// read to the end, and closes it otherwise.
type h1Body struct {
	rc   io.ReadCloser
	c    *h1Conn
	h    *h1Conns
	ctx  context.Context
	stop func() bool
	keep bool
	// eof is set once Read has returned io.EOF.
	eof    atomic.Bool
	closed atomic.Bool
}

// Read reads the body. After cancellation it returns the context's cause,
// as http.Transport does (ReverseProxy logs a failed copy unless the error
// is context.Canceled), not the closed connection's error.
func (b *h1Body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.eof.Store(true)
	case err != nil && b.ctx.Err() != nil:
		err = context.Cause(b.ctx)
	}
	return n, err
}

// Close gives the connection back for reuse when the body was read to its
// end, the exchange was not cancelled, neither side asked to close and
// nothing follows the response; otherwise it closes the connection. It
// never reads what is left of the body (net/http's own Close would read an
// unfinished body to its end, which for a stream is never).
func (b *h1Body) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	if !b.eof.Load() {
		b.stop()
		return b.c.nc.Close()
	}
	err := b.rc.Close()
	if b.stop() && b.keep && err == nil && b.c.br.Buffered() == 0 {
		b.h.put(b.c)
		return nil
	}
	b.c.nc.Close()
	return err
}
