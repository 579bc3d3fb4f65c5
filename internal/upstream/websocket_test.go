package upstream

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsEcho is a WebSocket echo upstream; ended receives the error that ended
// each connection.
func wsEcho(t *testing.T, ended chan<- error) string {
	t.Helper()
	up := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := serveWSEcho(w, r); err != nil {
			ended <- err
		}
	}))
	return up.URL
}

// serveWSEcho accepts a WebSocket and echoes every message until the
// connection ends, and returns how it ended; nil if the upgrade failed
// (the client's error says why).
func serveWSEcho(w http.ResponseWriter, r *http.Request) error {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return nil
	}
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), waitDeadline)
	defer cancel()
	for {
		typ, msg, err := c.Read(ctx)
		if err == nil {
			err = c.Write(ctx, typ, msg)
		}
		if err != nil {
			return err
		}
	}
}

func wsURL(httpURL string) string { return "ws" + strings.TrimPrefix(httpURL, "http") + "/ws" }

func echo(t *testing.T, ctx context.Context, c *websocket.Conn, msg string) {
	t.Helper()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read echo of %q: %v", msg, err)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

func TestWebSocketEcho(t *testing.T) {
	tests := []struct {
		name string
		wrap func(http.Handler) http.Handler
	}{
		{"bare", func(h http.Handler) http.Handler { return h }},
		{"behind an audit ResponseWriter wrapper", audited},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ended := make(chan error, 1)
			up := wsEcho(t, ended)
			front := newServer(t, tc.wrap(NewProxy(ProxyOptions{
				Pool:              mustPool(t, PoolOptions{}, up),
				Timeout:           300 * time.Millisecond,
				StreamIdleTimeout: 5 * time.Second,
			})))
			testEcho(t, front.URL, ended)
		})
	}
}

// testEcho echoes a message before and after the proxy's Timeout (300ms at most).
func testEcho(t *testing.T, frontURL string, ended <-chan error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitDeadline)
	defer cancel()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c, _, err := websocket.Dial(ctx, wsURL(frontURL), &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatalf("dial through the proxy: %v", err)
	}
	defer c.CloseNow()
	echo(t, ctx, c, "before the timeout")
	time.Sleep(600 * time.Millisecond) // well past Timeout: a stream is not cut by it
	echo(t, ctx, c, "after the timeout")
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := recv(t, "the upstream to see the close", ended); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Errorf("upstream ended with %v, want a normal closure", err)
	}
}

func TestWebSocketEnds(t *testing.T) {
	tests := []struct {
		name     string
		idle     time.Duration
		shutdown bool
	}{
		{name: "idle timeout closes it", idle: 200 * time.Millisecond},
		{name: "shutdown closes it", idle: -1, shutdown: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ended := make(chan error, 1)
			up := wsEcho(t, ended)
			front, shutdown, done := shutdownFront(t, NewProxy(ProxyOptions{
				Pool:              mustPool(t, PoolOptions{}, up),
				StreamIdleTimeout: tc.idle,
			}))
			ctx, cancel := context.WithTimeout(context.Background(), waitDeadline)
			defer cancel()
			c, _, err := websocket.Dial(ctx, wsURL(front.URL), &websocket.DialOptions{HTTPClient: front.Client()})
			if err != nil {
				t.Fatalf("dial through the proxy: %v", err)
			}
			defer c.CloseNow()
			echo(t, ctx, c, "hello")
			if tc.shutdown {
				shutdown()
			}
			_, _, err = c.Read(ctx)
			if err == nil || ctx.Err() != nil {
				t.Errorf("read after the end = %v (test deadline passed: %v), want the connection closed by the proxy", err, ctx.Err() != nil)
			}
			if p := recv(t, "the proxy handler to return", done); p != nil {
				t.Errorf("proxy handler panicked: %v", p)
			}
			recv(t, "the upstream connection to end", ended)
		})
	}
}
