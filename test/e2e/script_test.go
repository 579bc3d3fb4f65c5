package e2e

import (
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestScriptClient drives the gateway with a plain net/http client, as a
// script would: API-style requests without a session get a JSON 401 (never a
// redirect), and a client with a cookie jar signs in by posting the form.
func TestScriptClient(t *testing.T) {
	g := startGateway(t)

	t.Run("api requests without a session get a JSON 401, never a redirect", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			header string
			value  string
		}{
			{"Accept application/json", "Accept", "application/json"},
			{"Sec-Fetch-Mode cors", "Sec-Fetch-Mode", "cors"},
			{"X-Requested-With", "X-Requested-With", "XMLHttpRequest"},
			{"unknown bearer token", "Authorization", "Bearer not-a-real-token"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				req := newRequest(t, http.MethodGet, g.base+"/some/app/page?q=1", nil)
				req.Header.Set(tc.header, tc.value)
				resp, body := do(t, noRedirects(nil), req)
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("status = %d, want 401; Location %q; body:\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
				}
				if loc := resp.Header.Get("Location"); loc != "" {
					t.Errorf("a 401 for a program carries Location %q", loc)
				}
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("no WWW-Authenticate header on the 401")
				}
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("Content-Type = %q, want application/json", ct)
				}
				var e struct {
					RequestID string `json:"request_id"`
				}
				if err := json.Unmarshal(body, &e); err != nil {
					t.Fatalf("body is not JSON: %v\n%s", err, body)
				}
				if e.RequestID == "" {
					t.Errorf("JSON body has no request_id:\n%s", body)
				}
				if got := resp.Header.Get("X-Request-Id"); got != e.RequestID {
					t.Errorf("X-Request-Id header %q differs from the body's request_id %q", got, e.RequestID)
				}
			})
		}
	})

	t.Run("a browser without a session is sent to sign in", func(t *testing.T) {
		req := newRequest(t, http.MethodGet, g.base+"/some/app/page?q=1", nil)
		req.Header.Set("Accept", "text/html,application/xhtml+xml")
		resp, body := do(t, noRedirects(nil), req)
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("status = %d, want 302; body:\n%s", resp.StatusCode, body)
		}
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		if loc.Host != "" || loc.Path != "/.sekisho/login" || loc.Query().Get("rd") != "/some/app/page?q=1" {
			t.Errorf("Location = %q, want /.sekisho/login?rd=<escaped /some/app/page?q=1>", loc)
		}
	})

	t.Run("sign in by posting the form, then call the app", func(t *testing.T) {
		client := noRedirects(newJar(t))
		csrf := loginForm(t, client, g.base+"/.sekisho/login?rd="+url.QueryEscape("/some/app/page?q=1"))
		resp, body := postLogin(t, client, g.base, url.Values{
			"csrf": {csrf}, "rd": {"/some/app/page?q=1"},
			"username": {"alice"}, "password": {alicePassword},
		})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("POST /.sekisho/login: status = %d, want 303; body:\n%s", resp.StatusCode, body)
		}
		if loc := resp.Header.Get("Location"); loc != "/some/app/page?q=1" {
			t.Fatalf("after sign-in Location = %q, want /some/app/page?q=1", loc)
		}

		req := newRequest(t, http.MethodGet, g.base+"/some/app/page?q=1", nil)
		req.Header.Set("Accept", "application/json")
		resp, body = do(t, client, req)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET the app: status = %d, want 200; body:\n%s", resp.StatusCode, body)
		}
		var who whoamiJSON
		if err := json.Unmarshal(body, &who); err != nil {
			t.Fatalf("whoami body is not JSON: %v\n%s", err, body)
		}
		for name, want := range map[string]string{
			"X-Sekisho-User":   "alice",
			"X-Sekisho-Email":  "alice@example.com",
			"X-Sekisho-Groups": "admins",
		} {
			if got := who.header(name); got != want {
				t.Errorf("the app received %s = %q, want %q", name, got, want)
			}
		}
		if who.Path != "/some/app/page" {
			t.Errorf("the app received path %q, want /some/app/page", who.Path)
		}
		if who.Assertion.Status != "valid" {
			t.Errorf("assertion status = %q (%s), want valid", who.Assertion.Status, who.Assertion.Error)
		}
		if c := who.Assertion.Claims; c == nil || c.Subject != "alice" || c.Audience != "whoami" {
			t.Errorf("assertion claims = %+v, want sub alice, aud whoami", c)
		}
		if len(who.Assertion.Mismatches) > 0 {
			t.Errorf("whoami reports header/assertion mismatches: %q", who.Assertion.Mismatches)
		}
	})

	t.Run("a form without its csrf token does not sign in", func(t *testing.T) {
		jar := newJar(t)
		client := noRedirects(jar)
		loginForm(t, client, g.base+"/.sekisho/login") // sets the csrf cookie
		for _, tc := range []struct{ name, csrf string }{
			{"missing", ""},
			{"wrong", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				form := url.Values{"username": {"alice"}, "password": {alicePassword}}
				if tc.csrf != "" {
					form.Set("csrf", tc.csrf)
				}
				resp, body := postLogin(t, client, g.base, form)
				if resp.StatusCode == http.StatusSeeOther || resp.StatusCode == http.StatusOK {
					t.Fatalf("status = %d, want a refusal; body:\n%s", resp.StatusCode, body)
				}
				if c := sessionCookie(resp.Cookies()); c != nil {
					t.Errorf("a session cookie was set without a valid csrf token")
				}
			})
		}
	})

	// The attack: a link to /.sekisho/login?rd=//evil.example sends the
	// user, once signed in, to another site.
	t.Run("open redirect via rd is refused", func(t *testing.T) {
		for _, tc := range []struct{ name, rd string }{
			{"absolute URL", "https://evil.example/x"},
			{"scheme-relative //evil.example", "//evil.example/x"},
			{`backslash /\evil.example`, `/\evil.example/x`},
			{"encoded slash /%2F/evil.example", "/%2F/evil.example"},
			{"javascript scheme", "javascript:alert(1)"},
		} {
			rd := tc.rd
			t.Run(tc.name, func(t *testing.T) {
				client := noRedirects(newJar(t))
				csrf := loginForm(t, client, g.base+"/.sekisho/login")
				resp, body := postLogin(t, client, g.base, url.Values{
					"csrf": {csrf}, "rd": {rd},
					"username": {"alice"}, "password": {alicePassword},
				})
				if resp.StatusCode != http.StatusSeeOther {
					t.Fatalf("status = %d, want 303; body:\n%s", resp.StatusCode, body)
				}
				loc := resp.Header.Get("Location")
				u, err := url.Parse(loc)
				if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(loc, "/") ||
					strings.HasPrefix(loc, "//") || strings.HasPrefix(loc, `/\`) {
					t.Errorf("after sign-in with rd=%q, Location = %q: not a same-origin path", rd, loc)
				}
			})
		}
	})
}

// whoamiJSON is the part of the whoami app's JSON view the tests read.
type whoamiJSON struct {
	Path     string `json:"path"`
	Identity []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"identity_headers"`
	Assertion struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Claims *struct {
			Subject  string `json:"sub"`
			Audience string `json:"aud"`
		} `json:"claims"`
		Mismatches []string `json:"mismatches"`
	} `json:"assertion"`
}

func (w whoamiJSON) header(name string) string {
	for _, h := range w.Identity {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

func newJar(t *testing.T) *cookiejar.Jar {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return jar
}

// noRedirects returns a client that reports redirects instead of following
// them, so the tests see each 302/303 and its Location.
func noRedirects(jar http.CookieJar) *http.Client {
	return &http.Client{
		Jar:     jar,
		Timeout: stepTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

func newRequest(t *testing.T, method, u string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func do(t *testing.T, client *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	return resp, body
}

var (
	csrfInput = regexp.MustCompile(`<input[^>]*\bname="csrf"[^>]*>`)
	valueAttr = regexp.MustCompile(`\bvalue="([^"]*)"`)
)

// loginForm GETs the sign-in page and returns its hidden csrf field.
func loginForm(t *testing.T, client *http.Client, u string) string {
	t.Helper()
	req := newRequest(t, http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/html")
	resp, body := do(t, client, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status = %d, want 200; body:\n%s", u, resp.StatusCode, body)
	}
	input := csrfInput.Find(body)
	if input == nil {
		t.Fatalf("GET %s: no csrf field in the sign-in form:\n%s", u, body)
	}
	m := valueAttr.FindSubmatch(input)
	if m == nil || len(m[1]) == 0 {
		t.Fatalf("GET %s: the csrf field has no value: %s", u, input)
	}
	return html.UnescapeString(string(m[1]))
}

func postLogin(t *testing.T, client *http.Client, base string, form url.Values) (*http.Response, []byte) {
	t.Helper()
	req := newRequest(t, http.MethodPost, base+"/.sekisho/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	return do(t, client, req)
}

// sessionCookie returns sekisho's session cookie: "sekisho" on plain HTTP,
// "__Host-sekisho" on HTTPS.
func sessionCookie(cookies []*http.Cookie) *http.Cookie {
	for _, c := range cookies {
		if isSessionCookieName(c.Name) {
			return c
		}
	}
	return nil
}

func isSessionCookieName(name string) bool {
	return strings.TrimPrefix(name, "__Host-") == "sekisho"
}
