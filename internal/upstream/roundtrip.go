package upstream

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
)

// RoundTrip sends req to an available target of the pool. req.URL supplies
// the path and query; the target supplies scheme, host and base path. If
// req.Host is "", the Host header is the target's host.
//
// A request whose connection was never established counts as a failure of
// that target (see PoolOptions.MaxFails) and, if idempotent, is retried on
// another target (PoolOptions.Retries). Requests that reached an upstream are
// never retried here. When no target is available at all the error wraps
// [ErrNoHealthyUpstream]; when the targets tried all failed, it is the last
// transport error. The target counts as in flight until the response
// body is closed; a 101 response keeps its body an [io.ReadWriteCloser].
//
// Only failures the upstream caused count against a target: not a failed
// read of req's body (the error is a [*RequestBodyError]), not req's
// context ending (client gone, the proxy's timeouts), not a request that
// is invalid before it is sent, and not a dial that failed for lack of the
// gateway's own file descriptors or memory (the error wraps
// [ErrGatewayOverloaded]; it is not retried). A 101 response to a request
// that asked for no upgrade is the upstream's failure: its connection is
// closed and the error is returned instead.
func (p *Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	return p.roundTrip(req, false)
}

// roundTrip is RoundTrip. With owned, req is the caller's own copy that
// nobody reads after the exchange (ReverseProxy's outbound request), so the
// first attempt aims it at the target in place instead of copying it;
// RoundTrip's callers keep the RoundTripper contract (req is not modified).
func (p *Pool) roundTrip(req *http.Request, owned bool) (*http.Response, error) {
	retryable := p.retries > 0 && isIdempotent(req) &&
		(req.Body == nil || req.Body == http.NoBody || req.GetBody != nil)
	path := req.URL // the client's path and query, joined to each target's base
	var tried []*target
	var lastErr error
	for attempt := 0; ; attempt++ {
		t := p.pick(tried)
		if t == nil {
			if lastErr != nil {
				return nil, lastErr // every target tried refused: a bad gateway
			}
			return nil, fmt.Errorf("upstream pool %q: %w", p.name, ErrNoHealthyUpstream)
		}
		out := req
		if owned && attempt == 0 {
			req.URL = joinURL(t.url, path)
		} else {
			var err error
			if out, err = p.outRequest(req, path, t, attempt); err != nil {
				return nil, err
			}
		}
		if p.header != nil {
			name, value, err := p.header(req.Context(), t.url)
			if err != nil {
				closeRequestBody(out)
				return nil, fmt.Errorf("upstream pool %q: %w", p.name, err) // the gateway's failure, not the target's
			}
			if out != req {
				out.Header = out.Header.Clone() // req is the caller's
			}
			out.Header.Set(name, value)
		}
		var body *clientBody
		out.Body, body = watchBody(out.Body)
		t.inflight.Add(1)
		var res *http.Response
		var err error
		if t.h1 != nil && fast(out) {
			res, err = t.h1.roundTrip(out)
		} else if err = validRequest(out); err != nil {
			closeRequestBody(out)
			t.inflight.Add(-1)
			return nil, err // nothing was sent: no target's fault
		} else {
			res, err = p.transport.RoundTrip(out)
		}
		if err == nil && res.StatusCode == http.StatusSwitchingProtocols && upgradeType(out.Header) == "" {
			res.Body.Close()
			res, err = nil, errUnaskedUpgrade
		}
		if err == nil {
			p.succeeded(t)
			res.Body = countBody(res.Body, t)
			return res, nil
		}
		t.inflight.Add(-1)
		if be := body.err(); be != nil {
			// The client's body failed: whatever the transport made of
			// it, not the target's fault.
			return nil, be
		}
		if req.Context().Err() != nil {
			// The caller gave up (client gone, timeout): not the target's fault.
			return nil, err
		}
		if errors.Is(err, errInvalidRequest) {
			return nil, err
		}
		if body.unfinished() && !neverConnected(err) {
			p.log.Debug("upstream request failed while the client was still sending its body: not counted", "target", t.url.String(), "error", err)
			return nil, err
		}
		if gatewayOverloaded(err) {
			p.log.Error("cannot connect to an upstream: the gateway is out of resources", "target", t.url.String(), "error", err)
			return nil, fmt.Errorf("upstream pool %q: %w: %w", p.name, ErrGatewayOverloaded, err)
		}
		p.failed(t, err)
		if !neverConnected(err) || !retryable || attempt >= p.retries {
			return nil, err
		}
		p.log.Debug("retrying on another target", "target", t.url.String(), "error", err)
		lastErr = err
		tried = append(tried, t)
	}
}

// outRequest is a shallow copy of req aimed at t, with path joined to t's
// base path. The headers are shared: neither the pool nor the transport
// modifies them.
func (p *Pool) outRequest(req *http.Request, path *url.URL, t *target, attempt int) (*http.Request, error) {
	out := new(http.Request)
	*out = *req
	out.URL = joinURL(t.url, path)
	if attempt > 0 && req.Body != nil && req.Body != http.NoBody {
		body, err := req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("upstream pool %q: request body for retry: %w", p.name, err)
		}
		out.Body = body
	}
	return out, nil
}

// isIdempotent reports whether req may be sent twice (RFC 9110 section 9.2.2),
// counting an Idempotency-Key header as net/http's Transport does.
func isIdempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return hasIdempotencyKey(req.Header)
}

// hasIdempotencyKey reports whether h carries an Idempotency-Key (or
// X-Idempotency-Key) header, which net/http's Transport also counts as
// making a request safe to send twice.
func hasIdempotencyKey(h http.Header) bool {
	return h["Idempotency-Key"] != nil || h["X-Idempotency-Key"] != nil
}

// neverConnected reports whether err says no connection to the upstream was
// established, so nothing of the request was sent.
func neverConnected(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// ownedPool is a Pool as the proxy's transport: ReverseProxy hands every
// RoundTrip a fresh outbound request of its own.
type ownedPool struct{ *Pool }

func (o ownedPool) RoundTrip(req *http.Request) (*http.Response, error) {
	return o.roundTrip(req, true)
}

// joinURL returns target with req's path joined to its base path (keeping
// RawPath consistent) and req's query.
func joinURL(target, req *url.URL) *url.URL {
	u := *target
	u.RawQuery = req.RawQuery
	if target.Path == "" || target.Path == "/" && target.RawPath == "" {
		u.Path, u.RawPath = req.Path, req.RawPath
		if u.Path == "" {
			u.Path = "/"
		}
		return &u
	}
	u.Path, u.RawPath = joinURLPath(target, req)
	return &u
}

// joinURLPath is net/http/httputil's: it joins a's and b's paths with one
// slash, and their escaped forms when either has a RawPath.
func joinURLPath(a, b *url.URL) (path, rawpath string) {
	if a.RawPath == "" && b.RawPath == "" {
		return singleJoiningSlash(a.Path, b.Path), ""
	}
	apath := a.EscapedPath()
	bpath := b.EscapedPath()
	aslash := strings.HasSuffix(apath, "/")
	bslash := strings.HasPrefix(bpath, "/")
	switch {
	case aslash && bslash:
		return a.Path + b.Path[1:], apath + bpath[1:]
	case !aslash && !bslash:
		return a.Path + "/" + b.Path, apath + "/" + bpath
	}
	return a.Path + b.Path, apath + bpath
}

func singleJoiningSlash(a, b string) string {
	aslash := strings.HasSuffix(a, "/")
	bslash := strings.HasPrefix(b, "/")
	switch {
	case aslash && bslash:
		return a + b[1:]
	case !aslash && !bslash:
		return a + "/" + b
	}
	return a + b
}

// countBody wraps a response body so the target's in-flight count drops
// when it is closed. A 101 body stays an io.ReadWriteCloser.
func countBody(body io.ReadCloser, t *target) io.ReadCloser {
	cb := &countedBody{ReadCloser: body, t: t}
	if rwc, ok := body.(io.ReadWriteCloser); ok {
		return &countedRWC{countedBody: cb, w: rwc}
	}
	return cb
}

type countedBody struct {
	io.ReadCloser
	t      *target
	closed atomic.Bool
}

func (b *countedBody) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.t.inflight.Add(-1)
	}
	return b.ReadCloser.Close()
}

type countedRWC struct {
	*countedBody
	w io.Writer
}

func (b *countedRWC) Write(p []byte) (int, error) { return b.w.Write(p) }

// CloseWrite half-closes the upgraded connection, as the transport's own
// 101 body does, so ReverseProxy can propagate a half-close.
func (b *countedRWC) CloseWrite() error { return closeWrite(b.w) }

func closeWrite(w io.Writer) error {
	if cw, ok := w.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("CloseWrite: %w", http.ErrNotSupported)
}
