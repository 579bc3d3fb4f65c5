package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestBrowserSignIn is the story in a real headless Chromium: open an
// app URL, get the sign-in page, sign in, land on the app (the whoami
// upstream) and see the identity; sign out and get sent back to sign in.
// Then bob: a wrong password, and a route his groups do not allow.
//
// The steps share one browser and run in order; the first failure stops the
// story, since every later step depends on it.
func TestBrowserSignIn(t *testing.T) {
	chromium := chromiumPath(t)
	g := startGateway(t)
	b := startBrowser(t, chromium)
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}
	var aliceCookie string

	step("an app URL without a session shows the sign-in page", func(t *testing.T) {
		resp := run(t, b, chromedp.NavigateResponse(g.base+"/some/app/page?q=1"))
		if resp.Status != http.StatusOK {
			t.Errorf("status = %d, want 200 (after the redirect)", resp.Status)
		}
		loc := location(t, b)
		if loc.Path != "/.sekisho/login" || loc.Query().Get("rd") != "/some/app/page?q=1" {
			t.Errorf("URL = %s, want /.sekisho/login?rd=<escaped /some/app/page?q=1>", loc)
		}
		if title := run(t, b, chromedp.Title()); !strings.Contains(title, "Sign in") {
			t.Errorf("title = %q, want it to contain \"Sign in\"", title)
		}
		if rd := run(t, b, chromedp.Value(chromedp.CSS(`input[name="rd"]`))); rd != "/some/app/page?q=1" {
			t.Errorf("the form's rd = %q, want /some/app/page?q=1", rd)
		}
		b.screenshot(t, "sign-in")
	})

	step("alice signs in and lands on the app with her identity", func(t *testing.T) {
		resp := b.signIn(t, "alice", alicePassword)
		if resp.Status != http.StatusOK {
			t.Errorf("status = %d, want 200", resp.Status)
		}
		if got, want := location(t, b).String(), g.base+"/some/app/page?q=1"; got != want {
			t.Fatalf("after sign-in the URL is %s, want %s", got, want)
		}
		w := b.whoami(t)
		for name, want := range map[string]string{
			"X-Sekisho-User":   "alice",
			"X-Sekisho-Email":  "alice@example.com",
			"X-Sekisho-Groups": "admins",
			"Path":             "/some/app/page",
			"sub":              "alice",
			"aud (route)":      "whoami",
		} {
			if got := w.rows[name]; got != want {
				t.Errorf("whoami shows %s = %q, want %q", name, got, want)
			}
		}
		if w.assertion != "valid" {
			t.Errorf("whoami shows the assertion as %q, want valid", w.assertion)
		}
		if len(w.warnings) > 0 {
			t.Errorf("whoami warns: %q", w.warnings)
		}
		b.screenshot(t, "whoami")
	})

	step("the session cookie is HttpOnly, SameSite=Lax and hidden from scripts", func(t *testing.T) {
		c := b.sessionCookie(t, g.base)
		if c == nil {
			t.Fatal("no session cookie after sign-in")
		}
		aliceCookie = c.Name + "=" + c.Value
		if !c.HTTPOnly {
			t.Error("session cookie is not HttpOnly")
		}
		if c.SameSite != network.CookieSameSiteLax {
			t.Errorf("session cookie SameSite = %q, want Lax", c.SameSite)
		}
		if c.Size >= 1024 {
			t.Errorf("session cookie is %d bytes, want < 1 KiB", c.Size)
		}
		if js := run(t, b, chromedp.Evaluate[string](`document.cookie`)); strings.Contains(js, c.Value) || strings.Contains(js, "sekisho") {
			t.Errorf("document.cookie shows sekisho's cookies: %q", js)
		}
	})

	step("alice, in group admins, may open /admin", func(t *testing.T) {
		resp := run(t, b, chromedp.NavigateResponse(g.base+"/admin"))
		if resp.Status != http.StatusOK {
			t.Fatalf("status = %d, want 200", resp.Status)
		}
		w := b.whoami(t)
		if w.rows["X-Sekisho-User"] != "alice" || w.rows["aud (route)"] != "admins-only" {
			t.Errorf("whoami shows user %q, aud %q; want alice, admins-only", w.rows["X-Sekisho-User"], w.rows["aud (route)"])
		}
	})

	step("sign out sends her back to sign in", func(t *testing.T) {
		b.do(t, chromedp.Navigate(g.base+"/.sekisho/logout"))
		if text := b.text(t, "main"); !strings.Contains(text, "Signed in as alice") {
			t.Errorf("the sign-out page says %q, want \"Signed in as alice\"", text)
		}
		b.screenshot(t, "sign-out")
		b.click(t, button("Sign out"))
		if loc := location(t, b); loc.Path != "/.sekisho/login" {
			t.Errorf("after sign-out the URL is %s, want /.sekisho/login", loc)
		}
		if c := b.sessionCookie(t, g.base); c != nil {
			t.Errorf("the session cookie is still in the browser after sign-out")
		}
	})

	step("after sign-out the app asks for sign-in again", func(t *testing.T) {
		b.do(t, chromedp.Navigate(g.base+"/some/app/page"))
		loc := location(t, b)
		if loc.Path != "/.sekisho/login" || loc.Query().Get("rd") != "/some/app/page" {
			t.Errorf("URL = %s, want /.sekisho/login?rd=%%2Fsome%%2Fapp%%2Fpage", loc)
		}
	})

	// A copy of the cookie taken before sign-out (from a proxy log, another
	// tab, malware) must be dead too: sign-out revokes on the server.
	step("the signed-out session cookie is revoked on the server", func(t *testing.T) {
		req := newRequest(t, http.MethodGet, g.base+"/some/app/page", nil)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Cookie", aliceCookie)
		resp, body := do(t, noRedirects(nil), req)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("replaying alice's old cookie: status = %d, want 401; body:\n%s", resp.StatusCode, body)
		}
	})

	step("bob with a wrong password sees an error on the sign-in page", func(t *testing.T) {
		b.signIn(t, "bob", "not-bobs-password-at-all")
		if loc := location(t, b); loc.Path != "/.sekisho/login" {
			t.Errorf("URL = %s, want /.sekisho/login", loc)
		}
		if msg := b.text(t, "#login-error"); msg != "Wrong username or password." {
			t.Errorf("error = %q, want \"Wrong username or password.\"", msg)
		}
		if role := run(t, b, chromedp.Evaluate[string](`document.querySelector("#login-error").getAttribute("role")`)); role != "alert" {
			t.Errorf("the error has role %q, want alert (screen readers announce it)", role)
		}
		if pw := run(t, b, chromedp.Value(chromedp.ID("password"))); pw != "" {
			t.Error("the password field is filled in again after a failed sign-in")
		}
		b.screenshot(t, "sign-in-error")
	})

	var deniedID string
	step("bob signs in but may not open /admin", func(t *testing.T) {
		b.signIn(t, "bob", bobPassword)
		if loc := location(t, b); loc.Path != "/some/app/page" {
			t.Fatalf("after sign-in the URL is %s, want /some/app/page", loc)
		}
		if w := b.whoami(t); w.rows["X-Sekisho-User"] != "bob" || w.assertion != "valid" {
			t.Errorf("whoami shows user %q, assertion %q; want bob, valid", w.rows["X-Sekisho-User"], w.assertion)
		}
		resp := run(t, b, chromedp.NavigateResponse(g.base+"/admin"))
		if resp.Status != http.StatusForbidden {
			t.Errorf("status = %d, want 403", resp.Status)
		}
		if h1 := b.text(t, "h1"); h1 != "Access denied" {
			t.Errorf("heading = %q, want \"Access denied\"", h1)
		}
		if title := run(t, b, chromedp.Title()); !strings.Contains(title, "Access denied") {
			t.Errorf("title = %q, want it to contain \"Access denied\"", title)
		}
		deniedID = headerValue(resp.Headers, "X-Request-Id")
		if deniedID == "" || !strings.Contains(b.text(t, "main"), deniedID) {
			t.Errorf("the 403 page does not show the request id %q of its X-Request-Id header", deniedID)
		}
		b.screenshot(t, "access-denied")
	})

	step("the audit log has the denial and no secrets", func(t *testing.T) {
		line := waitAuditLine(t, g, deniedID)
		if line.Decision != "deny" || line.User != "bob" || line.Route != "admins-only" || line.Status != http.StatusForbidden || line.Path != "/admin" {
			t.Errorf("audit line for %s = %+v, want deny of bob on admins-only /admin with 403", deniedID, line)
		}
		logs := g.stdout.String() + g.stderr.String()
		for name, secret := range map[string]string{
			"alice's password":       alicePassword,
			"bob's password":         bobPassword,
			"the wrong password":     "not-bobs-password-at-all",
			"alice's session cookie": strings.SplitN(aliceCookie, "=", 2)[1],
		} {
			if strings.Contains(logs, secret) {
				t.Errorf("the gateway's logs contain %s", name)
			}
		}
	})
}

// signIn fills in the sign-in form on the current page, clicks "Sign in" and
// waits for the page that answers.
func (b *browser) signIn(t *testing.T, user, password string) *network.Response {
	t.Helper()
	b.do(t,
		chromedp.WaitVisible(chromedp.ID("username")),
		// A failed attempt leaves the name in the field. (chromedp's SetValue
		// cannot set "": it drops the empty argument and the field gets
		// "undefined".)
		chromedp.Evaluate[chromedp.Void](`document.getElementById("username").value = ""`),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), password),
	)
	return b.click(t, button("Sign in"))
}

// click clicks the element and waits for the page load it causes; it returns
// the response of the final document (after redirects).
func (b *browser) click(t *testing.T, sel chromedp.Search) *network.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(sel))
	if err != nil {
		t.Fatalf("browser: clicking %s: %v", sel, err)
	}
	return resp
}

// button selects a button by its visible label, as a person finds it.
func button(label string) chromedp.Search {
	return chromedp.Search(`//button[normalize-space()="` + label + `"]`)
}

func location(t *testing.T, b *browser) *url.URL {
	t.Helper()
	u, err := url.Parse(run(t, b, chromedp.Location()))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// text returns the rendered text of the first element matching css.
func (b *browser) text(t *testing.T, css string) string {
	t.Helper()
	return strings.TrimSpace(run(t, b, chromedp.Text(chromedp.CSS(css))))
}

// whoamiPage is what the whoami app's HTML page shows.
type whoamiPage struct {
	rows      map[string]string // every table row: header name or claim -> value
	assertion string            // the assertion badge: valid, invalid, missing, not checked
	warnings  []string          // header/assertion mismatches
}

func (b *browser) whoami(t *testing.T) whoamiPage {
	t.Helper()
	if title := run(t, b, chromedp.Title()); !strings.HasPrefix(title, "whoami") {
		t.Fatalf("not the whoami page: title %q", title)
	}
	raw := run(t, b, chromedp.Evaluate[[]byte](`({
		rows: Object.fromEntries([...document.querySelectorAll("tr")]
			.filter(r => r.querySelector("th") && r.querySelector("td"))
			.map(r => [r.querySelector("th").textContent.trim(), r.querySelector("td").textContent.trim()])),
		assertion: (document.querySelector(".badge") || {textContent: ""}).textContent.trim(),
		warnings: [...document.querySelectorAll(".warn")].map(e => e.textContent.trim()),
	})`))
	var v struct {
		Rows      map[string]string `json:"rows"`
		Assertion string            `json:"assertion"`
		Warnings  []string          `json:"warnings"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("reading the whoami page: %v\n%s", err, raw)
	}
	return whoamiPage{rows: v.Rows, assertion: v.Assertion, warnings: v.Warnings}
}

// sessionCookie returns sekisho's session cookie as the browser holds it for
// base, or nil.
func (b *browser) sessionCookie(t *testing.T, base string) *network.Cookie {
	t.Helper()
	res := run(t, b, chromedp.Action[network.GetCookiesResult](
		func(ctx context.Context, tg *chromedp.Target) (network.GetCookiesResult, error) {
			return cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
		}))
	for i := range res.Cookies {
		if isSessionCookieName(res.Cookies[i].Name) {
			return res.Cookies[i]
		}
	}
	return nil
}

func headerValue(h network.Headers, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			if s, ok := v.(string); ok {
				return s
			}
		}
	}
	return ""
}

// auditLine is the part of an audit line the tests read.
type auditLine struct {
	RequestID string `json:"request_id"`
	Route     string `json:"route"`
	Path      string `json:"path"`
	User      string `json:"user"`
	Decision  string `json:"decision"`
	Status    int    `json:"status"`
}

// waitAuditLine returns the audit line with the request id; the gateway
// writes it after the response, so it may need a moment to arrive.
func waitAuditLine(t *testing.T, g *gateway, id string) auditLine {
	t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for {
		for l := range strings.Lines(g.stdout.String()) {
			var a auditLine
			if json.Unmarshal([]byte(l), &a) == nil && a.RequestID == id {
				return a
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit line with request_id %q", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
