// Package audit writes one JSON line per request decision: who asked for
// what, what sekisho decided and why, and what came back. Lines never carry
// credentials: the query string, cookies and authorization headers are not
// part of an Entry at all, so nothing has to remember to redact them.
package audit

import (
	"bufio"
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

// Logger writes entries as JSON lines. Writes are buffered and flushed at
// least every FlushEvery (so a busy gateway does not make one system call per
// request) and on Close. Safe for concurrent use.
type Logger struct {
	mu sync.Mutex
	w  *bufio.Writer
	// line is the buffer the next line is encoded into, reused under mu so
	// that Log does not allocate once it has grown to a typical line.
	line    []byte
	closer  io.Closer
	done    chan struct{}
	stopped sync.WaitGroup
}

// FlushEvery bounds how long a line may sit in the buffer.
const FlushEvery = 200 * time.Millisecond

// maxKeptLine is the largest line buffer Log keeps for the next line; the
// buffer of a rare huge line (a long path or reason) is let go.
const maxKeptLine = 16 << 10

// New returns a Logger writing to w; if w is an io.Closer, Close closes it.
func New(w io.Writer) *Logger {
	l := &Logger{w: bufio.NewWriterSize(w, 64<<10), done: make(chan struct{})}
	if c, ok := w.(io.Closer); ok {
		l.closer = c
	}
	l.stopped.Add(1)
	go l.flusher()
	return l
}

func (l *Logger) flusher() {
	defer l.stopped.Done()
	t := time.NewTicker(FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.Flush()
		case <-l.done:
			return
		}
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
	l.mu.Lock()
	b, err := appendEntry(l.line[:0], e)
	if err != nil {
		fixed := *e
		fixed.Time = time.Now().UTC()
		if b, err = appendEntry(l.line[:0], &fixed); err != nil {
			fixed.Time = time.Time{}
			b, _ = appendEntry(l.line[:0], &fixed)
		}
	}
	b = append(b, '\n')
	l.w.Write(b)
	if cap(b) <= maxKeptLine {
		l.line = b[:0]
	} else {
		l.line = nil
	}
	l.mu.Unlock()
}

// Flush writes buffered lines out.
func (l *Logger) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Flush()
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
	err := l.Flush()
	if l.closer != nil {
		if cerr := l.closer.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
