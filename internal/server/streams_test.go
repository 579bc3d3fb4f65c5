package server_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sekisho/sekisho/internal/testenv"
)

// streamConfig gives normal responses 300ms; the streams below outlive it.
const streamConfig = `version: 1
shutdown_grace: 2s
pools: [{name: app, urls: ["{{UPSTREAM}}"]}]
routes: [{name: app, host: "*", pool: app, timeout: 300ms, stream_idle_timeout: 5s, policy: {allow_authenticated: true}}]
`

// Through the whole gateway, an SSE stream that lasts longer than the route
// timeout arrives whole, and each event reaches the client before the
// upstream sends the next one (the upstream waits for the client's ack: a
// buffering gateway would deadlock here and fail at the deadline).
func TestSSEThroughGateway(t *testing.T) {
	e := testenv.Start(t, streamConfig)
	e.AddUser("alice", pw, "")
	c := e.Login("alice", pw)
	const events = 12
	ack := make(chan int)
	e.Upstream.Handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for i := 0; i < events; i++ {
			fmt.Fprintf(w, "data: token %d\n\n", i)
			http.NewResponseController(w).Flush()
			select {
			case got := <-ack:
				if got != i {
					return
				}
			case <-time.After(10 * time.Second):
				return // the event never arrived: buffered
			}
			time.Sleep(50 * time.Millisecond) // 12 x 50ms: longer than the 300ms route timeout
		}
	}
	req, _ := http.NewRequestWithContext(context.Background(), "GET", e.URL+"/v1/chat", nil)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	got := 0
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		if line != fmt.Sprintf("data: token %d", got) {
			t.Fatalf("event %d = %q", got, line)
		}
		ack <- got
		got++
	}
	if got != events {
		t.Fatalf("received %d of %d events (stream cut or buffered): %v", got, events, sc.Err())
	}
}

func TestNormalResponseCutAtTimeout(t *testing.T) {
	e := testenv.Start(t, streamConfig)
	e.AddUser("alice", pw, "")
	c := e.Login("alice", pw)
	e.Upstream.Handler = func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}
	if status, _, _ := e.Get(c, "/slow", "Accept", "application/json"); status != http.StatusGatewayTimeout {
		t.Fatalf("slow normal response: %d, want 504", status)
	}
}

func TestWebSocketThroughGateway(t *testing.T) {
	e := testenv.Start(t, streamConfig)
	e.AddUser("alice", pw, "")
	c := e.Login("alice", pw)
	e.Upstream.Handler = func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		for {
			typ, msg, err := conn.Read(r.Context())
			if err != nil {
				return
			}
			conn.Write(r.Context(), typ, append([]byte("echo "), msg...))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.URL, "http")+"/ws", &websocket.DialOptions{HTTPClient: c})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	for i, wait := range []time.Duration{0, 500 * time.Millisecond} { // the second message comes after the 300ms route timeout
		time.Sleep(wait)
		if err := conn.Write(ctx, websocket.MessageText, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		_, msg, err := conn.Read(ctx)
		if err != nil || string(msg) != fmt.Sprintf("echo %d", i) {
			t.Fatalf("message %d: %q %v", i, msg, err)
		}
	}
	if got := e.Upstream.Last().Header.Get("X-Sekisho-User"); got != "alice" {
		t.Errorf("WebSocket upgrade reached the app as %q, want alice", got)
	}
	t.Run("anonymous_upgrade_refused", func(t *testing.T) {
		_, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.URL, "http")+"/ws", nil)
		if err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("anonymous WebSocket: %v %v, want 401", res, err)
		}
	})
}

// SIGTERM: an in-flight request finishes within the grace period; a stream
// still open at its end is closed cleanly (the client sees the end of the
// body, not a reset), and Run returns.
func TestGracefulShutdown(t *testing.T) {
	e := testenv.Start(t, streamConfig)
	e.AddUser("alice", pw, "")
	c := e.Login("alice", pw)
	started := make(chan struct{}, 2)
	e.Upstream.Handler = func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: first\n\n")
			http.NewResponseController(w).Flush()
			started <- struct{}{}
			<-r.Context().Done()
			return
		}
		started <- struct{}{}
		time.Sleep(150 * time.Millisecond)
		fmt.Fprint(w, "finished")
	}
	type result struct {
		body string
		err  error
	}
	slow, stream := make(chan result, 1), make(chan result, 1)
	get := func(path string, out chan<- result) {
		res, err := c.Get(e.URL + path)
		if err != nil {
			out <- result{err: err}
			return
		}
		defer res.Body.Close()
		var b strings.Builder
		_, err = bufio.NewReader(res.Body).WriteTo(&b)
		out <- result{b.String(), err}
	}
	go get("/stream", stream)
	<-started
	go get("/slow", slow)
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- e.Stop() }()
	if r := <-slow; r.err != nil || r.body != "finished" {
		t.Errorf("in-flight request during shutdown: %q %v, want it to finish", r.body, r.err)
	}
	select {
	case r := <-stream:
		if r.err != nil || !strings.Contains(r.body, "data: first") {
			t.Errorf("stream at shutdown: %q %v, want a clean end", r.body, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("stream was not ended after the grace period")
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("shutdown did not finish")
	}
	if _, err := http.Get(e.URL + "/"); err == nil {
		t.Error("listener still accepts after shutdown")
	}
}
