package upstream

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Slowloris upload: a client that sends its body a few bytes and then
// nothing would hold an upstream connection for the route's whole timeout.
// Past the body deadline the proxy stops reading, aborts the upstream
// request (its connection closes), answers 408 with an error that says the
// client was too slow, and does not blame the target; on either client.
func TestSlowlorisBodyGets408(t *testing.T) {
	tests := []struct {
		name   string
		header string
		start  string
	}{
		{"Content-Length body (own client)", "Content-Length: 1000", "0123456789"},
		{"chunked body (http.Transport)", "Transfer-Encoding: chunked", "a\r\n0123456789\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			upEnded := make(chan error, 1)
			up := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, err := io.Copy(io.Discard, r.Body)
				upEnded <- err
			}))
			pool := mustPool(t, PoolOptions{MaxFails: 1}, up.URL)
			addr, failures, logs := blameFront(t, ProxyOptions{Pool: pool, BodyTimeout: 200 * time.Millisecond, BodyMinRate: 1000}, nil)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: app\r\n%s\r\n\r\n%s", tc.header, tc.start) // and then nothing
			c.SetReadDeadline(time.Now().Add(waitDeadline))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			if !strings.HasPrefix(line, "HTTP/1.1 408 ") {
				t.Errorf("client got %q, want 408", line)
			}
			f := recv(t, "the ErrorHandler", failures)
			if f.status != http.StatusRequestTimeout || !errors.Is(f.err, ErrBodyTooSlow) {
				t.Errorf("ErrorHandler got %d %v, want 408 and ErrBodyTooSlow", f.status, f.err)
			}
			if err := recv(t, "the upstream request to be aborted", upEnded); err == nil {
				t.Error("upstream read the whole body, want its request aborted")
			}
			notCounted(t, pool)
			if strings.Contains(logs.String(), "level=WARN") {
				t.Errorf("a slow client logged as a warning:\n%s", logs)
			}
		})
	}
}

// A body that keeps coming at more than the minimum rate in every window
// may take much longer than BodyTimeout. A negative BodyTimeout means no
// deadline.
func TestBodyMinRateExtendsDeadline(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		rate    int64
		pause   time.Duration // between chunks
	}{
		// 10 chunks of 50 bytes, 100ms apart: 500 B/s for a second, against
		// a minimum of 10 B/s over each 300ms window.
		{"steady upload above the minimum rate", 300 * time.Millisecond, 10, 100 * time.Millisecond},
		{"no deadline", -1, 0, 100 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n, err := io.Copy(io.Discard, r.Body)
				fmt.Fprintf(w, "%d %v", n, err)
			}))
			pool := mustPool(t, PoolOptions{}, up.URL)
			addr, failures, _ := blameFront(t, ProxyOptions{Pool: pool, BodyTimeout: tc.timeout, BodyMinRate: tc.rate}, nil)
			pr, pw := io.Pipe()
			go func() {
				for range 10 {
					time.Sleep(tc.pause)
					if _, err := pw.Write([]byte(strings.Repeat("x", 50))); err != nil {
						return
					}
				}
				pw.Close()
			}()
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/up", pr)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || string(body) != "500 <nil>" {
				t.Errorf("got %d %q, want 200 %q", res.StatusCode, body, "500 <nil>")
			}
			select {
			case f := <-failures:
				t.Errorf("ErrorHandler called: %d %v", f.status, f.err)
			default:
			}
		})
	}
}

// Banked slowloris: a burst up front must not buy a later trickle the
// time it would take to send that burst again at the minimum rate. Each
// window must carry the minimum on its own.
func TestBurstThenTrickleGets408(t *testing.T) {
	up := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d %v", n, err)
	}))
	pool := mustPool(t, PoolOptions{}, up.URL)
	// Windows of 300ms, at least 300 bytes each (1000 B/s).
	addr, failures, _ := blameFront(t, ProxyOptions{Pool: pool, BodyTimeout: 300 * time.Millisecond, BodyMinRate: 1000}, nil)
	pr, pw := io.Pipe()
	go func() {
		defer pw.Close()
		if _, err := pw.Write([]byte(strings.Repeat("x", 5000))); err != nil { // 5 s of credit under start+timeout+bytes/rate
			return
		}
		for range 20 { // then 10 B/s for 2 s
			time.Sleep(100 * time.Millisecond)
			if _, err := pw.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/up", pr)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("burst then trickle: %d %q, want 408", res.StatusCode, body)
	}
	select {
	case f := <-failures:
		if !errors.Is(f.err, ErrBodyTooSlow) {
			t.Errorf("cause %v, want ErrBodyTooSlow", f.err)
		}
	case <-time.After(10 * time.Second):
		t.Error("ErrorHandler not called")
	}
}
