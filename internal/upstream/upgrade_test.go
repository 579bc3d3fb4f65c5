package upstream

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// seenRequest is what a switching upstream saw of one request.
type seenRequest struct {
	upgrade, connection, settings string
	// closed reports that the gateway closed the connection after the 101
	// (instead of speaking the new protocol on it).
	closed bool
}

// switcher is a raw upstream that answers every request 101 Switching
// Protocols to answer (an upstream that does h2c, as Hypercorn does), and
// reports what it saw and whether the gateway then closed the connection.
func switcher(t *testing.T, answer string) (string, <-chan seenRequest) {
	t.Helper()
	seen := make(chan seenRequest, 4)
	addr := rawUpstream(t, func(c *rawConn) {
		req, err := http.ReadRequest(c.br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		s := seenRequest{upgrade: req.Header.Get("Upgrade"), connection: req.Header.Get("Connection"), settings: req.Header.Get("Http2-Settings")}
		fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", answer)
		c.SetReadDeadline(time.Now().Add(waitDeadline))
		_, err = c.br.ReadByte()
		s.closed = err == io.EOF
		report(c.ctx, seen, s)
	})
	return "http://" + addr, seen
}

// h2c smuggling: a client asks for an upgrade to cleartext HTTP/2; if the
// upstream switched on it, every request inside the tunnel would reach the
// app unchecked. The upgrade goes upstream as an ordinary request (no
// Upgrade, no Connection: upgrade, no HTTP2-Settings), and the upstream's
// 101 is answered 502 with its connection closed, on either client.
func TestH2CSmugglingUpgradeNotRelayed(t *testing.T) {
	const settings = "AAMAAABkAARAAAAAAAIAAAAA"
	tests := []struct {
		name     string
		upgrades []string
		header   string
		chunked  bool // a streamed body: http.Transport carries it
		want     seenRequest
	}{
		{name: "h2c upgrade (own client)", header: "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: " + settings},
		{name: "h2c upgrade in capitals", header: "Connection: upgrade\r\nUpgrade: H2C\r\nHTTP2-Settings: " + settings},
		{name: "h2c upgrade with a streamed body (http.Transport)", chunked: true, header: "Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: " + settings},
		{name: "h2c upgrade although the route lists h2c", upgrades: []string{"websocket", "h2c"}, header: "Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: " + settings},
		{name: "HTTP2-Settings without Connection naming it", header: "HTTP2-Settings: " + settings},
		{name: "no upgrade asked, upstream switches anyway", header: ""},
		{name: "websocket offered after h2c, upstream picks h2c", header: "Connection: Upgrade\r\nUpgrade: h2c, websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
			want: seenRequest{upgrade: "websocket", connection: "Upgrade"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up, seen := switcher(t, "h2c")
			pool := mustPool(t, PoolOptions{MaxFails: -1}, up)
			addr, failures, _ := blameFront(t, ProxyOptions{Pool: pool, Upgrades: tc.upgrades}, nil)
			raw := "GET / HTTP/1.1\r\nHost: app\r\n"
			if tc.header != "" {
				raw += tc.header + "\r\n"
			}
			if tc.chunked {
				raw += "Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
			} else {
				raw += "\r\n"
			}
			if line := rawRequest(t, addr, raw, false); !strings.HasPrefix(line, "HTTP/1.1 502 ") {
				t.Errorf("client got %q, want 502", line)
			}
			if f := recv(t, "the ErrorHandler", failures); f.status != http.StatusBadGateway {
				t.Errorf("ErrorHandler got %d %v, want 502", f.status, f.err)
			}
			tc.want.closed = true
			if diff := cmp.Diff(tc.want, recv(t, "the upstream's report", seen), cmp.AllowUnexported(seenRequest{})); diff != "" {
				t.Errorf("upstream saw (-want +got):\n%s", diff)
			}
		})
	}
}

// An h2c upgrade to an upstream that does not switch is an ordinary
// request, answered as such.
func TestH2CUpgradeSentAsPlainRequest(t *testing.T) {
	up := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%q %q %q", r.Header.Get("Upgrade"), r.Header.Get("Connection"), r.Header.Get("Http2-Settings"))
	}))
	front := newFront(t, ProxyOptions{Pool: mustPool(t, PoolOptions{}, up.URL)})
	req, _ := http.NewRequest(http.MethodGet, front.URL, nil)
	req.Header.Set("Upgrade", "h2c")
	req.Header.Set("Connection", "Upgrade, HTTP2-Settings")
	req.Header.Set("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")
	res, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || string(body) != `"" "" ""` {
		t.Errorf("got %d %s, want 200 with no upgrade headers upstream", res.StatusCode, body)
	}
}

// A protocol other than WebSocket is relayed only when the route lists it;
// the 101 must name the protocol asked for.
func TestUpgradeOnlyToAllowedProtocols(t *testing.T) {
	// echoSwitcher switches to whatever was asked, then echoes a line; it
	// answers an ordinary request "plain".
	echoSwitcher := rawUpstream(t, func(c *rawConn) {
		req, err := http.ReadRequest(c.br)
		if err != nil {
			return
		}
		answer := req.Header.Get("X-Answer")
		if answer == "" {
			answer = req.Header.Get("Upgrade")
		}
		if req.Header.Get("Upgrade") == "" {
			c.reply("plain")
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", answer)
		line, _ := c.br.ReadString('\n')
		io.WriteString(c, "echo "+line)
	})
	tests := []struct {
		name     string
		upgrades []string
		ask      string
		answer   string // the protocol the upstream switches to; "" the one asked
		want     string // status line, then the echo for a 101
	}{
		{name: "listed protocol is relayed", upgrades: []string{"websocket", "x-echo"}, ask: "X-Echo", want: "HTTP/1.1 101 Switching Protocols echo ping"},
		{name: "unlisted protocol goes as a plain request", ask: "x-echo", want: "HTTP/1.1 200 OK"},
		{name: "empty list relays no upgrade", upgrades: []string{}, ask: "websocket", want: "HTTP/1.1 200 OK"},
		{name: "101 to another protocol than asked is refused", upgrades: []string{"x-echo"}, ask: "x-echo", answer: "x-other", want: "HTTP/1.1 502 Bad Gateway"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			front := newFront(t, ProxyOptions{Pool: mustPool(t, PoolOptions{}, "http://"+echoSwitcher), Upgrades: tc.upgrades})
			c, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(waitDeadline))
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: %s\r\nX-Answer: %s\r\n\r\n", tc.ask, tc.answer)
			br := bufio.NewReader(c)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := "HTTP/1.1 " + res.Status
			if res.StatusCode == http.StatusSwitchingProtocols {
				io.WriteString(c, "ping\n")
				line, _ := br.ReadString('\n')
				got += " " + strings.TrimSpace(line)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCheckUpgrades(t *testing.T) {
	tests := []struct {
		protocols []string
		want      string // "" for no error
	}{
		{[]string{"websocket", "x-echo/2"}, ""},
		{[]string{"websocket", "h2c"}, `upgrade 2: "h2c": cleartext HTTP/2 upgrades are never relayed`},
		{[]string{"H2C/1"}, `upgrade 1: "H2C/1": cleartext HTTP/2`},
		{[]string{""}, `upgrade 1: "" is not a protocol name`},
		{[]string{"web socket"}, `upgrade 1: "web socket" is not a protocol name`},
	}
	for _, tc := range tests {
		err := CheckUpgrades(tc.protocols)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckUpgrades(%q) = %v, want nil", tc.protocols, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("CheckUpgrades(%q) = %v, want %q", tc.protocols, err, tc.want)
		}
	}
}
