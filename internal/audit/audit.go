// Package audit writes one JSON line per request decision: who asked for
// what, what sekisho decided and why, and what came back. Lines never carry
// credentials: the query string, cookies and authorization headers are not
// part of an Entry at all, so nothing has to remember to redact them.
package audit

import (
	"io"
	"sync"
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
// buffer to the underlying writer once it holds FlushSize bytes, at least
// every FlushEvery, and on Flush and Close (so a busy gateway makes one
// system call per batch, not per request). A line is never dropped: should
// the writer fall so far behind that MaxBuffered bytes wait, Log waits for
// it (back-pressure) rather than lose a decision or grow without bound.
type Logger struct {
	mu sync.Mutex
	// buf holds the lines not yet taken by a write; spare is the other
	// buffer, back from the writer (nil while a write holds it).
	buf, spare []byte
	// room is signalled when a write has taken buf: Logs waiting at
	// MaxBuffered go on.
	room   *sync.Cond
	closed bool

	// writeMu serializes writes to w (the writer goroutine's and Flush's)
	// so that batches reach w in the order their lines were logged.
	writeMu sync.Mutex
	w       io.Writer
	err     error // the first write error, kept for Flush and Close; under writeMu

	kick    chan struct{} // buf passed FlushSize
	closer  io.Closer
	done    chan struct{}
	stopped sync.WaitGroup
}

// FlushEvery bounds how long a line may sit in the buffer.
const FlushEvery = 200 * time.Millisecond

// FlushSize is how many buffered bytes make the writer write at once.
const FlushSize = 64 << 10

// MaxBuffered is how many bytes may wait for the writer before Log waits.
const MaxBuffered = 8 << 20

// maxKeptBuffer is the largest buffer kept for reuse after a write; a
// buffer that grew while the writer was slow is let go.
const maxKeptBuffer = 4 * FlushSize

// New returns a Logger writing to w; if w is an io.Closer, Close closes it.
func New(w io.Writer) *Logger {
	l := &Logger{w: w, kick: make(chan struct{}, 1), done: make(chan struct{}),
		buf: make([]byte, 0, FlushSize+FlushSize/4), spare: make([]byte, 0, FlushSize+FlushSize/4)}
	l.room = sync.NewCond(&l.mu)
	if c, ok := w.(io.Closer); ok {
		l.closer = c
	}
	l.stopped.Add(1)
	go l.writer()
	return l
}

func (l *Logger) writer() {
	defer l.stopped.Done()
	t := time.NewTicker(FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-l.kick:
		case <-l.done:
			return
		}
		l.Flush()
	}
}

// Log writes one entry as the line json.Marshal(e) would give, without its
// reflection and allocations. Errors writing the log are not the request's
// problem; they surface on Flush/Close. A decision is never left out of
// the log: an entry whose Time has no RFC 3339 form (a year outside
// 0-9999, a zone offset of a day or more: a broken clock) is written with
// the time of writing instead.
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
	for len(l.buf) >= MaxBuffered && !l.closed {
		l.room.Wait()
	}
	if !l.closed {
		l.buf = append(l.buf, b...)
	}
	kick := len(l.buf) >= FlushSize
	l.mu.Unlock()

	if cap(b) <= maxKeptLine {
		*sp = b
		scratchPool.Put(sp)
	}
	if kick {
		select {
		case l.kick <- struct{}{}:
		default: // a kick is pending already
		}
	}
}

// maxKeptLine is the largest line buffer kept for the next line; the
// buffer of a rare huge line (a long path or reason) is let go.
const maxKeptLine = 16 << 10

var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Flush writes the buffered lines out and reports the first error any
// write to the underlying writer has had.
func (l *Logger) Flush() error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.Lock()
	out := l.buf
	if len(out) == 0 {
		l.mu.Unlock()
		return l.err
	}
	l.buf, l.spare = l.spare[:0], nil
	l.room.Broadcast()
	l.mu.Unlock()

	if _, err := l.w.Write(out); err != nil && l.err == nil {
		l.err = err
	}

	if cap(out) <= maxKeptBuffer {
		l.mu.Lock()
		l.spare = out[:0]
		l.mu.Unlock()
	}
	return l.err
}

// Close flushes and stops the logger, closing the underlying writer if it
// is a file. Log after Close is a no-op.
func (l *Logger) Close() error {
	select {
	case <-l.done:
		return nil
	default:
	}
	close(l.done)
	l.stopped.Wait()
	l.mu.Lock()
	l.closed = true
	l.room.Broadcast()
	l.mu.Unlock()
	err := l.Flush()
	if l.closer != nil {
		if cerr := l.closer.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
