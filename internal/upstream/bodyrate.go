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
	// DefaultBodyTimeout is the window over which a request body's rate is
	// measured.
	DefaultBodyTimeout = 30 * time.Second
	// DefaultBodyMinRate is the slowest request body, in bytes per second,
	// averaged over each window.
	DefaultBodyMinRate = 1024
)

// rateBody is a client's request body that must keep arriving: in every
// window of timeout from the start, at least rate×timeout bytes (rate
// averaged over the window; a body that ends within a window is done). A
// burst never buys credit for a later trickle, so a client that sends
// 300 KB up front and then a byte a second is cut at the end of the next
// window, not after minutes (as mod_reqtimeout's start+timeout+bytes/rate
// would allow). With rate 0 the whole body must arrive within timeout.
// When a window falls short, a read blocked on the client is ended (the
// connection's read deadline), the outbound request is cancelled with a
// cause wrapping ErrBodyTooSlow (which closes the upstream connection), and
// every further read returns that cause.
//
// Reads only count bytes: the timer fires at each window's end and compares
// the count with the one at the window's start.
type rateBody struct {
	rc       io.ReadCloser
	start    time.Time
	timeout  time.Duration
	rate     int64 // bytes per second; 0: the whole body within timeout
	received atomic.Int64
	// windowStart is received at the current window's start (timer only).
	windowStart int64

	// mu orders the timer's expiry against the body's end and the
	// request's end (stop): once stopped, the timer touches nothing (the
	// connection may be serving the next request by then).
	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
	err     error // set at expiry: wraps ErrBodyTooSlow
	expired atomic.Bool
	// w is the client's response writer, whose connection gets a read
	// deadline at expiry to end a read blocked on the client (a
	// ResponseController made only then); cancel cancels the
	// outbound request with the given cause.
	w      http.ResponseWriter
	cancel func(error)
}

// newRateBody wraps body. w's connection gets a read deadline at expiry, to
// end a read blocked on the client; cancel is the request's cancel.
func newRateBody(body io.ReadCloser, w http.ResponseWriter, timeout time.Duration, rate int64, cancel func(error)) *rateBody {
	b := &rateBody{rc: body, start: time.Now(), timeout: timeout, rate: rate, cancel: cancel, w: w}
	b.timer = time.AfterFunc(timeout, b.check)
	return b
}

// windowMin is the bytes a window must carry: rate×timeout, at least 1.
func (b *rateBody) windowMin() int64 {
	return max(1, int64(float64(b.rate)*b.timeout.Seconds()))
}

// check runs at each window's end: it starts the next window if this one
// carried enough, else it expires the body.
func (b *rateBody) check() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	now := time.Now()
	n := b.received.Load()
	got := n - b.windowStart
	if b.rate > 0 && got >= b.windowMin() {
		b.windowStart = n
		b.timer.Reset(b.timeout)
		return
	}
	b.stopped = true
	min := fmt.Sprintf("the whole body within %v", b.timeout)
	if b.rate > 0 {
		min = fmt.Sprintf("%d bytes in the last %v, minimum %d bytes/s", got, b.timeout, b.rate)
	}
	b.err = fmt.Errorf("%w: %d bytes in %v (%s)", ErrBodyTooSlow, n, now.Sub(b.start).Round(time.Millisecond), min)
	b.expired.Store(true)
	_ = http.NewResponseController(b.w).SetReadDeadline(time.Now())
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
