package upstream

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// eventUpstream streams n events of type ctype; after event i it calls
// between, which returns false to end the stream early.
func eventUpstream(ctype string, n int, between func(ctx context.Context, i int) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ctype)
		rc := http.NewResponseController(w)
		for i := range n {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			if rc.Flush() != nil || !between(r.Context(), i) {
				return
			}
		}
	})
}

// pause waits d or until ctx ends; it reports whether d passed.
func pause(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// readEvent reads one "\n\n"-terminated event and returns it without the
// terminator.
func readEvent(br *bufio.Reader) (string, error) {
	var sb strings.Builder
	for {
		line, err := br.ReadString('\n')
		sb.WriteString(line)
		if err != nil {
			return sb.String(), err
		}
		if line == "\n" {
			return strings.TrimSuffix(sb.String(), "\n\n"), nil
		}
	}
}

// readEvents reads events until the body ends; err is the error that ended
// it other than io.EOF.
func readEvents(body io.Reader) (events []string, err error) {
	br := bufio.NewReader(body)
	for {
		ev, err := readEvent(br)
		if err == io.EOF && ev == "" {
			return events, nil
		}
		if err != nil {
			return events, err
		}
		events = append(events, ev)
	}
}

func wantEvents(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("data: event %d", i))
	}
	return out
}

func TestStreamOutlivesTimeout(t *testing.T) {
	const n = 15 // one every 100ms: 1.5s, well past the 200ms Timeout
	tests := []struct {
		name    string
		ctype   string
		wantCut bool
	}{
		{name: "server-sent events", ctype: "text/event-stream; charset=utf-8"},
		{name: "ndjson", ctype: "application/x-ndjson"},
		{name: "a normal response is cut at Timeout", ctype: "application/json", wantCut: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newServer(t, eventUpstream(tc.ctype, n, func(ctx context.Context, _ int) bool {
				return pause(ctx, 100*time.Millisecond)
			}))
			front := newFront(t, ProxyOptions{
				Pool:              mustPool(t, PoolOptions{}, up.URL),
				Timeout:           200 * time.Millisecond,
				StreamIdleTimeout: 5 * time.Second,
			})
			res, err := front.Client().Get(front.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			events, err := readEvents(res.Body)
			if tc.wantCut {
				if err == nil || len(events) >= n {
					t.Errorf("got %d events and error %v; want the response cut short with an error", len(events), err)
				}
				return
			}
			if err != nil {
				t.Errorf("stream ended with %v", err)
			}
			if diff := cmp.Diff(wantEvents(n), events); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSSENoBuffering proves each event reaches the client before the
// upstream sends the next: the upstream waits for the client to acknowledge
// event i before it writes event i+1. A proxy that buffered would deadlock
// until the client's deadline and fail.
func TestSSENoBuffering(t *testing.T) {
	tests := []struct {
		name string
		wrap func(http.Handler) http.Handler
	}{
		{"bare", func(h http.Handler) http.Handler { return h }},
		{"behind an audit ResponseWriter wrapper", audited},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const n = 5
			acks := make(chan int)
			up := newServer(t, eventUpstream("text/event-stream", n, func(ctx context.Context, i int) bool {
				select {
				case got := <-acks:
					return got == i
				case <-ctx.Done():
					return false
				case <-time.After(waitDeadline):
					return false
				}
			}))
			front := newServer(t, tc.wrap(NewProxy(ProxyOptions{Pool: mustPool(t, PoolOptions{}, up.URL), Timeout: 300 * time.Millisecond})))
			ctx, cancel := context.WithTimeout(context.Background(), waitDeadline)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, front.URL, nil)
			res, err := front.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			br := bufio.NewReader(res.Body)
			for i := range n {
				ev, err := readEvent(br)
				if err != nil {
					t.Fatalf("event %d: %v (buffered by the proxy?)", i, err)
				}
				if want := fmt.Sprintf("data: event %d", i); ev != want {
					t.Fatalf("event %d = %q, want %q", i, ev, want)
				}
				if i < n-1 {
					acks <- i
				}
			}
		})
	}
}

func TestStreamIdleTimeout(t *testing.T) {
	ended := make(chan string, 1)
	up := newServer(t, eventUpstream("text/event-stream", 1, func(ctx context.Context, _ int) bool {
		if pause(ctx, waitDeadline) {
			ended <- "never cancelled"
		} else {
			ended <- "cancelled"
		}
		return false
	}))
	// The idle timeout is longer than Timeout, which must not end the
	// stream; Timeout still leaves a loaded machine time to deliver the
	// response's header (a 504 would end the test before the stream began).
	front := newFront(t, ProxyOptions{
		Pool:              mustPool(t, PoolOptions{}, up.URL),
		Timeout:           500 * time.Millisecond,
		StreamIdleTimeout: time.Second,
	})
	res, err := front.Client().Get(front.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200 (the response header did not come within Timeout)", res.StatusCode)
	}
	events, err := readEvents(res.Body)
	if err != nil {
		t.Errorf("silent stream ended with %v, want a clean end", err)
	}
	if diff := cmp.Diff(wantEvents(1), events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if got := recv(t, "the upstream handler to end", ended); got != "cancelled" {
		t.Errorf("upstream request %s, want cancelled at the idle timeout", got)
	}
}

// shutdownFront serves h with a base context the test cancels, as the
// server does at the end of its shutdown grace period. done receives the
// handler's panic value, or nil when it returned normally.
func shutdownFront(t *testing.T, h http.Handler) (front *httptest.Server, shutdown func(), done <-chan any) {
	t.Helper()
	base, cancel := context.WithCancel(context.Background())
	ch := make(chan any, 16)
	front = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { ch <- recover() }()
		h.ServeHTTP(w, r)
	}))
	front.Config.BaseContext = func(net.Listener) context.Context { return base }
	front.Start()
	t.Cleanup(front.Close)
	t.Cleanup(cancel)
	return front, cancel, ch
}

func TestShutdownEndsStream(t *testing.T) {
	upEnded := make(chan bool, 1)
	up := newServer(t, eventUpstream("text/event-stream", 1000, func(ctx context.Context, _ int) bool {
		ok := pause(ctx, 20*time.Millisecond)
		if !ok {
			upEnded <- true
		}
		return ok
	}))
	front, shutdown, done := shutdownFront(t, NewProxy(ProxyOptions{Pool: mustPool(t, PoolOptions{}, up.URL)}))
	res, err := front.Client().Get(front.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	if _, err := readEvent(br); err != nil {
		t.Fatalf("first event: %v", err)
	}
	shutdown()
	if p := recv(t, "the proxy handler to return", done); p != nil {
		t.Fatalf("proxy handler panicked: %v", p)
	}
	rest, err := readEvents(br)
	if err != nil {
		t.Errorf("stream ended with %v after %d more events, want a clean end", err, len(rest))
	}
	recv(t, "the upstream request to be cancelled", upEnded)
}

// TestSSESoak streams Server-Sent Events through the proxy for a long time,
// in lockstep (the upstream sends event i+1 only after the client has read
// event i), with a total Timeout shorter than the stream. Every event must
// arrive, in order, and the stream must end normally.
//
// Knob: SEKISHO_SSE_SOAK sets the stream length (a Go duration). The default
// is 2s; SEKISHO_SSE_SOAK=10m runs the full ten-minute soak:
//
//	SEKISHO_SSE_SOAK=10m go test -run TestSSESoak -timeout 15m ./internal/upstream/
func TestSSESoak(t *testing.T) {
	length := 2 * time.Second
	if s := os.Getenv("SEKISHO_SSE_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("SEKISHO_SSE_SOAK=%q: want a positive duration like 10m", s)
		}
		length = d
	}
	const every = 50 * time.Millisecond
	acks := make(chan int)
	sent := make(chan int, 1)
	up := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		start := time.Now()
		i := 0
		defer func() { sent <- i }()
		for ; time.Since(start) < length; i++ {
			fmt.Fprintf(w, "id: %d\ndata: %d\n\n", i, time.Now().UnixNano())
			if rc.Flush() != nil {
				return
			}
			select {
			case got := <-acks:
				if got != i {
					return
				}
			case <-r.Context().Done():
				return
			case <-time.After(waitDeadline):
				return
			}
			if !pause(r.Context(), every) {
				return
			}
		}
		io.WriteString(w, "event: end\ndata: bye\n\n")
	}))
	front := newFront(t, ProxyOptions{
		Pool:              mustPool(t, PoolOptions{}, up.URL),
		Timeout:           length / 4,
		StreamIdleTimeout: time.Second,
	})
	res, err := front.Client().Get(front.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	var maxLatency time.Duration
	got := 0
	for ; ; got++ {
		ev, err := readEvent(br)
		if err != nil {
			t.Fatalf("after %d events: %v", got, err)
		}
		if ev == "event: end\ndata: bye" {
			break
		}
		id, stamp, ok := strings.Cut(ev, "\ndata: ")
		ns, err := strconv.ParseInt(stamp, 10, 64)
		if !ok || err != nil || id != fmt.Sprintf("id: %d", got) {
			t.Fatalf("event %d = %q", got, ev)
		}
		maxLatency = max(maxLatency, time.Since(time.Unix(0, ns)))
		acks <- got
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("after the last event: %q, %v; want a clean end", rest, err)
	}
	if n := recv(t, "the upstream to finish", sent); n != got {
		t.Errorf("upstream sent %d events, client got %d", n, got)
	}
	t.Logf("%d events over %v, Timeout %v; slowest delivery %v", got, length, length/4, maxLatency)
}
