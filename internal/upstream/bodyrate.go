package upstream

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults applied by [NewProxy] when ProxyOptions.BodyTimeout or
// BodyMinRate is zero.
const (
	// DefaultBodyTimeout is the time a client has to send its request body,
	// before the minimum rate extends it.
	DefaultBodyTimeout = 30 * time.Second
	// DefaultBodyMinRate is the slowest request body, in bytes per second,
	// that keeps extending the body deadline.
	DefaultBodyMinRate = 1024
)

// rateBody is a client's request body that must arrive by a deadline
// (mod_reqtimeout's body=Timeout,MinRate=Rate): start + timeout +
// received/rate, each byte received extending it by 1/rate seconds. When
// the deadline passes, a read blocked on the client is ended (the
// connection's read deadline), the outbound request is cancelled with a
// cause wrapping ErrBodyTooSlow (which closes the upstream connection), and
// every further read returns that cause.
//
// Reads only count bytes: the timer, set for the deadline as it stood, looks
// at the count when it fires and sets itself again if the bytes that came
// since moved the deadline on.
type rateBody struct {
	rc       io.ReadCloser
	start    time.Time
	timeout  time.Duration
	rate     int64 // bytes per second; 0: the deadline never moves
	received atomic.Int64

	// mu orders the timer's expiry against the body's end and the
	// request's end (stop): once stopped, the timer touches nothing (the
	// connection may be serving the next request by then).
	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
	err     error // set at expiry: wraps ErrBodyTooSlow
	expired atomic.Bool
	// unblock ends a read blocked on the client; cancel cancels the
	// outbound request with the given cause.
	unblock func()
	cancel  func(error)
}

// newRateBody wraps body. w's connection gets a read deadline at expiry, to
// end a read blocked on the client; cancel is the request's cancel.
func newRateBody(body io.ReadCloser, w http.ResponseWriter, timeout time.Duration, rate int64, cancel func(error)) *rateBody {
	b := &rateBody{rc: body, start: time.Now(), timeout: timeout, rate: rate, cancel: cancel}
	rc := http.NewResponseController(w)
	b.unblock = func() { _ = rc.SetReadDeadline(time.Now()) }
	b.timer = time.AfterFunc(timeout, b.check)
	return b
}

// deadline is start + timeout + received/rate.
func (b *rateBody) deadline() time.Time {
	d := b.start.Add(b.timeout)
	if b.rate <= 0 {
		return d
	}
	n := b.received.Load()
	secs := n / b.rate
	const maxSecs = int64(100 * 365 * 24 * 3600) // a century: no overflow
	if secs > maxSecs {
		return d.Add(time.Duration(maxSecs) * time.Second)
	}
	return d.Add(time.Duration(secs)*time.Second + time.Duration(n%b.rate)*time.Second/time.Duration(b.rate))
}

// check runs when the timer fires: it expires the body, or sets the timer
// for the deadline the bytes received since have moved it to.
func (b *rateBody) check() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	now := time.Now()
	if left := b.deadline().Sub(now); left > 0 {
		b.timer.Reset(left)
		return
	}
	b.stopped = true
	min := "no minimum rate"
	if b.rate > 0 {
		min = fmt.Sprintf("minimum %d bytes/s after %v", b.rate, b.timeout)
	}
	b.err = fmt.Errorf("%w: %d bytes in %v (%s)", ErrBodyTooSlow, b.received.Load(), now.Sub(b.start).Round(time.Millisecond), min)
	b.expired.Store(true)
	b.unblock()
	b.cancel(b.err)
}

// stop ends the deadline: the body was read to its end, or the request is
// over. It waits for an expiry in progress.
func (b *rateBody) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped = true
	b.timer.Stop()
}

func (b *rateBody) Read(p []byte) (int, error) {
	if b.expired.Load() {
		return 0, b.tooSlow()
	}
	n, err := b.rc.Read(p)
	if n > 0 {
		b.received.Add(int64(n))
	}
	if b.expired.Load() {
		// The read was ended by the expiry (or raced it): the client's
		// slowness is the cause, not the read deadline's timeout.
		return n, b.tooSlow()
	}
	if err == io.EOF {
		b.stop()
	}
	return n, err
}

func (b *rateBody) tooSlow() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func (b *rateBody) Close() error { return b.rc.Close() }
