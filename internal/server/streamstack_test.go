package server_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/testenv"
)

// Budgets for sekisho's own frames on an idle stream's connection goroutine.
// Today's chain (Go 1.26, amd64): Pipeline.ServeHTTP and proxy.ServeHTTP
// around ReverseProxy, 296 bytes with the stream's body wrappers. The
// stream's first flush, from the handler chain above ReverseProxy's copy
// loop, then peaks at 112 to 168 bytes short of what makes the stack grow
// past 8 KiB; maxOwnFrames leaves less than that for one more layer.
//
// Below the copy loop the goroutine reads the upstream itself (sekisho's
// HTTP/1.1 client has no reader goroutine of its own): net/http's body and
// chunk readers, bufio and the socket, about 2 KiB. Those frames are not
// on the flush's path; maxIdleStack holds the whole idle stack well inside
// 8 KiB instead.
const (
	maxOwnFrame  = 256
	maxOwnFrames = 384
	maxIdleStack = 6 << 10
)

// Memory per idle stream (5,000 SSE streams held by one gateway): a stream's
// connection goroutine waits in ReverseProxy's copy loop under sekisho's
// handlers for the stream's whole life, and the first write of the response
// (its header) happens from there, at the deepest point of that goroutine.
// With the pipeline's 1 KiB frame on the chain, that write no longer fit in
// 8 KiB: the stack grew to 16 KiB, and since the idle stack uses more than a
// quarter of 16 KiB, the GC never shrank it back. Every open stream paid 8 KiB
// more than behind a bare ReverseProxy. This test opens one stream, waits for
// its goroutine to block, reads the frame sizes of that goroutine from a heap
// dump (the runtime's own account of each frame) and holds sekisho's frames on
// it to a small budget: big locals belong in helpers that return before the
// request is forwarded (Pipeline.admit, proxy.begin).
func TestIdleStreamStack(t *testing.T) {
	if why := framesInflated(); why != "" {
		t.Skipf("frame sizes are not the release build's here (%s)", why)
	}
	e := testenv.Start(t, streamConfig)
	e.AddUser("alice", pw, "")
	c := e.Login("alice", pw)
	e.Upstream.Handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, ": open\n\n")
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.URL+"/v1/events", nil)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if line, err := bufio.NewReader(res.Body).ReadString('\n'); err != nil || line != ": open\n" {
		t.Fatalf("stream: %q %v", line, err)
	}

	// The stream's first bytes came through; its goroutine blocks on the
	// upstream's next read right after. Wait for that state, not for a time.
	var stack []frame
	for stack == nil {
		if ctx.Err() != nil {
			t.Fatal("no connection goroutine blocked under the pipeline")
		}
		goroutines, err := goroutineStacks(t)
		if errors.Is(err, errDumpFormat) {
			t.Skipf("cannot read this Go version's heap dump: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range goroutines {
			if len(g) > 0 && g[0].name == "runtime.gopark" && hasFrame(g, "route.(*Pipeline).ServeHTTP") && hasFrame(g, "ReverseProxy).copyBuffer") {
				stack = g
			}
		}
	}

	var b strings.Builder
	total, own := 0, 0
	reading := true // frames are listed innermost first: the upstream read comes before the copy loop
	for _, f := range stack {
		fmt.Fprintf(&b, "\n%6d  %s", f.size, f.name)
		total += f.size
		if strings.HasSuffix(f.name, "ReverseProxy).copyBuffer") {
			reading = false
		}
		if strings.HasPrefix(f.name, "github.com/sekisho/sekisho/") {
			if !reading {
				own += f.size
			}
			if f.size > maxOwnFrame {
				t.Errorf("%s holds a %d-byte frame while the stream is idle (budget %d): move its work into a helper that returns before the request is forwarded",
					f.name, f.size, maxOwnFrame)
			}
		}
	}
	if own > maxOwnFrames {
		t.Errorf("sekisho's frames above the copy loop on an idle stream's goroutine take %d bytes (budget %d)", own, maxOwnFrames)
	}
	if total > maxIdleStack {
		t.Errorf("an idle stream's goroutine uses %d bytes of stack (budget %d): it would grow past 8 KiB when it reads", total, maxIdleStack)
	}
	if t.Failed() {
		t.Logf("the idle stream's goroutine (%d bytes, %d of them sekisho's):%s", total, own, b.String())
	}
}

// framesInflated says why this test binary's frames are bigger than a
// release build's (sanitizers, optimisations off), "" when they are not.
func framesInflated() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range bi.Settings {
		switch {
		case (s.Key == "-race" || s.Key == "-msan" || s.Key == "-asan") && s.Value == "true":
			return s.Key
		case s.Key == "-gcflags" && (strings.Contains(s.Value, "-N") || strings.Contains(s.Value, "-l")):
			return "-gcflags=" + s.Value
		}
	}
	return ""
}

func hasFrame(g []frame, suffix string) bool {
	for _, f := range g {
		if strings.HasSuffix(f.name, suffix) {
			return true
		}
	}
	return false
}

// frame is one function's frame on a goroutine's stack: its name and size
// in bytes (locals, spilled arguments, return address).
type frame struct {
	name string
	size int
}

var errDumpFormat = errors.New("unknown heap dump format")

// goroutineStacks returns every goroutine's frames, innermost first, from
// a heap dump (runtime/debug.WriteHeapDump, format "go1.7 heap dump"). It is
// the one public account of frame sizes; runtime.Stack prints none.
func goroutineStacks(t *testing.T) ([][]frame, error) {
	path := filepath.Join(t.TempDir(), "heap.dump")
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	debug.WriteHeapDump(f.Fd())
	if err := f.Close(); err != nil {
		return nil, err
	}
	defer os.Remove(path)
	f, err = os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d := &dumpReader{r: bufio.NewReaderSize(f, 1<<20)}
	return d.goroutines()
}

type dumpReader struct {
	r   *bufio.Reader
	err error
}

func (d *dumpReader) uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(d.r)
	if err != nil {
		d.err = fmt.Errorf("%w: %v", errDumpFormat, err)
	}
	return v
}

func (d *dumpReader) uints(n int) {
	for range n {
		d.uint()
	}
}

// bytes reads a length-prefixed string or memory range; keep=false skips it.
func (d *dumpReader) bytes(keep bool) ([]byte, int) {
	n := d.uint()
	if d.err != nil {
		return nil, 0
	}
	if n > 1<<32 {
		d.err = fmt.Errorf("%w: %d-byte field", errDumpFormat, n)
		return nil, 0
	}
	if !keep {
		if _, err := d.r.Discard(int(n)); err != nil {
			d.err = fmt.Errorf("%w: %v", errDumpFormat, err)
		}
		return nil, int(n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(d.r, b); err != nil {
		d.err = fmt.Errorf("%w: %v", errDumpFormat, err)
	}
	return b, int(n)
}

// fields skips a field list: (kind, offset) pairs up to kind 0.
func (d *dumpReader) fields() {
	for d.err == nil && d.uint() != 0 {
		d.uint()
	}
}

// goroutines reads the dump's records (runtime/heapdump.go lists them) and
// keeps the goroutines' stack frames.
func (d *dumpReader) goroutines() ([][]frame, error) {
	const header = "go1.7 heap dump\n"
	h := make([]byte, len(header))
	if _, err := io.ReadFull(d.r, h); err != nil || string(h) != header {
		return nil, fmt.Errorf("%w: header %q", errDumpFormat, h)
	}
	var gs [][]frame
	for d.err == nil {
		switch tag := d.uint(); tag {
		case 0: // end of dump
			return gs, nil
		case 1: // object: address, contents, fields
			d.uint()
			d.bytes(false)
			d.fields()
		case 2: // other root: description, address
			d.bytes(false)
			d.uint()
		case 3: // type: address, size, name, indirect
			d.uints(2)
			d.bytes(false)
			d.uint()
		case 4: // goroutine: address, sp, id, gopc, status, system, background, waitsince, waitreason, ctxt, m, defer, panic
			d.uints(8)
			d.bytes(false)
			d.uints(4)
			gs = append(gs, nil)
		case 5: // stack frame: sp, depth, child sp, contents, entry, pc, continuation pc, name, fields
			d.uints(3)
			_, size := d.bytes(false)
			d.uints(3)
			name, _ := d.bytes(true)
			d.fields()
			if len(gs) == 0 {
				return nil, fmt.Errorf("%w: a stack frame before any goroutine", errDumpFormat)
			}
			gs[len(gs)-1] = append(gs[len(gs)-1], frame{name: string(name), size: size})
		case 6: // parameters: big-endian, pointer size, arena start and end, GOARCH, version, CPUs
			d.uints(4)
			d.bytes(false)
			d.bytes(false)
			d.uint()
		case 7, 11: // finalizer, queued finalizer
			d.uints(5)
		case 8: // itab
			d.uints(2)
		case 9: // OS thread
			d.uints(3)
		case 10: // MemStats: 24 counters, 256 pauses, NumGC
			d.uints(24 + 256 + 1)
		case 12, 13: // data, bss: address, contents, fields
			d.uint()
			d.bytes(false)
			d.fields()
		case 14: // defer
			d.uints(7)
		case 15: // panic
			d.uints(6)
		case 16: // memory profile bucket: address, size, frames (name, file, line), allocs, frees
			d.uints(2)
			n := d.uint()
			for i := uint64(0); i < n && d.err == nil; i++ {
				d.bytes(false)
				d.bytes(false)
				d.uint()
			}
			d.uints(2)
		case 17: // alloc sample
			d.uints(2)
		default:
			return nil, fmt.Errorf("%w: record tag %d", errDumpFormat, tag)
		}
	}
	return nil, d.err
}
