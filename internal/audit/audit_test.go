package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestLogOneLinePerEntry(t *testing.T) {
	var buf syncBuf
	l := New(&buf)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Log(&Entry{Time: time.Unix(0, 0), RequestID: "r", Host: "h", Method: "GET", Path: "/p\nforged", Decision: "allow", Status: 200})
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 50 {
		t.Fatalf("got %d lines, want 50", len(lines))
	}
	for _, ln := range lines {
		var e map[string]any
		if err := json.Unmarshal([]byte(ln), &e); err != nil {
			t.Fatalf("line is not JSON (log injection via newline in path?): %q", ln)
		}
		if e["path"] != "/p\nforged" {
			t.Fatalf("path = %q", e["path"])
		}
	}
}

func TestEntryHasNoCredentialFields(t *testing.T) {
	b, _ := json.Marshal(Entry{})
	for _, banned := range []string{"cookie", "authorization", "query", "token", "password"} {
		if strings.Contains(strings.ToLower(string(b)), banned) {
			t.Errorf("audit entry has a field named like %q: %s", banned, b)
		}
	}
}

// BenchmarkLog measures Log as a request pays for it, against the old way
// (json.Marshal, then the write) in the same run.
func BenchmarkLog(b *testing.B) {
	e := &Entry{Time: time.Now(), RequestID: "0123456789abcdef", Route: "r", Host: "h", Method: "GET", Path: "/", ClientIP: "127.0.0.1", User: "alice", Kind: "session", Decision: "allow", Reason: "any signed-in identity is allowed", Status: 200}
	for _, tc := range []struct {
		name string
		log  func(*Logger, *Entry)
	}{{"json.Marshal", logWithMarshal}, {"appendEntry", (*Logger).Log}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			l := New(discard{})
			for b.Loop() {
				tc.log(l, e)
			}
			l.Close()
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// stuckWriter blocks every Write until release is closed, as a full disk,
// a hung NFS mount or a log collector that stopped reading its pipe would.
type stuckWriter struct {
	release chan struct{}
	entered chan struct{} // closed at the first Write
	once    sync.Once
	buf     syncBuf
}

func newStuckWriter() *stuckWriter {
	return &stuckWriter{release: make(chan struct{}), entered: make(chan struct{})}
}

func (s *stuckWriter) Write(p []byte) (int, error) {
	s.once.Do(func() { close(s.entered) })
	<-s.release
	return s.buf.Write(p)
}

// numbered logs entries whose request ids are from..to-1.
func numbered(l *Logger, from, to int) {
	for i := from; i < to; i++ {
		l.Log(&Entry{Time: time.Unix(0, 0), RequestID: fmt.Sprint(i), Host: "h", Method: "GET", Path: "/", Decision: "allow", Status: 200})
	}
}

// checkSequence makes sure out holds the ids 0..n-1, each once, in order.
func checkSequence(t *testing.T, out string, n int) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("got %d lines, want %d: lines were dropped or repeated", len(lines), n)
	}
	for i, ln := range lines {
		var e Entry
		if err := json.Unmarshal([]byte(ln), &e); err != nil {
			t.Fatalf("line %d is not JSON: %q", i, ln)
		}
		if e.RequestID != fmt.Sprint(i) {
			t.Fatalf("line %d has request id %s: lines out of order", i, e.RequestID)
		}
	}
}

// A request must not wait for the disk: with the writer stuck in a write,
// Log still returns at once while less than MaxBuffered waits.
func TestLogDoesNotWaitForAStuckWriter(t *testing.T) {
	w := newStuckWriter()
	l := New(w)
	n := 3 * FlushSize / 100 // lines of about 100 bytes: past FlushSize, so a write starts
	logged := make(chan struct{})
	go func() {
		numbered(l, 0, n)
		<-w.entered // the writer is stuck in its write now ...
		numbered(l, n, 2*n)
		close(logged) // ... and Log still returned
	}()
	select {
	case <-logged:
	case <-time.After(30 * time.Second):
		t.Fatal("Log waited for a writer stuck in Write")
	}
	close(w.release)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, w.buf.String(), 2*n)
}

// Past MaxBuffered, Log waits for the writer instead of dropping decisions
// or growing without bound; every line arrives once the writer moves.
func TestLogAppliesBackPressureNeverDrops(t *testing.T) {
	w := newStuckWriter()
	l := New(w)
	n := 2 * MaxBuffered / 100
	logged := make(chan struct{})
	go func() {
		numbered(l, 0, n)
		close(logged)
	}()
	<-w.entered
	// Wait until Log waits for room; the logging goroutine must then be
	// held, not finished (it has twice MaxBuffered to log).
	for {
		l.mu.Lock()
		full := l.waiting > 0 && l.pendingBytes+100 > MaxBuffered
		l.mu.Unlock()
		if full {
			break
		}
		select {
		case <-logged:
			t.Fatal("Log finished while the writer was stuck: lines were dropped")
		case <-time.After(time.Millisecond):
		}
	}
	select {
	case <-logged:
		t.Fatal("Log went past MaxBuffered while the writer was stuck")
	default:
	}
	close(w.release)
	<-logged
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, w.buf.String(), n)
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteErrorSurfacesOnFlushAndClose(t *testing.T) {
	l := NewWithOptions(failingWriter{}, Options{CloseTimeout: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	numbered(l, 0, 3)
	if err := l.Flush(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Flush = %v, want the writer's error", err)
	}
	if err := l.Close(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Close = %v, want the writer's error", err)
	}
}

func TestLinesKeepTheirOrderAcrossBatches(t *testing.T) {
	var buf syncBuf
	l := New(&buf)
	n := 5 * FlushSize / 100
	numbered(l, 0, n/2)
	l.Flush()
	numbered(l, n/2, n)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, buf.String(), n)
	numbered(l, n, n+1) // after Close: nothing more
	if got := strings.Count(buf.String(), "\n"); got != n {
		t.Fatalf("Log after Close wrote a line (%d lines, want %d)", got, n)
	}
}
