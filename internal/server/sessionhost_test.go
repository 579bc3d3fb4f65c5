package server_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/testenv"
)

// loginOn signs alice in with the Host header host and returns the session
// cookie the gateway set (read from Set-Cookie: a cookie jar would drop a
// Domain cookie set by 127.0.0.1).
func loginOn(t *testing.T, e *testenv.Env, host string) *http.Cookie {
	t.Helper()
	c := e.Client()
	req, _ := http.NewRequest(http.MethodGet, e.URL+"/.sekisho/login", nil)
	req.Host = host
	_, body, _ := e.Do(c, req)
	_, rest, ok := strings.Cut(body, `name="csrf" value="`)
	token, _, _ := strings.Cut(rest, `"`)
	if !ok || token == "" {
		t.Fatalf("no csrf token on the sign-in page of %s", host)
	}
	form := url.Values{"csrf": {token}, "username": {"alice"}, "password": {pw}, "rd": {"/"}}
	req, _ = http.NewRequest(http.MethodPost, e.URL+"/.sekisho/login", strings.NewReader(form.Encode()))
	req.Host = host
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	for _, ck := range res.Cookies() {
		if ck.Name == "sekisho" && ck.MaxAge > 0 {
			return ck
		}
	}
	t.Fatalf("sign-in on %s: status %d, no session cookie in %q", host, res.StatusCode, res.Header.Values("Set-Cookie"))
	return nil
}

// getOn requests / on host with the session cookie and returns the status
// and Location.
func getOn(t *testing.T, e *testenv.Env, host string, ck *http.Cookie) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.URL+"/", nil)
	req.Host = host
	req.AddCookie(ck)
	status, _, h := e.Do(e.Client(), req)
	return status, h.Get("Location")
}

func TestSessionCookieReplayedOnAnotherHostIsSentToSignIn(t *testing.T) {
	e := testenv.Start(t, twoRoutes)
	e.AddUser("alice", pw, "alice@example.com", "admins")
	ck := loginOn(t, e, "notes.example.com")
	if ck.Domain != "" {
		t.Fatalf("host-bound session cookie has Domain %q", ck.Domain)
	}
	if status, _ := getOn(t, e, "NOTES.example.com:8443", ck); status != http.StatusOK {
		t.Fatalf("the issuing host (other case and port): %d, want 200", status)
	}
	before := len(e.Upstream.Requests())
	for _, host := range []string{"payroll.example.com", "example.com", "127.0.0.1"} {
		status, loc := getOn(t, e, host, ck)
		if status != http.StatusFound || !strings.HasPrefix(loc, "/.sekisho/login") {
			t.Errorf("cookie of notes.example.com replayed on %s: %d Location %q, want 302 to sign-in", host, status, loc)
		}
	}
	if n := len(e.Upstream.Requests()) - before; n != 0 {
		t.Errorf("upstream saw %d replayed requests", n)
	}
	e.Stop()
	if !strings.Contains(e.Audit.String(), "session bound to another host") {
		t.Errorf("the audit log does not give the refusal's reason:\n%s", e.Audit.String())
	}
}

func TestSignInDomainSharesTheSessionThroughTheGateway(t *testing.T) {
	e := testenv.Start(t, twoRoutes+"session: {sign_in_domain: example.com}\n")
	e.AddUser("alice", pw, "alice@example.com", "admins")
	ck := loginOn(t, e, "dify.example.com")
	if ck.Domain != "example.com" {
		t.Fatalf("session cookie Domain %q, want example.com", ck.Domain)
	}
	for _, host := range []string{"dify.example.com", "flowise.example.com", "example.com"} {
		if status, loc := getOn(t, e, host, ck); status != http.StatusOK {
			t.Errorf("shared session on %s: %d Location %q, want 200", host, status, loc)
		}
	}
	if up := e.Upstream.Last(); up == nil || strings.Contains(up.Header.Get("Cookie"), "sekisho") {
		t.Errorf("the session cookie reached the app: %v", up)
	}
	for _, host := range []string{"evilexample.com", "example.com.evil.net"} {
		status, loc := getOn(t, e, host, ck)
		if status != http.StatusFound || !strings.HasPrefix(loc, "/.sekisho/login") {
			t.Errorf("domain session replayed on look-alike %s: %d Location %q, want 302 to sign-in", host, status, loc)
		}
	}
}
