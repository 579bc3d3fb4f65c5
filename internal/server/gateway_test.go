package server_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/testenv"
	"github.com/sekisho/sekisho/pkg/verify"
)

const twoRoutes = `version: 1
pools: [{name: app, urls: ["{{UPSTREAM}}"]}]
routes:
  - {name: app, host: "*", path: /, pool: app, policy: {allow_authenticated: true}}
  - {name: admin, host: "*", path: /admin, pool: app, policy: {groups: [admins]}}
  - {name: open, host: "*", path: /public, pool: app, policy: {public: true}}
`

const pw = "correct horse battery"

func start(t *testing.T) *testenv.Env {
	e := testenv.Start(t, twoRoutes)
	e.AddUser("alice", pw, "alice@example.com", "admins", "staff")
	e.AddUser("bob", pw, "bob@example.com")
	return e
}

func TestSignInFlowAndIdentityHeaders(t *testing.T) {
	e := start(t)
	c := e.Client()
	status, _, h := e.Get(c, "/chat?x=1")
	if status != http.StatusFound || h.Get("Location") != "/.sekisho/login?rd=%2Fchat%3Fx%3D1" {
		t.Fatalf("anonymous browser request: %d Location %q, want 302 to sign-in with rd", status, h.Get("Location"))
	}
	if n := len(e.Upstream.Requests()); n != 0 {
		t.Fatalf("upstream saw %d requests before sign-in", n)
	}
	res := e.PostLogin(c, "alice", pw, "/chat?x=1")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/chat?x=1" {
		t.Fatalf("sign-in: %d Location %q", res.StatusCode, res.Header.Get("Location"))
	}
	status, body, _ := e.Get(c, "/chat?x=1")
	if status != 200 || body != "upstream ok" {
		t.Fatalf("signed-in request: %d %q", status, body)
	}
	up := e.Upstream.Last()
	want := map[string]string{"X-Sekisho-User": "alice", "X-Sekisho-Email": "alice@example.com", "X-Sekisho-Groups": "admins,staff", "X-Forwarded-For": "127.0.0.1"}
	for k, v := range want {
		if got := up.Header.Get(k); got != v {
			t.Errorf("upstream %s = %q, want %q", k, got, v)
		}
	}
	if up.URL.RawQuery != "x=1" || up.URL.Path != "/chat" {
		t.Errorf("upstream got %s?%s", up.URL.Path, up.URL.RawQuery)
	}
	// The app verifies the assertion with the public package and the gateway's JWKS.
	v, err := verify.New(verify.Options{JWKSURL: e.URL + "/.sekisho/jwks.json", Issuer: "sekisho", Audience: "app"})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := v.Verify(context.Background(), up.Header.Get("X-Sekisho-Assertion"))
	if err != nil {
		t.Fatalf("assertion does not verify: %v", err)
	}
	if claims.Subject != "alice" || claims.Email != "alice@example.com" {
		t.Errorf("claims = %+v", claims)
	}
	// A token minted for route "app" must not pass as one for "admin".
	va, _ := verify.New(verify.Options{JWKSURL: e.URL + "/.sekisho/jwks.json", Issuer: "sekisho", Audience: "admin"})
	if _, err := va.Verify(context.Background(), up.Header.Get("X-Sekisho-Assertion")); err == nil {
		t.Error("assertion for route app verified for route admin (audience confusion)")
	}
}

// The client never speaks for the gateway: whatever identity or forwarding
// headers it sends, in any case, duplicated or with underscores, the
// upstream sees only what sekisho set.
func TestSpoofedHeadersStripped(t *testing.T) {
	e := start(t)
	c := e.Login("bob", pw)
	req, _ := http.NewRequest("GET", e.URL+"/x", nil)
	req.Header["X-Sekisho-User"] = []string{"alice", "admin"}
	req.Header["x-sekisho-groups"] = []string{"admins"}
	req.Header["X_Sekisho_Email"] = []string{"alice@example.com"}
	req.Header["X-SEKISHO-ASSERTION"] = []string{"eyJhbGciOiJub25lIn0.e30."}
	req.Header["X-Forwarded-For"] = []string{"10.0.0.1"}
	req.Header["X_Forwarded_For"] = []string{"10.0.0.2"}
	req.Header["Forwarded"] = []string{"for=10.0.0.3"}
	req.Header["X-Real-Ip"] = []string{"10.0.0.4"}
	req.Header["X-Request-Id"] = []string{"forged-id"}
	req.Header["X-Forwarded-Proto"] = []string{"https"}
	req.Header.Set("Cookie", "theme=dark")
	status, _, _ := e.Do(c, req)
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	up := e.Upstream.Last()
	checks := []struct{ name, header, want string }{
		{"spoofed_user_header", "X-Sekisho-User", "bob"},
		{"spoofed_groups_header_lowercase", "X-Sekisho-Groups", ""},
		{"spoofed_email_header_underscore", "X-Sekisho-Email", "bob@example.com"},
		{"spoofed_xff_from_untrusted_peer", "X-Forwarded-For", "127.0.0.1"},
		{"spoofed_proto", "X-Forwarded-Proto", "http"},
		{"spoofed_forwarded", "Forwarded", ""},
		{"spoofed_real_ip", "X-Real-Ip", ""},
	}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			if got := up.Header.Values(tc.header); strings.Join(got, ",") != tc.want {
				t.Errorf("%s = %q, want %q", tc.header, got, tc.want)
			}
		})
	}
	for k := range up.Header {
		if strings.Contains(strings.ToLower(k), "_") {
			t.Errorf("underscore header %q reached the upstream", k)
		}
	}
	if id := up.Header.Get("X-Request-Id"); id == "forged-id" || len(id) != 16 {
		t.Errorf("X-Request-Id = %q, want the gateway's id", id)
	}
	if a := up.Header.Values("X-Sekisho-Assertion"); len(a) != 1 || strings.HasPrefix(a[0], "eyJhbGciOiJub25lIn0") {
		t.Errorf("forged assertion reached the upstream: %q", a)
	}
	t.Run("session_cookie_not_forwarded", func(t *testing.T) {
		if ck := up.Header.Get("Cookie"); strings.Contains(ck, "sekisho") || ck != "theme=dark" {
			t.Errorf("upstream Cookie = %q, want only the app's own cookie", ck)
		}
	})
}

func TestPolicy(t *testing.T) {
	e := start(t)
	alice, bob := e.Login("alice", pw), e.Login("bob", pw)
	anon := e.Client()
	tests := []struct {
		name   string
		c      *http.Client
		path   string
		accept string
		want   int
	}{
		{"member_of_group", alice, "/admin/users", "", 200},
		{"not_in_group_denied", bob, "/admin/users", "", 403},
		{"path_traversal_to_admin_dotdot", bob, "/x/../admin/users", "", 403},
		{"path_traversal_encoded_dotdot", bob, "/x/%2e%2e/admin", "", 403},
		{"double_slash_to_admin", bob, "//admin", "", 403},
		{"matrix_param_to_admin_refused", bob, "/admin;jsessionid=1", "", 400},
		{"encoded_slash_refused", bob, "/x%2f..%2fadmin", "", 400},
		{"encoded_letter_to_admin", bob, "/%61dmin", "", 403},
		{"public_route_anonymous", anon, "/public/page", "", 200},
		{"api_client_gets_401_not_redirect", anon, "/x", "application/json", 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hs []string
			if tc.accept != "" {
				hs = []string{"Accept", tc.accept}
			}
			status, body, h := e.Get(tc.c, tc.path, hs...)
			if status != tc.want {
				t.Fatalf("GET %s = %d, want %d (%s)", tc.path, status, tc.want, body)
			}
			if status >= 400 && h.Get("Sekisho-Generated") != "1" {
				t.Errorf("gateway error lacks the Sekisho-Generated marker")
			}
			if status == 401 && (!strings.Contains(body, `"request_id"`) || h.Get("WWW-Authenticate") == "") {
				t.Errorf("401 for a program must be JSON with request_id and WWW-Authenticate: %s %v", body, h)
			}
		})
	}
	// The upstream receives the normalised path.
	e.Get(alice, "/a/./b//c/../d/%7Euser")
	if p := e.Upstream.Last().URL.Path; p != "/a/b/d/~user" {
		t.Errorf("upstream path = %q, want /a/b/d/~user", p)
	}
}

func TestReservedPathsNeverProxied(t *testing.T) {
	e := start(t)
	c := e.Login("alice", pw)
	for _, p := range []string{"/.sekisho/nothing", "/.sekisho", "/%2esekisho/nothing", "/x/../.sekisho/admin"} {
		status, _, h := e.Get(c, p)
		if status != 404 || h.Get("Sekisho-Generated") != "1" {
			t.Errorf("GET %s = %d (generated %q), want a gateway 404", p, status, h.Get("Sekisho-Generated"))
		}
	}
	if n := len(e.Upstream.Requests()); n != 0 {
		t.Errorf("upstream saw %d requests for reserved paths", n)
	}
	status, body, _ := e.Get(c, "/.sekisho/healthz")
	if status != 200 || !strings.Contains(body, "ok") {
		t.Errorf("healthz = %d %q", status, body)
	}
}

func TestUnknownHostNoUpstream(t *testing.T) {
	e := testenv.Start(t, `version: 1
pools: [{name: app, urls: ["{{UPSTREAM}}"]}]
routes: [{name: app, host: app.example.com, pool: app, policy: {public: true}}]
`)
	status, _, _ := e.Get(e.Client(), "/")
	if status != 404 || len(e.Upstream.Requests()) != 0 {
		t.Fatalf("unknown host: %d, upstream requests %d; want 404 and none", status, len(e.Upstream.Requests()))
	}
	req, _ := http.NewRequest("GET", e.URL+"/", nil)
	req.Host = "APP.example.com:8443"
	if status, _, _ := e.Do(e.Client(), req); status != 200 {
		t.Fatalf("known host in other case with port: %d", status)
	}
}

func TestOpenRedirectAfterSignIn(t *testing.T) {
	e := start(t)
	for _, rd := range []string{"//evil.com", "/\\evil.com", "https:evil.com", "https://evil.com/", "/\t/evil.com", "/%2F%2Fevil.com", "javascript:alert(1)", "/.sekisho/logout"} {
		t.Run(url.PathEscape(rd), func(t *testing.T) {
			res := e.PostLogin(e.Client(), "alice", pw, rd)
			if loc := res.Header.Get("Location"); loc != "/" {
				t.Errorf("rd=%q redirected to %q, want /", rd, loc)
			}
		})
	}
}

func TestTamperedAndForgedCookies(t *testing.T) {
	e := start(t)
	c := e.Login("alice", pw)
	u, _ := url.Parse(e.URL)
	var value string
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "sekisho" {
			value = ck.Value
		}
	}
	if value == "" {
		t.Fatal("no session cookie")
	}
	flip := []byte(value)
	flip[len(flip)/2] ^= 1
	if flip[len(flip)/2] == value[len(value)/2] {
		t.Fatal("flip failed")
	}
	for name, v := range map[string]string{"bit_flipped": string(flip), "truncated": value[:len(value)-4], "garbage": "AAAA", "empty": ""} {
		t.Run(name, func(t *testing.T) {
			status, _, _ := e.Get(e.Client(), "/x", "Cookie", "sekisho="+v)
			if status != http.StatusFound {
				t.Errorf("tampered cookie got %d, want 302 to sign-in", status)
			}
		})
	}
	t.Run("duplicate_cookie_injection", func(t *testing.T) {
		status, _, _ := e.Get(e.Client(), "/x", "Cookie", "sekisho="+value+"; sekisho="+string(flip))
		if status == 200 {
			t.Error("two session cookies were accepted")
		}
	})
}

func TestLogoutRevokesReplayedCookie(t *testing.T) {
	e := start(t)
	c := e.Login("alice", pw)
	u, _ := url.Parse(e.URL)
	stolen := c.Jar.Cookies(u)
	// Sign out through the confirmation form.
	status, body, _ := e.Get(c, "/.sekisho/logout")
	m := strings.SplitN(body, `name="csrf" value="`, 2)
	if status != 200 || len(m) != 2 {
		t.Fatalf("logout page: %d", status)
	}
	token := m[1][:strings.IndexByte(m[1], '"')]
	res, err := c.PostForm(e.URL+"/.sekisho/logout", url.Values{"csrf": {token}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/.sekisho/login" {
		t.Fatalf("logout: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	// Replaying the old cookie (say, copied before sign-out) no longer works.
	replay := e.Client()
	replay.Jar.SetCookies(u, stolen)
	if status, _, _ := e.Get(replay, "/x"); status != http.StatusFound {
		t.Errorf("replayed cookie after sign-out: %d, want 302", status)
	}
}

func TestLogoutCSRF(t *testing.T) {
	e := start(t)
	c := e.Login("alice", pw)
	res, _ := c.PostForm(e.URL+"/.sekisho/logout", url.Values{"csrf": {"guess"}})
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("logout without the CSRF token: %d, want 403", res.StatusCode)
	}
	if status, _, _ := e.Get(c, "/x"); status != 200 {
		t.Fatalf("session should survive a forged logout, got %d", status)
	}
}

func TestLoginCSRF(t *testing.T) {
	e := start(t)
	t.Run("missing_token", func(t *testing.T) {
		res, _ := e.Client().PostForm(e.URL+"/.sekisho/login", url.Values{"username": {"alice"}, "password": {pw}})
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("status %d, want 403", res.StatusCode)
		}
	})
	t.Run("cross_site_origin", func(t *testing.T) {
		c := e.Client()
		token := e.LoginForm(c)
		req, _ := http.NewRequest("POST", e.URL+"/.sekisho/login", strings.NewReader(url.Values{"csrf": {token}, "username": {"alice"}, "password": {pw}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "https://evil.example")
		if status, _, _ := e.Do(c, req); status != http.StatusForbidden {
			t.Errorf("status %d, want 403", status)
		}
	})
}

func TestWrongPasswordAndLockout(t *testing.T) {
	e := start(t)
	for i := 0; i < 5; i++ {
		if res := e.PostLogin(e.Client(), "bob", "wrong password!!", "/"); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d, want 401", i, res.StatusCode)
		}
	}
	res := e.PostLogin(e.Client(), "bob", pw, "/")
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Fatalf("after 5 failures the right password got %d (Retry-After %q), want 429 — brute force not throttled", res.StatusCode, res.Header.Get("Retry-After"))
	}
	if res := e.PostLogin(e.Client(), "nobody", "wrong password!!", "/"); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("unknown user: %d, want the same 401 as a wrong password", res.StatusCode)
	}
}

// `sekisho user disable` runs in another process: the gateway learns of it
// through the store within seconds and ends the user's sessions.
func TestDisabledUserSessionRevoked(t *testing.T) {
	e := start(t)
	c := e.Login("bob", pw)
	if status, _, _ := e.Get(c, "/x"); status != 200 {
		t.Fatal("bob cannot reach the app")
	}
	if err := e.Store().SetDisabled(context.Background(), "bob", true); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, _, _ := e.Get(c, "/x")
		if status == http.StatusFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("disabled user's session still works after 15s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if res := e.PostLogin(e.Client(), "bob", pw, "/"); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("disabled user signed in again: %d", res.StatusCode)
	}
}

func TestUpstreamCannotForgeGatewayMarker(t *testing.T) {
	e := start(t)
	e.Upstream.Handler = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Sekisho-Generated", "1")
		w.WriteHeader(403)
	}
	c := e.Login("alice", pw)
	status, _, h := e.Get(c, "/x")
	if status != 403 || h.Get("Sekisho-Generated") != "" {
		t.Fatalf("app's 403 carried the gateway marker %q", h.Get("Sekisho-Generated"))
	}
}

func TestUpstreamDown502WithRequestID(t *testing.T) {
	e := start(t)
	c := e.Login("alice", pw)
	e.Upstream.Close()
	status, body, h := e.Get(c, "/x", "Accept", "application/json")
	if status != http.StatusBadGateway && status != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 502/503", status)
	}
	if id := h.Get("X-Request-Id"); id == "" || !strings.Contains(body, id) {
		t.Fatalf("error body %q lacks the request id %q", body, id)
	}
}

func TestAuditLine(t *testing.T) {
	e := start(t)
	c := e.Login("alice", pw)
	e.Get(c, "/x?token=SECRET")
	e.Get(e.Client(), "/x", "Authorization", "Bearer SECRETTOKEN")
	e.Stop()
	log := e.Audit.String()
	for _, want := range []string{`"route":"app"`, `"user":"alice"`, `"decision":"allow"`, `"decision":"deny"`, `"status":401`, `"reason":"signed in"`, `"path":"/x"`} {
		if !strings.Contains(log, want) {
			t.Errorf("audit log lacks %s:\n%s", want, log)
		}
	}
	for _, secret := range []string{"SECRET", pw, "sekisho="} {
		if strings.Contains(log, secret) {
			t.Errorf("audit log leaks %q", secret)
		}
	}
}
