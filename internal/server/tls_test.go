package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/testenv"
)

func TestSelfSignedTLS(t *testing.T) {
	e := testenv.Start(t, `version: 1
listen:
  tls: {mode: self_signed}
  http_redirect_address: 127.0.0.1:0
pools: [{name: app, urls: ["{{UPSTREAM}}"]}]
routes: [{name: app, host: "*", pool: app, policy: {allow_authenticated: true}}]
`)
	e.AddUser("alice", pw, "alice@example.com")
	c := e.Client()
	res := e.PostLogin(c, "alice", pw, "/")
	t.Run("http2_to_clients", func(t *testing.T) {
		if res.ProtoMajor != 2 {
			t.Errorf("protocol %s, want HTTP/2 over TLS", res.Proto)
		}
	})
	t.Run("host_prefixed_secure_cookie", func(t *testing.T) {
		var cookie string
		for _, v := range res.Header.Values("Set-Cookie") {
			if strings.HasPrefix(v, "__Host-sekisho=") {
				cookie = v
			}
		}
		for _, attr := range []string{"Path=/", "Secure", "HttpOnly", "SameSite=Lax"} {
			if !strings.Contains(cookie, attr) {
				t.Errorf("session cookie %q lacks %s", cookie, attr)
			}
		}
		if strings.Contains(cookie, "Domain=") {
			t.Errorf("__Host- cookie has a Domain: %q", cookie)
		}
		if len(cookie) > 1024 {
			t.Errorf("cookie is %d bytes, want < 1 KiB", len(cookie))
		}
	})
	t.Run("hsts", func(t *testing.T) {
		_, _, h := e.Get(c, "/")
		if got := h.Get("Strict-Transport-Security"); got != "max-age=31536000" {
			t.Errorf("Strict-Transport-Security = %q", got)
		}
	})
	t.Run("signed_in_over_tls", func(t *testing.T) {
		if status, body, _ := e.Get(c, "/x"); status != 200 || body != "upstream ok" {
			t.Errorf("GET /x = %d %q", status, body)
		}
	})
	t.Run("http_redirects_to_https", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://"+e.RedirectAddr+"/a/b?c=d", nil)
		req.Host = "localhost"
		res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		_, port, _ := strings.Cut(e.Addr, ":")
		if want := "https://localhost:" + port + "/a/b?c=d"; res.StatusCode/100 != 3 || res.Header.Get("Location") != want {
			t.Errorf("redirect = %d %q, want 30x %q", res.StatusCode, res.Header.Get("Location"), want)
		}
	})
	t.Run("open_redirect_via_Host_header", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://"+e.RedirectAddr+"/", nil)
		req.Host = "evil.example"
		res, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if loc := res.Header.Get("Location"); strings.Contains(loc, "evil") {
			t.Errorf("redirected to %q", loc)
		}
	})
}

func TestMetricsOnAdminListener(t *testing.T) {
	e := testenv.Start(t, `version: 1
admin: {address: "127.0.0.1:0"}
pools: [{name: app, urls: ["{{UPSTREAM}}"], health_check: {path: /, interval: 1s, timeout: 500ms}}]
routes: [{name: app, host: "*", pool: app, policy: {public: true}}]
`)
	e.Get(e.Client(), "/x")
	res, err := http.Get("http://" + e.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{`sekisho_requests_total{code="200",decision="allow",route="app"} 1`, `sekisho_upstream_healthy{pool="app"`, "go_goroutines"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The public listener does not serve metrics: /metrics there is the app's.
	if _, body, _ := e.Get(e.Client(), "/metrics"); body != "upstream ok" {
		t.Errorf("public /metrics answered %q, want the app's answer", body)
	}
}
