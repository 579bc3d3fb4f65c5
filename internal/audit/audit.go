// Package audit writes one JSON line per request decision: who asked for
// what, what sekisho decided and why, and what came back. Lines never carry
// credentials: the query string, cookies and authorization headers are not
// part of an Entry at all, so nothing has to remember to redact them.
package audit

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Entry is one decision.
type Entry struct {
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	Route     string    `json:"route,omitempty"`
	Host      string    `json:"host"`
	Method    string    `json:"method"`
	// Path is the normalised path, without the query (which may carry tokens).
	Path     string `json:"path"`
	ClientIP string `json:"client_ip"`
	// User, Kind and Provider describe the identity; empty when anonymous.
	User     string `json:"user,omitempty"`
	Kind     string `json:"identity_kind,omitempty"`
	Provider string `json:"provider,omitempty"`
	// Decision is "allow", "deny", "login" (sent to sign in), or "gateway"
	// (a request for sekisho itself, such as sign-in).
	Decision string `json:"decision"`
	Reason   string `json:"reason"`
	// Rule names the security rule that decided, when one did; Preview marks
	// a rule that only logged what it would have done.
	Rule     string `json:"rule,omitempty"`
	Preview  bool   `json:"preview,omitempty"`
	Status   int    `json:"status"`
	Bytes    int64  `json:"bytes"`
	Duration int64  `json:"duration_us"`
	Upstream string `json:"upstream_error,omitempty"`
}

// Logger writes entries as JSON lines. Safe for concurrent use.
//
// A request never waits for the disk or the pipe behind the log: Log only
// appends the line to a buffer in memory, and a writer goroutine hands the
// buffer to the underlying writer once it holds FlushSize bytes (or half
// of a smaller MaxPending), at least every FlushEvery, and on Flush and
// Close (so a busy gateway makes one system call per batch, not per
// request). A crash (not a shutdown) can
// therefore lose the lines of the last FlushEvery.
//
// When the writer fails (disk full, a closed pipe) the unwritten lines are
// kept and retried with a growing pause (100 ms up to 5 s), from the exact
// byte where the failed write stopped, so a line is never written twice
// nor torn; the failure is logged once at ERROR (then at most once a
// minute), the recovery at INFO, and Healthy reports it. At most
// Options.MaxPending bytes wait: then Log waits for room (requests wait),
// or with Options.Drop the new line is dropped and counted.
type Logger struct {
	max int // Options.MaxPending
	// flushAt is how many buffered bytes wake the writer: FlushSize, or
	// half of a smaller max, so that Log does not wait for the ticker.
	flushAt int
	drop    bool // Options.Drop
	log     *slog.Logger
	// retryMin, retryMax bound the pause between attempts while failing;
	// closeWait bounds Close.
	retryMin, retryMax, closeWait time.Duration

	mu sync.Mutex
	// buf holds the lines not yet taken by a write; spare is the other
	// buffer, back from the writer (nil while a write holds it).
	buf, spare []byte
	// pendingBytes and pendingLines count what is logged but not yet
	// written: buf and the unwritten rest of the batch in flight. A line
	// written in part counts until its newline is written.
	pendingBytes, pendingLines int
	// room is signalled when bytes were written: Logs waiting at max go on.
	room *sync.Cond
	// waiting counts the Logs waiting for room.
	waiting int
	closed  bool
	failing bool  // the last write failed and lines wait
	lastErr error // the last write error while failing

	// writeMu serializes writes to w (the writer goroutine's, Flush's,
	// Switch's and Close's) and guards what follows.
	writeMu sync.Mutex
	w       io.Writer
	closer  io.Closer
	// out is the batch being written, out[off:] what is left of it.
	out []byte
	off int
	// tornSize is the file's size after a write that stopped mid-line, -1
	// when none did (or the writer cannot tell its size): a smaller size
	// on the retry means the file was truncated under us (copytruncate).
	tornSize       int64
	failedAt       time.Time // when the current failure started
	reportedAt     time.Time // when it was last logged
	droppedAtStart uint64    // dropped when the failure started

	dropped, writeErrors atomic.Uint64
	// dropReportedAt is when a dropped line was last logged (unix ns).
	dropReportedAt atomic.Int64

	kick     chan struct{} // buf passed FlushSize
	wake     chan struct{} // Switch: retry now, not after the pause
	done     chan struct{}
	stopped  sync.WaitGroup
	closeMu  sync.Mutex
	closeErr error
	isClosed bool
}

// Options tune a Logger. The zero value is the default.
type Options struct {
	// MaxPending is how many bytes of unwritten lines may wait (the writer
	// fails or falls behind) before Log waits or drops. 0: MaxBuffered.
	MaxPending int
	// Drop makes Log drop a line, and count it, when MaxPending bytes
	// wait, instead of waiting for room (audit.on_failure:
	// drop_and_count). false (the default): Log waits, and so does the
	// request that logs, so no decision is lost (audit.on_failure: block).
	Drop bool
	// Logger receives the operational messages: write failures, recovery,
	// dropped lines, lines lost at Close. nil: slog.Default().
	Logger *slog.Logger
	// CloseTimeout bounds how long Close keeps retrying to write the lines
	// still waiting; what is unwritten then is lost, logged and reported
	// in Close's error. 0: 5 seconds.
	CloseTimeout time.Duration

	// retryMin and retryMax override the pause between retries (tests).
	retryMin, retryMax time.Duration
}

// FlushEvery bounds how long a line may sit in the buffer.
const FlushEvery = 200 * time.Millisecond

// FlushSize is how many buffered bytes make the writer write at once.
const FlushSize = 64 << 10

// MaxBuffered is the default bound on unwritten bytes (Options.MaxPending).
const MaxBuffered = 8 << 20

// Pauses between attempts to write while the writer fails: from
// RetryFirst, doubled after each failure, up to RetryMax.
const (
	RetryFirst = 100 * time.Millisecond
	RetryMax   = 5 * time.Second
)

// DefaultCloseTimeout is Options.CloseTimeout's default.
const DefaultCloseTimeout = 5 * time.Second

// Intervals between repeated messages about one ongoing condition.
const (
	failureReportEvery = time.Minute
	dropReportEvery    = 10 * time.Second
)

// maxKeptBuffer is the largest buffer kept for reuse after a write; a
// buffer that grew while the writer was slow is let go.
const maxKeptBuffer = 4 * FlushSize

// New returns a Logger writing to w with the default Options; if w is an
// io.Closer, Close closes it.
func New(w io.Writer) *Logger { return NewWithOptions(w, Options{}) }

// NewWithOptions returns a Logger writing to w; if w is an io.Closer, Close
// closes it.
func NewWithOptions(w io.Writer, o Options) *Logger {
	l := &Logger{
		max: o.MaxPending, drop: o.Drop, log: o.Logger,
		retryMin: o.retryMin, retryMax: o.retryMax, closeWait: o.CloseTimeout,
		w: w, closer: closerOf(w), tornSize: -1,
		kick: make(chan struct{}, 1), wake: make(chan struct{}, 1), done: make(chan struct{}),
		buf: make([]byte, 0, FlushSize+FlushSize/4), spare: make([]byte, 0, FlushSize+FlushSize/4),
	}
	if l.max <= 0 {
		l.max = MaxBuffered
	}
	l.flushAt = min(FlushSize, l.max/2)
	if l.log == nil {
		l.log = slog.Default()
	}
	if l.retryMin <= 0 {
		l.retryMin = RetryFirst
	}
	if l.retryMax < l.retryMin {
		l.retryMax = max(RetryMax, l.retryMin)
	}
	if l.closeWait <= 0 {
		l.closeWait = DefaultCloseTimeout
	}
	l.room = sync.NewCond(&l.mu)
	l.stopped.Add(1)
	go l.writer()
	return l
}

func closerOf(w io.Writer) io.Closer {
	if c, ok := w.(io.Closer); ok {
		return c
	}
	return nil
}

// Log writes one entry as the line json.Marshal(e) would give, without its
// reflection and allocations. Errors writing the log are not the request's
// problem: they are retried, logged and reported by Healthy and Stats. A
// decision is never left out of the log: an entry whose Time has no RFC
// 3339 form (a year outside 0-9999, a zone offset of a day or more: a
// broken clock) is written with the time of writing instead.
//
// While MaxPending bytes wait, Log waits for room (the request waits) or,
// with Options.Drop, drops the line and counts it. After Close, the line
// is dropped and counted.
func (l *Logger) Log(e *Entry) {
	if l == nil {
		return
	}
	// Encode outside the lock: the lock is held only to copy the line in,
	// so neither other requests nor the writer wait on an encoding.
	sp := scratchPool.Get().(*[]byte)
	b, err := appendEntry((*sp)[:0], e)
	if err != nil {
		fixed := *e
		fixed.Time = time.Now().UTC()
		if b, err = appendEntry((*sp)[:0], &fixed); err != nil {
			fixed.Time = time.Time{}
			b, _ = appendEntry((*sp)[:0], &fixed)
		}
	}
	b = append(b, '\n')

	l.mu.Lock()
	full := func() bool { return l.pendingBytes > 0 && l.pendingBytes+len(b) > l.max }
	if !l.drop {
		for full() && !l.closed {
			l.waiting++
			l.room.Wait()
			l.waiting--
		}
	}
	dropped := l.closed || full()
	if !dropped {
		l.buf = append(l.buf, b...)
		l.pendingBytes += len(b)
		l.pendingLines++
	}
	kick := len(l.buf) >= l.flushAt
	l.mu.Unlock()

	if cap(b) <= maxKeptLine {
		*sp = b
		scratchPool.Put(sp)
	}
	if dropped {
		l.dropped1()
		return
	}
	if kick {
		select {
		case l.kick <- struct{}{}:
		default: // a kick is pending already
		}
	}
}

// dropped1 counts a dropped line and says so, at most every dropReportEvery.
func (l *Logger) dropped1() {
	n := l.dropped.Add(1)
	now := time.Now().UnixNano()
	last := l.dropReportedAt.Load()
	if last != 0 && now-last < int64(dropReportEvery) || !l.dropReportedAt.CompareAndSwap(last, now) {
		return
	}
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		l.log.Error("audit line dropped: the audit log is closed", "dropped_total", n)
		return
	}
	l.log.Error("audit line dropped: the unwritten audit lines fill audit.max_pending (audit.on_failure: drop_and_count)",
		"dropped_total", n, "max_pending", l.max)
}

// maxKeptLine is the largest line buffer kept for the next line; the
// buffer of a rare huge line (a long path or reason) is let go.
const maxKeptLine = 16 << 10

var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Stats is a snapshot of the Logger's counters, for metrics.
type Stats struct {
	// PendingLines and PendingBytes are logged but not yet written.
	PendingLines, PendingBytes int
	// Dropped counts the lines dropped since New: refused at MaxPending
	// with Options.Drop, logged after Close, or unwritten at Close.
	Dropped uint64
	// WriteErrors counts the failed writes since New (each retry counts).
	WriteErrors uint64
	// Failing is true while the last write failed and lines wait.
	Failing bool
}

// Stats returns the current counters.
func (l *Logger) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{PendingLines: l.pendingLines, PendingBytes: l.pendingBytes,
		Dropped: l.dropped.Load(), WriteErrors: l.writeErrors.Load(), Failing: l.failing}
}

// ErrUnhealthy is what Healthy's errors wrap.
var ErrUnhealthy = errors.New("audit log cannot be written")

// Healthy returns nil while lines reach the output. It returns an error
// (wrapping ErrUnhealthy, naming the cause, which may hold a file path:
// internal detail) while lines wait because the last write failed, while
// requests wait for room, or while the unwritten lines fill seven eighths
// of MaxPending (the output does not keep up). A nil Logger is healthy.
func (l *Logger) Healthy() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.failing:
		return fmt.Errorf("%w: %d lines waiting: %v", ErrUnhealthy, l.pendingLines, l.lastErr)
	case l.waiting > 0 || l.pendingBytes >= l.max-l.max/8:
		return fmt.Errorf("%w: the output does not keep up: %d of %d bytes waiting", ErrUnhealthy, l.pendingBytes, l.max)
	}
	return nil
}
