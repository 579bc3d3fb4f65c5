package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults applied by [NewProxy] when a field is zero.
const (
	DefaultTimeout           = 300 * time.Second
	DefaultStreamIdleTimeout = 5 * time.Minute
)

// ErrorHeader marks responses the proxy made itself (502/503/504), so they
// are never mistaken for the app's. The default error handler sets it to
// "upstream".
const ErrorHeader = "X-Sekisho-Error"

// DefaultStreamTypes are the response media types treated as streams when
// ProxyOptions.StreamTypes is nil: Server-Sent Events and newline-delimited
// JSON (Ollama-style token streams).
var DefaultStreamTypes = []string{"text/event-stream", "application/x-ndjson"}

// ProxyOptions configures the handler made by [NewProxy]. Zero values mean
// the documented defaults.
type ProxyOptions struct {
	// Pool picks the upstream target. A nil Pool answers every request 503.
	Pool *Pool
	// Timeout is the total time for a normal response, from the request
	// until its body is fully copied; on expiry before the response headers
	// the client gets 504, after them the response is cut (aborted with
	// http.ErrAbortHandler, so a truncated body never looks whole). It does
	// not apply once the response is known to be a stream: a 101 upgrade or
	// a media type in StreamTypes. 0 means DefaultTimeout (300s); negative
	// means none.
	Timeout time.Duration
	// StreamIdleTimeout ends a stream that carries no bytes (either way, for
	// an upgrade) for this long: a Server-Sent Events response ends normally
	// (the client sees the end of the stream and may reconnect), a WebSocket
	// is closed. 0 means DefaultStreamIdleTimeout (5m); negative means none.
	StreamIdleTimeout time.Duration
	// StreamTypes are the response media types that make a stream. nil means
	// DefaultStreamTypes; an empty non-nil slice means only upgrades.
	StreamTypes []string
	// PreserveHost sends the client's Host header upstream. false: the
	// Host header is the target's host.
	PreserveHost bool
	// Rewrite is the caller's hook on the outbound request: strip client
	// headers, add identity headers, SetXForwarded, change the path. It runs
	// before the target is picked (a retry may pick another): Out.URL has the
	// client's path and query, which the pool joins with the target's base
	// path; Out.Host is "" (the target's host) unless PreserveHost is set;
	// set it to send another Host. nil means nothing more is done.
	Rewrite func(*httputil.ProxyRequest)
	// ModifyResponse is the caller's hook on the upstream response, called
	// after stream detection; an error answers 502. nil means none.
	ModifyResponse func(*http.Response) error
	// Upgrades are the protocols a client may switch a request to
	// (Upgrade header tokens, compared case-insensitively by name; a
	// version after "/" is ignored). nil means DefaultUpgrades (WebSocket
	// only); an empty non-nil slice means none. A request that offers only
	// other protocols goes upstream as an ordinary request, its Upgrade
	// header and the "upgrade" token of Connection removed (as nginx does).
	// "h2c" is never relayed, even if listed (it would let the upstream
	// serve HTTP/2 requests inside the tunnel, past the gateway's checks),
	// and HTTP2-Settings is always removed; see CheckUpgrades. A 101
	// response is relayed only for the protocol the request asked for; any
	// other 101 is answered 502 and its upstream connection closed.
	Upgrades []string
	// BodyTimeout and BodyMinRate bound how slowly a client may send its
	// request body: every window of BodyTimeout from the start must carry
	// at least BodyMinRate×BodyTimeout bytes (the rate averaged over the
	// window; a burst never buys credit for a later trickle). When a window
	// falls short the proxy stops reading the body, aborts the upstream
	// request (its connection is closed) and answers 408 through
	// ErrorHandler with an error wrapping ErrBodyTooSlow; it does not count
	// against the target. BodyTimeout 0 means
	// DefaultBodyTimeout (30s), negative means no body deadline at all.
	// BodyMinRate 0 means DefaultBodyMinRate (1024 bytes/s), negative means
	// the whole body within BodyTimeout.
	BodyTimeout time.Duration
	BodyMinRate int64
	// ErrorHandler writes the answer when no upstream response can be
	// relayed: status is 502 (refused, reset, malformed response), 503
	// (err wraps ErrNoHealthyUpstream, or ErrGatewayOverloaded), 504
	// (Timeout passed, dial timeout), or the client's failure: 400 (a
	// malformed request body), 408 (a body too slow, err wraps
	// ErrBodyTooSlow, or timed out), 413 (a body over an
	// http.MaxBytesReader limit) and StatusClientClosedRequest (499: the
	// client left before the answer; nothing reaches it). The client's
	// failures never count against a target and are logged at Debug; log
	// them as the client's. r is the client's request as the proxy received
	// it (its context and headers carry the request id). nil means a
	// plain-text status line with ErrorHeader set.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, status int, err error)
	// Logger receives proxy errors. nil discards.
	Logger *slog.Logger
	// OnStream, when set, is called once a response is recognised as a
	// stream (a 101 upgrade or one of the stream types) with the client's
	// request and end, which ends the stream as the idle timeout does (an
	// event stream finishes cleanly, an upgraded connection is closed)
	// with cause as the request context's cause. It returns what to call
	// when the stream is over (nil: nothing). The gateway tracks open
	// streams with it, to end those whose user no longer has access after
	// a config reload. It must not block.
	OnStream func(r *http.Request, end func(cause error)) (done func())
}

// Causes of the proxy's own cancellations.
var (
	errTimeout     = errors.New("upstream timeout")
	errIdleTimeout = errors.New("upstream stream idle timeout")
)

// Request phases, to settle the race between the total timeout and the
// response being recognised as a stream.
const (
	phasePending int32 = iota
	phaseStream
	phaseTimedOut
)

type stateKey struct{}

// reqState is one request's proxy state. It is the outbound request's
// context too: ctx (the cancellable one) answers everything but stateKey,
// which saves a context.WithValue per request.
type reqState struct {
	in     *http.Request // the client's request
	ctx    context.Context
	cancel context.CancelCauseFunc
	// timer is the total timeout's; nil without one.
	timer *time.Timer
	// body is the request body's deadline; nil without one.
	body  *rateBody
	phase atomic.Int32
	// streamDone is OnStream's result, called at the end; nil: none.
	streamDone func()
}

type proxy struct {
	rp           *httputil.ReverseProxy
	pool         *Pool
	timeout      time.Duration
	idle         time.Duration
	bodyTimeout  time.Duration // <= 0: none
	bodyMinRate  int64         // <= 0: the deadline does not move
	upgrades     upgradeFilter
	streamTypes  []string
	preserveHost bool
	rewrite      func(*httputil.ProxyRequest)
	modify       func(*http.Response) error
	onStream     func(*http.Request, func(error)) func()
	onError      func(http.ResponseWriter, *http.Request, int, error)
	log          *slog.Logger
}

// NewProxy returns a streaming reverse proxy to opts.Pool. Responses of
// type text/event-stream and bodies of unknown length are flushed as they
// arrive; WebSocket upgrades (and those in opts.Upgrades) are relayed,
// others are sent as ordinary requests. When the client's
// request context is cancelled (client gone, server shutdown) a stream ends
// normally and an upgraded connection is closed; the handler returns.
func NewProxy(opts ProxyOptions) http.Handler {
	h := &proxy{
		pool:         opts.Pool,
		timeout:      opts.Timeout,
		idle:         opts.StreamIdleTimeout,
		bodyTimeout:  opts.BodyTimeout,
		bodyMinRate:  opts.BodyMinRate,
		streamTypes:  opts.StreamTypes,
		preserveHost: opts.PreserveHost,
		rewrite:      opts.Rewrite,
		modify:       opts.ModifyResponse,
		onStream:     opts.OnStream,
		onError:      opts.ErrorHandler,
		log:          opts.Logger,
	}
	if h.timeout == 0 {
		h.timeout = DefaultTimeout
	}
	if h.idle == 0 {
		h.idle = DefaultStreamIdleTimeout
	}
	if h.bodyTimeout == 0 {
		h.bodyTimeout = DefaultBodyTimeout
	}
	if h.bodyMinRate == 0 {
		h.bodyMinRate = DefaultBodyMinRate
	}
	if h.streamTypes == nil {
		h.streamTypes = DefaultStreamTypes
	}
	if h.onError == nil {
		h.onError = plainError
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.log = h.log.With("component", "proxy")
	var err error
	if h.upgrades, err = newUpgradeFilter(opts.Upgrades); err != nil {
		h.log.Error("upgrades left out", "error", err)
	}
	var rt http.RoundTripper = noPool{}
	if h.pool != nil {
		rt = ownedPool{h.pool}
		h.log = h.log.With("pool", h.pool.name)
	}
	h.rp = &httputil.ReverseProxy{
		Rewrite:        h.rewriteRequest,
		Transport:      rt,
		ModifyResponse: h.modifyResponse,
		ErrorHandler:   h.errorHandler,
		ErrorLog:       slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
		BufferPool:     newBufferPool(),
	}
	return h
}

// ServeHTTP forwards r. Like the pipeline's, its frame stays small: a
// stream's connection goroutine waits under it for the stream's whole life
// (see route.Pipeline.ServeHTTP), so the request's state is set up in begin.
func (h *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st, out := h.begin(w, r)
	defer st.end()
	h.rp.ServeHTTP(w, out)
}

// begin makes the request's state: the context that the proxy's timeouts
// cancel, the total timeout's timer, the request body's deadline, and the
// request handed to ReverseProxy, whose context carries them. end releases
// them.
//
//go:noinline
func (h *proxy) begin(w http.ResponseWriter, r *http.Request) (*reqState, *http.Request) {
	ctx, cancel := context.WithCancelCause(r.Context())
	st := &reqState{in: r, ctx: ctx, cancel: cancel}
	if h.timeout > 0 {
		st.timer = time.AfterFunc(h.timeout, func() {
			if st.phase.CompareAndSwap(phasePending, phaseTimedOut) {
				cancel(errTimeout)
			}
		})
	}
	out := r.WithContext(st)
	if h.bodyTimeout > 0 && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		st.body = newRateBody(r.Body, w, h.bodyTimeout, h.bodyMinRate, cancel)
		out.Body = st.body
	}
	return st, out
}

// Deadline, Done, Err and Value make reqState a context.
func (st *reqState) Deadline() (time.Time, bool) { return st.ctx.Deadline() }
func (st *reqState) Done() <-chan struct{}       { return st.ctx.Done() }
func (st *reqState) Err() error                  { return st.ctx.Err() }
func (st *reqState) Value(k any) any {
	if k == (stateKey{}) {
		return st
	}
	return st.ctx.Value(k)
}

func (st *reqState) end() {
	if st.timer != nil {
		st.timer.Stop()
	}
	if st.body != nil {
		st.body.stop()
	}
	if st.streamDone != nil {
		st.streamDone()
	}
	st.cancel(nil)
}

func (h *proxy) rewriteRequest(pr *httputil.ProxyRequest) {
	if h.preserveHost {
		pr.Out.Host = pr.In.Host
	} else {
		pr.Out.Host = ""
	}
	if h.rewrite != nil {
		h.rewrite(pr)
	}
	// After the caller's hook, so that nothing it does can relay an
	// upgrade the route does not allow.
	h.upgrades.apply(pr.Out.Header)
}

func (h *proxy) modifyResponse(res *http.Response) error {
	if st, ok := res.Request.Context().Value(stateKey{}).(*reqState); ok && h.isStream(res) {
		if !st.phase.CompareAndSwap(phasePending, phaseStream) {
			return errTimeout
		}
		if res.StatusCode == http.StatusSwitchingProtocols {
			// ReverseProxy would refuse a mismatch without closing the
			// body. The request's Upgrade is an allowed one (or none):
			// the upgrade filter made it so.
			want, got := upgradeType(res.Request.Header), upgradeType(res.Header)
			if want == "" {
				return fmt.Errorf("upstream switched to protocol %q for a request that asked for no allowed upgrade", got)
			}
			if !strings.EqualFold(want, got) {
				return fmt.Errorf("upstream switched to protocol %q when %q was requested", got, want)
			}
		}
		res.Body = h.streamBody(res.Body, st)
		if h.onStream != nil {
			st.streamDone = h.onStream(st.in, st.cancel)
		}
	}
	if h.modify != nil {
		return h.modify(res)
	}
	return nil
}

func (h *proxy) isStream(res *http.Response) bool {
	if res.StatusCode == http.StatusSwitchingProtocols {
		return true
	}
	ct := res.Header.Get("Content-Type")
	if ct == "" {
		return false
	}
	// Most responses are not streams: a prefix check spares them the
	// allocation of a full media-type parse.
	candidate := false
	for _, s := range h.streamTypes {
		if len(ct) >= len(s) && strings.EqualFold(ct[:len(s)], s) {
			candidate = true
			break
		}
	}
	if !candidate {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	for _, s := range h.streamTypes {
		if strings.EqualFold(mt, s) {
			return true
		}
	}
	return false
}

func (h *proxy) errorHandler(w http.ResponseWriter, out *http.Request, err error) {
	in := out
	st, _ := out.Context().Value(stateKey{}).(*reqState)
	if st != nil {
		in = st.in
	}
	status, client, err := errorStatus(st, in, out.Context(), err)
	switch {
	case client:
		h.log.Debug("client's request failed", "method", in.Method, "path", in.URL.Path, "status", status, "error", err)
	case errors.Is(err, ErrGatewayOverloaded):
		h.log.Error("upstream request failed", "method", in.Method, "path", in.URL.Path, "status", status, "error", err)
	default:
		h.log.Warn("upstream request failed", "method", in.Method, "path", in.URL.Path, "status", status, "error", err)
	}
	h.onError(w, in, status, err)
}

// errorStatus maps a failed upstream exchange to the status for the
// ErrorHandler, and the error to hand it; client reports that the client
// caused the failure (see ProxyOptions.ErrorHandler). st is nil for a
// request the proxy did not begin.
func errorStatus(st *reqState, in *http.Request, ctx context.Context, err error) (status int, client bool, _ error) {
	var be *RequestBodyError
	switch {
	case st != nil && errors.Is(context.Cause(st.ctx), ErrBodyTooSlow):
		return http.StatusRequestTimeout, true, context.Cause(st.ctx)
	case errors.As(err, &be):
		return be.Status(), true, err
	case in.Context().Err() != nil:
		return StatusClientClosedRequest, true, err
	}
	return upstreamStatus(ctx, err), false, err
}

// upstreamStatus maps a failed upstream exchange to 502, 503 or 504.
func upstreamStatus(ctx context.Context, err error) int {
	if errors.Is(err, ErrNoHealthyUpstream) || errors.Is(err, ErrGatewayOverloaded) {
		return http.StatusServiceUnavailable
	}
	if errors.Is(err, errTimeout) || errors.Is(context.Cause(ctx), errTimeout) ||
		errors.Is(err, context.DeadlineExceeded) {
		return http.StatusGatewayTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

func plainError(w http.ResponseWriter, _ *http.Request, status int, _ error) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(ErrorHeader, "upstream")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, http.StatusText(status)+"\n")
}

// noPool is the transport of a proxy without a pool.
type noPool struct{}

func (noPool) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, ErrNoHealthyUpstream
}

func upgradeType(h http.Header) string {
	for _, v := range h.Values("Connection") {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return h.Get("Upgrade")
			}
		}
	}
	return ""
}

// bufferPool recycles ReverseProxy's 32 KiB copy buffers.
type bufferPool struct{ p sync.Pool }

// copyBufferSize is the copy buffer a response holds while it streams. An
// idle SSE stream keeps its buffer for hours, so it is small: 8 KiB moves
// tokens and ordinary pages alike, at a quarter of ReverseProxy's 32 KiB.
const copyBufferSize = 8 << 10

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([copyBufferSize]byte) }}}
}

func (b *bufferPool) Get() []byte { return b.p.Get().(*[copyBufferSize]byte)[:] }

// Put takes back a buffer Get gave out. The pool holds array pointers, so
// putting one back allocates nothing; a slice of another size is dropped.
func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(buf[:copyBufferSize]))
	}
}
