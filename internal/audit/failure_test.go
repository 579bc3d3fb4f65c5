package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// faultyWriter is an output that fails on demand. It takes at most room
// more bytes (room < 0: any number), as a disk that fills up: a write that
// does not fit writes the part that fits and fails with ENOSPC, as
// write(2) does. chunk > 0 makes each write take at most chunk bytes and
// fail with EIO (a short write); shortNil makes that short write report
// no error (a writer breaking io.Writer's contract).
type faultyWriter struct {
	mu       sync.Mutex
	b        bytes.Buffer
	room     int
	chunk    int
	shortNil bool
	partials int // writes that took some bytes, not all
	failures int
}

func (f *faultyWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := len(p), error(nil)
	if f.chunk > 0 && n > f.chunk {
		n, err = f.chunk, syscall.EIO
		if f.shortNil {
			err = nil
		}
	}
	if f.room >= 0 && n > f.room {
		n, err = f.room, syscall.ENOSPC
	}
	if f.room >= 0 {
		f.room -= n
	}
	f.b.Write(p[:n])
	if err != nil {
		f.failures++
	}
	if n > 0 && n < len(p) {
		f.partials++
	}
	return n, err
}

func (f *faultyWriter) set(room, chunk int) {
	f.mu.Lock()
	f.room, f.chunk = room, chunk
	f.mu.Unlock()
}

func (f *faultyWriter) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.b.String()
}

func (f *faultyWriter) counts() (failures, partials int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failures, f.partials
}

// quick is Options with fast retries and a logger into ops.
func quick(ops *syncBuf) Options {
	return Options{Logger: slog.New(slog.NewTextHandler(ops, nil)), retryMin: time.Millisecond, retryMax: 20 * time.Millisecond}
}

// waitFor polls cond; the timeout is a mechanism, generous for a loaded machine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// numberedLine is the line numbered(l, i, i+1) logs, newline included.
func numberedLine(i int) string {
	b, _ := json.Marshal(&Entry{Time: time.Unix(0, 0), RequestID: fmt.Sprint(i), Host: "h", Method: "GET", Path: "/", Decision: "allow", Status: 200})
	return string(b) + "\n"
}

// The disk fills up in the middle of a line: nothing may be lost, nothing
// written twice, no line torn; the failure is said once at ERROR, the
// recovery at INFO, and Healthy reports it meanwhile.
func TestDiskFullLosesNoLine(t *testing.T) {
	var ops syncBuf
	w := &faultyWriter{room: 10*len(numberedLine(0)) + 37} // full mid-line 11
	l := NewWithOptions(w, quick(&ops))
	const n = 300
	numbered(l, 0, n)
	if err := l.Flush(); err == nil || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Flush on a full disk = %v, want ENOSPC", err)
	}
	waitFor(t, "a few retries failed", func() bool { f, _ := w.counts(); return f >= 3 })
	st := l.Stats()
	if !st.Failing || st.PendingLines != n-10 || st.WriteErrors < 3 {
		t.Fatalf("Stats while the disk is full = %+v, want failing with %d lines pending", st, n-10)
	}
	if err := l.Healthy(); err == nil || !errors.Is(err, ErrUnhealthy) || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("Healthy while the disk is full = %v, want the failure", err)
	}
	if got := strings.Count(ops.String(), "level=ERROR"); got != 1 {
		t.Fatalf("%d ERROR messages for one failure, want exactly 1 (rate-limited):\n%s", got, ops.String())
	}
	if !strings.Contains(ops.String(), "no space left on device") {
		t.Fatalf("the ERROR does not give the error:\n%s", ops.String())
	}

	w.set(-1, 0) // space is freed
	// The counters change as the lines are written, the failure ends and
	// its INFO is logged just after.
	waitFor(t, "the lines are written", func() bool { return l.Stats().PendingLines == 0 })
	waitFor(t, "the recovery is logged", func() bool { return strings.Contains(ops.String(), "audit log written again") })
	if err := l.Healthy(); err != nil {
		t.Fatalf("Healthy after recovery = %v", err)
	}
	if !strings.Contains(ops.String(), "level=INFO msg=\"audit log written again\" lines_waited=290") {
		t.Fatalf("no INFO with the lines that waited:\n%s", ops.String())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, partials := w.counts(); partials == 0 {
		t.Fatal("the test wrote no partial line; it tests nothing")
	}
	checkSequence(t, w.String(), n)
	if st := l.Stats(); st.Dropped != 0 || st.Failing {
		t.Errorf("Stats after recovery = %+v", st)
	}
}

// Every write stops short, often mid-line: each write must go on from the
// exact byte the last one stopped at, so no line is torn or repeated.
func TestShortWriteNeverTearsALine(t *testing.T) {
	for _, tc := range []struct {
		name     string
		chunk    int
		shortNil bool
	}{
		{"short write with EIO", 97, false},
		{"short write of one byte", 1, false},
		{"short write reporting no error", 250, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ops syncBuf
			w := &faultyWriter{room: -1, chunk: tc.chunk, shortNil: tc.shortNil}
			l := NewWithOptions(w, quick(&ops))
			const n = 40
			numbered(l, 0, n)
			waitFor(t, "every line is written", func() bool { return l.Stats().PendingLines == 0 })
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if _, partials := w.counts(); partials == 0 {
				t.Fatal("no short write happened; the test tests nothing")
			}
			checkSequence(t, w.String(), n)
			if l.Stats().WriteErrors == 0 {
				t.Error("the short writes were not counted as write errors")
			}
		})
	}
}

// statFile is a real file that fails on demand like faultyWriter: it takes
// at most room more bytes, the rest with ENOSPC.
type statFile struct {
	*os.File
	mu   sync.Mutex
	room int
}

func (f *statFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.room < 0 || len(p) <= f.room {
		if f.room >= 0 {
			f.room -= len(p)
		}
		return f.File.Write(p)
	}
	n, _ := f.File.Write(p[:f.room])
	f.room -= n
	return n, syscall.ENOSPC
}

func (f *statFile) setRoom(n int) { f.mu.Lock(); f.room = n; f.mu.Unlock() }

// copytruncate empties the file after a write stopped mid-line: the rest
// of that line must not start the emptied file torn; the line is written
// again whole.
func TestTruncatedFileAfterShortWriteGetsWholeLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	var ops syncBuf
	sf := &statFile{File: f, room: 5*len(numberedLine(0)) + 20}
	l := NewWithOptions(sf, quick(&ops))
	const n = 30
	numbered(l, 0, n)
	waitFor(t, "the write fails", func() bool { return l.Stats().Failing })
	if err := os.Truncate(path, 0); err != nil { // logrotate's copytruncate
		t.Fatal(err)
	}
	sf.setRoom(-1)
	waitFor(t, "the lines are written", func() bool { return l.Stats().PendingLines == 0 })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := 5; i < n; i++ { // line 5 was torn before the truncation: whole again
		want.WriteString(numberedLine(i))
	}
	if string(got) != want.String() {
		t.Fatalf("after truncation the file is\n%s\nwant lines 5..%d whole", got, n-1)
	}
}

// closeRecorder records Close.
type closeRecorder struct {
	io.Writer
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

// logrotate moved the file away and SIGHUP reopens it: the lines that wait
// go to the old file while it takes them, the rest to the new one, each
// line whole; the old file is closed.
func TestSwitchToReopenedFile(t *testing.T) {
	t.Run("old output working", func(t *testing.T) {
		var oldB, newB syncBuf
		old := &closeRecorder{Writer: &oldB}
		l := New(old)
		numbered(l, 0, 10)
		if err := l.Switch(&closeRecorder{Writer: &newB}); err != nil {
			t.Fatal(err)
		}
		if !old.closed {
			t.Error("the old output was not closed")
		}
		numbered(l, 10, 20)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		checkSequence(t, oldB.String(), 10)
		var want strings.Builder
		for i := 10; i < 20; i++ {
			want.WriteString(numberedLine(i))
		}
		if newB.String() != want.String() {
			t.Fatalf("new output =\n%s\nwant lines 10..19", newB.String())
		}
	})
	t.Run("old output full mid-line", func(t *testing.T) {
		var ops syncBuf
		old := &faultyWriter{room: 3*len(numberedLine(0)) + 9}
		l := NewWithOptions(old, quick(&ops))
		numbered(l, 0, 10)
		waitFor(t, "the write fails", func() bool { return l.Stats().Failing })
		var newB syncBuf
		if err := l.Switch(&newB); err != nil {
			t.Fatal(err)
		}
		if err := l.Healthy(); err != nil {
			t.Fatalf("Healthy after switching to a working file = %v", err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		var want strings.Builder
		for i := 3; i < 10; i++ { // line 3, torn in the old file, whole in the new
			want.WriteString(numberedLine(i))
		}
		if newB.String() != want.String() {
			t.Fatalf("new output =\n%s\nwant lines 3..9 whole", newB.String())
		}
		if o := old.String(); o != numberedLine(0)+numberedLine(1)+numberedLine(2)+numberedLine(3)[:9] {
			t.Fatalf("old output = %q", o)
		}
	})
}

func TestSwitchAfterCloseClosesTheNewOutput(t *testing.T) {
	l := New(discard{})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	c := &closeRecorder{Writer: discard{}}
	if err := l.Switch(c); err == nil || !c.closed {
		t.Fatalf("Switch after Close = %v, closed the new output: %v; want an error and the output closed", err, c.closed)
	}
}

// audit.on_failure: block. With the output failing and max_pending full,
// Log (and the request) waits; nothing is lost once the output recovers.
func TestFullBufferBlocksRequestUntilRoom(t *testing.T) {
	var ops syncBuf
	w := &faultyWriter{room: 0}
	o := quick(&ops)
	o.MaxPending = 64 << 10
	l := NewWithOptions(w, o)
	n := 2 * o.MaxPending / len(numberedLine(0))
	logged := make(chan struct{})
	go func() { numbered(l, 0, n); close(logged) }()
	waitFor(t, "Log waits for room", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.waiting > 0 })
	select {
	case <-logged:
		t.Fatal("Log went past max_pending")
	default:
	}
	if st := l.Stats(); st.PendingBytes > o.MaxPending || st.Dropped != 0 {
		t.Fatalf("Stats = %+v, want at most %d bytes pending and nothing dropped", st, o.MaxPending)
	}
	if l.Healthy() == nil {
		t.Fatal("Healthy while requests wait = nil")
	}
	w.set(-1, 0)
	<-logged
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, w.String(), n)
}

// audit.on_failure: drop_and_count. Log never waits; the lines past
// max_pending are dropped, counted and said (once, rate-limited); the
// lines kept are written whole once the output recovers.
func TestFullBufferDropAndCount(t *testing.T) {
	var ops syncBuf
	w := &faultyWriter{room: 0}
	o := quick(&ops)
	o.MaxPending, o.Drop = 64<<10, true
	l := NewWithOptions(w, o)
	n := 3 * o.MaxPending / len(numberedLine(0))
	logged := make(chan struct{})
	go func() { numbered(l, 0, n); close(logged) }()
	select {
	case <-logged:
	case <-time.After(30 * time.Second):
		t.Fatal("Log waited with on_failure drop_and_count")
	}
	st := l.Stats()
	kept := st.PendingLines
	if st.Dropped == 0 || int(st.Dropped)+kept != n || st.PendingBytes > o.MaxPending {
		t.Fatalf("Stats = %+v after %d lines, want the lines past %d bytes dropped and counted", st, n, o.MaxPending)
	}
	if got := strings.Count(ops.String(), "audit line dropped"); got != 1 {
		t.Fatalf("%d drop messages, want 1 (rate-limited):\n%s", got, ops.String())
	}
	w.set(-1, 0)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, w.String(), kept)
}

// Shutdown with the output still failing: Close gives up after
// CloseTimeout, says how many lines are lost, and lets a Log waiting for
// room go; it never hangs.
func TestCloseOnFailingOutputReportsLostLinesAndReturns(t *testing.T) {
	var ops syncBuf
	w := &faultyWriter{room: 0}
	o := quick(&ops)
	o.MaxPending, o.CloseTimeout = 64<<10, 100*time.Millisecond
	l := NewWithOptions(w, o)
	full, size := 0, 0
	for size+len(numberedLine(full)) <= o.MaxPending {
		size += len(numberedLine(full))
		full++
	}
	numbered(l, 0, full) // fills max_pending
	waiter := make(chan struct{})
	go func() { numbered(l, full, full+1); close(waiter) }()
	waitFor(t, "a Log waits for room", func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.waiting > 0 })
	closed := make(chan error)
	go func() { closed <- l.Close() }()
	var err error
	select {
	case err = <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close hung on a failing output")
	}
	<-waiter
	want := fmt.Sprintf("%d lines could not be written", full+1)
	if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Close = %v, want %q and the cause", err, want)
	}
	if !strings.Contains(ops.String(), fmt.Sprintf("lost_lines=%d", full+1)) {
		t.Fatalf("the lost lines were not logged:\n%s", ops.String())
	}
	if st := l.Stats(); st.Dropped != uint64(full+1) {
		t.Fatalf("Dropped = %d, want %d", st.Dropped, full+1)
	}
	if err2 := l.Close(); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("second Close = %v, want the first's error", err2)
	}
}

// countingFile wraps the audit file on a real file system, counting the
// writes that stopped part way (ENOSPC after some bytes).
type countingFile struct {
	*os.File
	mu       sync.Mutex
	partials int
	failures int
}

func (c *countingFile) Write(p []byte) (int, error) {
	n, err := c.File.Write(p)
	if err != nil {
		c.mu.Lock()
		c.failures++
		if n > 0 {
			c.partials++
		}
		c.mu.Unlock()
	}
	return n, err
}

var _ interface{ Stat() (fs.FileInfo, error) } = (*countingFile)(nil)

// A real full file system (a 64 KiB tmpfs): the kernel's partial writes
// on ENOSPC must leave no torn or lost line once space is freed.
func TestDiskFullOnRealFileSystemLosesNoLine(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 40<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "audit.log")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cf := &countingFile{File: f}
	var ops syncBuf
	l := NewWithOptions(cf, quick(&ops))
	per := len(numberedLine(0))
	n := (40 << 10) / per // more than the 24 KiB left
	for i := 0; i < n; i += 50 {
		numbered(l, i, min(i+50, n))
		l.Flush() // many writes, so that one ends in the middle of a line
	}
	waitFor(t, "the file system is full", func() bool { return l.Stats().Failing })
	if err := l.Healthy(); err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("Healthy on a full file system = %v", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the lines are written", func() bool { return l.Stats().PendingLines == 0 })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cf.mu.Lock()
	partials, failures := cf.partials, cf.failures
	cf.mu.Unlock()
	if failures == 0 {
		t.Fatal("no write failed; the test tests nothing")
	}
	t.Logf("%d failed writes, %d of them partial", failures, partials)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	checkSequence(t, string(got), n)
}
