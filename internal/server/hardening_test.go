package server_test

import (
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/apikey"
	"github.com/sekisho/sekisho/internal/testenv"
)

// The attacks outside testing found against the request path, each pinned
// end to end through a running gateway.

const hardeningConfig = `version: 1
strip_headers: [X-Corp-User, "X-Corp-Auth-*"]
rules:
  - priority: 10
    description: scanner network
    match: {ip_ranges: ["127.0.0.2/32"]}
    action: deny
pools: [{name: app, urls: ["{{UPSTREAM}}"]}]
routes:
  - {name: app, host: "*", path: /, pool: app, policy: {allow_authenticated: true}}
  - {name: admin, host: "*", path: /admin, pool: app, policy: {groups: [admins]}}
  - {name: open, host: "*", path: /public, pool: app, policy: {public: true}}
  - name: chat
    host: "*"
    path: /chat
    pool: app
    policy: {public: true}
    allowed_origins: ["https://chat.example.com"]
  - name: exact
    host: exact.test
    path: /
    pool: app
    policy: {public: true}
    allowed_origins: ["https://partner.example.com"]
`

func startHardening(t *testing.T) *testenv.Env {
	e := testenv.Start(t, hardeningConfig)
	e.AddUser("alice", pw, "alice@example.com", "admins")
	e.AddUser("bob", pw, "bob@example.com")
	return e
}

// Servlet containers read "/public/..;/admin" as "/admin": sekisho must not
// match it as a public path and forward it.
func TestPathParameterDotSegmentEscapeRefused(t *testing.T) {
	e := startHardening(t)
	anon, bob := e.Client(), e.Login("bob", pw)
	for _, p := range []string{"/public/..;/admin", "/public/..%3b/admin", "/public/..%3B/admin", "/public;x=1/../admin",
		"/public/%2e%2e;/admin", "/admin;jsessionid=1"} {
		for name, c := range map[string]*http.Client{"anonymous": anon, "signed_in_non_admin": bob} {
			status, body, _ := e.Get(c, p)
			if status != http.StatusBadRequest {
				t.Errorf("%s GET %s = %d (%s), want 400", name, p, status, body)
			}
		}
	}
	if n := len(e.Upstream.Requests()); n != 0 {
		t.Errorf("the app saw %d requests with path parameters", n)
	}
}

// An API key scoped to /api/public must not reach /api/admin through a path
// parameter that a servlet container cuts away.
func TestPathParameterEscapesAPIKeyPathScopeRefused(t *testing.T) {
	e := startHardening(t)
	tok, rec, err := apikey.Generate(rand.Reader, apikey.Spec{Name: "scoped", Routes: []string{"app"}, PathPrefixes: []string{"/api/public"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Store().CreateAPIKey(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	auth := []string{"Proxy-Authorization", "Bearer " + tok}
	waitStatus(t, e, 200, "/api/public/x", auth...)
	for _, p := range []string{"/api/public/..;/admin", "/api/public/..%3B/admin", "/api/public;/../admin"} {
		if status, body, _ := e.Get(e.Client(), p, auth...); status != http.StatusBadRequest {
			t.Errorf("GET %s with the scoped key = %d (%s), want 400", p, status, body)
		}
	}
	if status, _, _ := e.Get(e.Client(), "/api/admin", auth...); status != http.StatusUnauthorized && status != http.StatusForbidden {
		t.Errorf("the scoped key reached /api/admin: %d", status)
	}
}

// Apps behind other proxies trust their identity and URL-override headers;
// a client sending them through sekisho would speak for a proxy it never
// passed, or have the app serve another path than the one checked.
func TestOtherProxiesHeadersNeverReachTheApp(t *testing.T) {
	e := startHardening(t)
	c := e.Login("bob", pw)
	req, _ := http.NewRequest("GET", e.URL+"/x", nil)
	spoofed := map[string]string{
		"X-Original-URL": "/admin", "X-Rewrite-URL": "/admin", "X-Auth-Request-User": "alice",
		"X-Auth-Request-Email": "alice@example.com", "X-Forwarded-User": "alice", "Remote-User": "alice",
		"Remote-Groups": "admins", "X-Remote-User": "alice", "Cf-Access-Authenticated-User-Email": "alice@example.com",
		"X-Goog-Authenticated-User-Email": "accounts.google.com:alice@example.com", "X-Http-Method-Override": "DELETE",
		"X_Original_URL": "/admin", "X-Corp-User": "alice", "X-Corp-Auth-Token": "forged",
	}
	for k, v := range spoofed {
		req.Header[k] = []string{v}
	}
	req.Header.Set("X-Corp-Users", "kept")
	if status, body, _ := e.Do(c, req); status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	up := e.Upstream.Last()
	for k := range spoofed {
		if v := up.Header.Values(k); len(v) > 0 {
			t.Errorf("%s = %q reached the app", k, v)
		}
	}
	if up.Header.Get("X-Corp-Users") != "kept" {
		t.Errorf("an ordinary header was stripped: %v", up.Header)
	}
}

// Session fixation across routes: the app behind one route answers with a
// Set-Cookie for the gateway's own session cookie.
func TestAppCannotSetTheGatewaysCookie(t *testing.T) {
	e := startHardening(t)
	e.Upstream.Handler = func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Set-Cookie", "sekisho=planted; Path=/")
		h.Add("Set-Cookie", "__Host-sekisho=planted; Path=/; Secure")
		h.Add("Set-Cookie", "sekisho-csrf=planted")
		h.Add("Set-Cookie", "app=kept; Path=/")
		w.Write([]byte("ok"))
	}
	c := e.Login("bob", pw)
	status, _, h := e.Get(c, "/public/x")
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	got := h.Values("Set-Cookie")
	if len(got) != 1 || got[0] != "app=kept; Path=/" {
		t.Errorf("Set-Cookie reaching the browser = %q, want only the app's own cookie", got)
	}
	// The session still works: nothing replaced it.
	if status, _, _ := e.Get(c, "/x"); status != 200 {
		t.Errorf("session after the app's attempt: %d", status)
	}
	e.Stop()
	if !strings.Contains(e.Audit.String(), "removed the app's Set-Cookie for the gateway's cookie") {
		t.Errorf("the audit line does not say a cookie was removed")
	}
}

// A gateway rule that denies an IP range must cover the sign-in page and
// password guessing too; the health check stays reachable for probes.
func TestEdgeRulesGuardTheSignInPage(t *testing.T) {
	e := startHardening(t)
	banned := bannedClient(e)
	for _, p := range []string{"/.sekisho/login", "/.sekisho/logout", "/.sekisho/oidc/start"} {
		if status, body, _ := e.Get(banned, p); status != http.StatusForbidden {
			t.Errorf("denied range GET %s = %d (%s), want 403", p, status, body)
		}
	}
	res, err := banned.PostForm(e.URL+"/.sekisho/login", url.Values{"username": {"alice"}, "password": {pw}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("denied range POST /.sekisho/login = %d, want 403 before any password check", res.StatusCode)
	}
	if status, _, _ := e.Get(banned, "/.sekisho/healthz"); status != 200 {
		t.Errorf("health check from the denied range = %d: a load balancer would see the replica as down", status)
	}
	if status, _, _ := e.Get(e.Client(), "/.sekisho/login"); status != 200 {
		t.Errorf("sign-in page from an allowed address = %d", status)
	}
	e.Stop()
	if !strings.Contains(e.Audit.String(), `"rule":"10 scanner network"`) {
		t.Errorf("the audit line does not name the rule that refused the sign-in page:\n%s", e.Audit.String())
	}
}

// bannedClient sends from 127.0.0.2, the range the config's rule denies.
func bannedClient(e *testenv.Env) *http.Client {
	c := e.Client()
	c.Transport = localAddrTransport("127.0.0.2")
	return c
}

// DNS rebinding and cross-site requests: a route with allowed_origins
// refuses requests whose Origin is not listed; on a wildcard host the
// request's own origin proves nothing (the rebinding page chose the name).
func TestForeignOriginRefused(t *testing.T) {
	e := startHardening(t)
	c := e.Client()
	tests := []struct {
		name, host, path, origin string
		want                     int
	}{
		{"listed_origin", "chat.example.com", "/chat/x", "https://chat.example.com", 200},
		{"listed_origin_upper_case", "chat.example.com", "/chat/x", "https://CHAT.example.com", 200},
		{"no_origin_header", "chat.example.com", "/chat/x", "", 200},
		{"foreign_origin", "chat.example.com", "/chat/x", "https://evil.example", 403},
		{"null_origin", "chat.example.com", "/chat/x", "null", 403},
		{"dns_rebinding_own_host_on_wildcard_route", "rebind.evil.example", "/chat/x", "http://rebind.evil.example", 403},
		{"dns_rebinding_same_origin_get_without_origin", "rebind.evil.example", "/chat/x", "", 403},
		{"dns_rebinding_by_address", "", "/chat/x", "", 403},
		{"exact_host_own_origin", "exact.test", "/x", "http://exact.test", 200},
		{"exact_host_listed_partner", "exact.test", "/x", "https://partner.example.com", 200},
		{"exact_host_foreign", "exact.test", "/x", "https://evil.example", 403},
		{"route_without_list_unchecked", "", "/public/x", "https://evil.example", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method, reqBody := "POST", io.Reader(strings.NewReader("{}"))
			if tc.origin == "" {
				method, reqBody = "GET", nil // same-origin GETs carry no Origin
			}
			req, _ := http.NewRequest(method, e.URL+tc.path, reqBody)
			if tc.host != "" {
				req.Host = tc.host
			}
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			status, body, _ := e.Do(c, req)
			if status != tc.want {
				t.Errorf("POST %s Host %q Origin %q = %d (%s), want %d", tc.path, tc.host, tc.origin, status, body, tc.want)
			}
		})
	}
}

// Programs without credentials need a 401 they can act on, not a redirect
// to a sign-in page: an EventSource, and any method a redirect would turn
// into a GET of the sign-in page.
func TestProgramsWithoutCredentialsGet401(t *testing.T) {
	e := startHardening(t)
	anon := e.Client()
	tests := []struct {
		name, method, accept string
		want                 int
	}{
		{"browser_page_get_redirected", "GET", "text/html", http.StatusFound},
		{"event_stream_get", "GET", "text/event-stream", http.StatusUnauthorized},
		{"delete", "DELETE", "", http.StatusUnauthorized},
		{"post", "POST", "text/html", http.StatusUnauthorized},
		{"put", "PUT", "", http.StatusUnauthorized},
		{"patch", "PATCH", "", http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, e.URL+"/x", nil)
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			status, body, h := e.Do(anon, req)
			if status != tc.want {
				t.Fatalf("%s /x Accept %q = %d, want %d (%s)", tc.method, tc.accept, status, tc.want, body)
			}
			if status == http.StatusUnauthorized {
				if h.Get("Content-Type") != "application/json" || !strings.Contains(body, `"request_id"`) || h.Get("WWW-Authenticate") == "" {
					t.Errorf("401 is not JSON with a request id and WWW-Authenticate: %v %s", h, body)
				}
			}
		})
	}
}

// localAddrTransport dials from ip (any 127.0.0.0/8 address is this machine).
func localAddrTransport(ip string) *http.Transport {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Transport{DialContext: d.DialContext}
}

// `sekisho user unlock` from another process lifts an account's lockout on
// the running gateway within seconds; an attacker's address stays locked.
func TestUserUnlockReachesTheRunningGateway(t *testing.T) {
	e := startHardening(t)
	c := e.Client()
	for i := 0; i < 5; i++ {
		e.PostLogin(c, "bob", "wrong password", "/")
	}
	if res := e.PostLogin(c, "bob", pw, "/"); res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("sign-in of a locked account = %d, want 429", res.StatusCode)
	}
	if err := e.Store().UnlockUser(context.Background(), "bob"); err != nil { // a second store handle: another process
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		res := e.PostLogin(c, "bob", pw, "/")
		if res.StatusCode == http.StatusSeeOther {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sign-in after unlock = %d, want 303 within the unlock poll", res.StatusCode)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A refused API key is told why, with a stable code a program can act on,
// never the browser's "sign_in_required"; an unknown key and a wrong secret
// read alike, so the codes are no oracle for guessing keys.
func TestRefusedAPIKeySaysWhy(t *testing.T) {
	e := startHardening(t)
	mk := func(spec apikey.Spec) string {
		tok, rec, err := apikey.Generate(rand.Reader, spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Store().CreateAPIKey(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := mk(apikey.Spec{Name: "good", Routes: []string{"app"}})
	revoked := mk(apikey.Spec{Name: "revoked", Routes: []string{"app"}})
	expired := mk(apikey.Spec{Name: "expired", Routes: []string{"app"}, ExpiresAt: time.Now().Add(-time.Hour)})
	scoped := mk(apikey.Spec{Name: "scoped", Routes: []string{"admin"}})
	waitStatus(t, e, 200, "/x", "Proxy-Authorization", "Bearer "+good)
	if _, err := e.Store().RevokeAPIKey(context.Background(), "revoked"); err != nil {
		t.Fatal(err)
	}
	wrongSecret := good[:len(good)-4] + "AAAA"
	if wrongSecret == good {
		wrongSecret = good[:len(good)-4] + "BBBB"
	}
	tests := []struct{ name, key, code string }{
		{"revoked", revoked, "api_key_revoked"},
		{"expired", expired, "api_key_expired"},
		{"out_of_scope", scoped, "api_key_out_of_scope"},
		{"wrong_secret", wrongSecret, "api_key_invalid"},
		{"unknown", "sekisho_" + strings.Repeat("A", len(good)-len("sekisho_")), "api_key_invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			deadline := time.Now().Add(15 * time.Second) // the revocation reaches the gateway within its poll
			for {
				status, body, _ := e.Get(e.Client(), "/x", "Proxy-Authorization", "Bearer "+tc.key)
				if status == http.StatusUnauthorized && strings.Contains(body, `"error":"`+tc.code+`"`) && strings.Contains(body, `"request_id"`) {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("GET /x with a %s key = %d %s, want 401 with error %q", tc.name, status, body, tc.code)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

// h2c smuggling: a client asks the app to switch to cleartext HTTP/2, in
// which every later request would pass unchecked. Through the gateway the
// app sees an ordinary request.
func TestH2CUpgradeNeverReachesTheApp(t *testing.T) {
	e := startHardening(t)
	c := e.Login("bob", pw)
	req, _ := http.NewRequest("GET", e.URL+"/x", nil)
	req.Header.Set("Connection", "Upgrade, HTTP2-Settings")
	req.Header.Set("Upgrade", "h2c")
	req.Header.Set("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")
	status, _, _ := e.Do(c, req)
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	up := e.Upstream.Last()
	for _, h := range []string{"Upgrade", "Http2-Settings"} {
		if v := up.Header.Values(h); len(v) > 0 {
			t.Errorf("%s = %q reached the app", h, v)
		}
	}
	if strings.Contains(strings.ToLower(strings.Join(up.Header.Values("Connection"), ",")), "upgrade") {
		t.Errorf("Connection: upgrade reached the app: %v", up.Header)
	}
}

// Slowloris upload: a client trickling its body must not hold a connection
// to the app for the whole route timeout; it gets 408, and the audit line
// blames the client, not the app.
func TestSlowUploadGets408(t *testing.T) {
	cfg := strings.Replace(hardeningConfig, "  - {name: app, host: \"*\", path: /, pool: app, policy: {allow_authenticated: true}}",
		"  - {name: app, host: \"*\", path: /, pool: app, policy: {allow_authenticated: true}, request_body_timeout: 1s, request_body_min_rate: 100000}", 1)
	e := testenv.Start(t, cfg)
	e.AddUser("bob", pw, "bob@example.com")
	e.Upstream.Handler = func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }
	c := e.Login("bob", pw)
	body, trickle := io.Pipe()
	go func() {
		defer trickle.Close()
		for i := 0; i < 30; i++ { // 1 byte every 200 ms: far below 100 kB/s
			if _, err := trickle.Write([]byte("x")); err != nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	req, _ := http.NewRequest("POST", e.URL+"/upload", body)
	req.ContentLength = 30
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("slow upload = %d, want 408", res.StatusCode)
	}
	e.Stop()
	log := e.Audit.String()
	if !strings.Contains(log, `"status":408`) || !strings.Contains(log, "the client's request failed") {
		t.Errorf("the audit line does not blame the client's upload:\n%s", log)
	}
}

// A full disk under the audit log: the replica says it is unhealthy, so a
// load balancer moves traffic away, and the metrics say why.
func TestHealthzUnhealthyWhileTheAuditDiskIsFull(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no /dev/full: CI must run this test")
		}
		t.Skip("no /dev/full here")
	}
	e := testenv.Start(t, strings.Replace(hardeningConfig, "version: 1\n", "version: 1\naudit: {output: /dev/full}\nadmin: {address: \"127.0.0.1:0\"}\n", 1))
	if status, _, _ := e.Get(e.Client(), "/public/x"); status != 200 {
		t.Fatalf("status %d", status)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, body, _ := e.Get(e.Client(), "/.sekisho/healthz")
		if status == http.StatusServiceUnavailable && strings.Contains(body, "audit log cannot be written") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz with the audit disk full = %d %s, want 503", status, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	res, err := http.Get("http://" + e.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(b), "sekisho_audit_failing 1") {
		t.Errorf("metrics do not say the audit log is failing")
	}
}

// The common IP-restriction shape: rules_default deny and one allow rule
// for the office range. An address outside it must not reach the sign-in
// page (password guessing from anywhere), though probes still reach healthz.
func TestAllowlistGuardsTheSignInPage(t *testing.T) {
	e := testenv.Start(t, `version: 1
rules_default: deny
rules:
  - priority: 10
    description: office only
    match: {ip_ranges: ["127.0.0.2/32"]}
    action: allow
pools: [{name: app, urls: ["{{UPSTREAM}}"]}]
routes:
  - {name: app, host: "*", path: /, pool: app, policy: {allow_authenticated: true}}
`)
	e.AddUser("alice", pw, "alice@example.com")
	outside, office := e.Client(), e.Client()
	office.Transport = localAddrTransport("127.0.0.2")
	if status, _, _ := e.Get(outside, "/.sekisho/login"); status != http.StatusForbidden {
		t.Errorf("sign-in page from outside the allowed range = %d, want 403", status)
	}
	res, err := outside.PostForm(e.URL+"/.sekisho/login", url.Values{"username": {"alice"}, "password": {pw}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("password POST from outside the allowed range = %d, want 403", res.StatusCode)
	}
	if status, _, _ := e.Get(office, "/.sekisho/login"); status != 200 {
		t.Errorf("sign-in page from the office = %d, want 200", status)
	}
	if status, _, _ := e.Get(outside, "/.sekisho/healthz"); status != 200 {
		t.Errorf("healthz from outside = %d, want 200 (probes)", status)
	}
}
