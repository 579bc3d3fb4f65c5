package upstream

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
)

// Which side a failed exchange is blamed on. Only a failure the upstream
// caused counts against its target (PoolOptions.MaxFails): a client's
// malformed, aborted or too slow request body, a client that left, and the
// gateway running out of its own resources never eject a target, or anyone
// could eject a healthy target for everybody with a few bad uploads.

// StatusClientClosedRequest is the status the proxy hands its ErrorHandler
// when the client went away before the upstream's answer could be relayed
// (nginx's 499). Nothing reaches the client; it is for the log and audit
// line, which should file it as the client's doing, not the upstream's.
const StatusClientClosedRequest = 499

// ErrBodyTooSlow is the cause when a client sends its request body slower
// than the proxy's minimum rate (ProxyOptions.BodyTimeout, BodyMinRate).
// The proxy answers 408.
var ErrBodyTooSlow = errors.New("client sent the request body too slowly")

// ErrGatewayOverloaded is wrapped by the error of a request that could not
// be sent because the gateway itself ran out of file descriptors, socket
// buffers or memory while dialing. It does not count against the target and
// is not retried; the proxy answers 503.
var ErrGatewayOverloaded = errors.New("gateway out of resources (file descriptors, socket buffers or memory)")

// RequestBodyError is returned by [Pool.RoundTrip] when reading the
// client's request body failed while it was being sent upstream: malformed
// chunking, a client that left mid-body, a read timeout, a size limit. It is
// the client's failure, never counted against the target, whichever client
// (sekisho's own or http.Transport) carried the request. Err is the body's
// read error.
type RequestBodyError struct{ Err error }

func (e *RequestBodyError) Error() string {
	return "reading the client's request body: " + e.Err.Error()
}

func (e *RequestBodyError) Unwrap() error { return e.Err }

// Status is the answer the proxy gives for e: 408 for a body too slow or
// timed out, 413 for one over an http.MaxBytesReader limit,
// StatusClientClosedRequest for a client that left mid-body, 400 for a
// malformed one.
func (e *RequestBodyError) Status() int {
	var tooBig *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.Is(e.Err, ErrBodyTooSlow):
		return http.StatusRequestTimeout
	case errors.As(e.Err, &tooBig):
		return http.StatusRequestEntityTooLarge
	case errors.As(e.Err, &ne) && ne.Timeout():
		return http.StatusRequestTimeout
	case clientGone(e.Err):
		return StatusClientClosedRequest
	}
	return http.StatusBadRequest
}

// clientGone reports whether a read error of the client's body says the
// client's connection ended (the server reports a body cut short as
// io.ErrUnexpectedEOF).
func clientGone(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrBodyReadAfterClose)
}

// clientBody is a request body that remembers its first read error, so
// that the pool can tell a client's failure from the upstream's however the
// client that carried it reported it (http.Transport may return a closed
// connection's error rather than the body's).
type clientBody struct {
	rc     io.ReadCloser
	failed atomic.Pointer[RequestBodyError]
	// done is set once the body was read to its end.
	done atomic.Bool
}

// watchBody wraps body in a clientBody; nil and http.NoBody stay as they
// are (the transports treat them as "no body").
func watchBody(body io.ReadCloser) (io.ReadCloser, *clientBody) {
	if body == nil || body == http.NoBody {
		return body, nil
	}
	cb := &clientBody{rc: body}
	return cb, cb
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		e := &RequestBodyError{Err: err}
		if !b.failed.CompareAndSwap(nil, e) {
			e = b.failed.Load()
		}
		return n, e
	}
	if err == io.EOF {
		b.done.Store(true)
	}
	return n, err
}

// unfinished reports whether the body was still being read: the exchange
// failed while the client was sending, so who was slow or broken cannot be
// told apart (an app that gives up on a slow upload resets the connection
// just like a failing one). Such a failure is not counted against the
// target; active health checks still see a broken one.
func (b *clientBody) unfinished() bool { return b != nil && !b.done.Load() }

func (b *clientBody) Close() error { return b.rc.Close() }

// err is the body's first read error, nil if none.
func (b *clientBody) err() *RequestBodyError {
	if b == nil {
		return nil
	}
	return b.failed.Load()
}

// gatewayOverloaded reports whether err is a dial that failed for lack of
// the gateway's own resources: not the target's fault.
func gatewayOverloaded(err error) bool {
	return neverConnected(err) && (errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.EADDRNOTAVAIL)) // no local port left
}
