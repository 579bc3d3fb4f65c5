package whoami

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/assert"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/pkg/verify"
)

const issuer = "https://gw.example.test"

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	signer   *assert.Signer
	verifier *verify.Verifier
	handler  http.Handler
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return t0.Add(time.Minute) }
	s, err := assert.NewSigner(assert.SignerOptions{Keys: []*ecdsa.PrivateKey{key}, Issuer: issuer,
		Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(s.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	v, err := verify.NewWithKeys(set, verify.Options{Issuer: issuer, InsecureAnyAudience: true, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return fixture{signer: s, verifier: v, handler: New(Options{Verifier: v, Now: now})}
}

func (f fixture) token(t *testing.T, route string) string {
	t.Helper()
	tok, err := f.signer.Sign(route, identity.Identity{
		Kind: identity.Session, User: "alice", Email: "alice@example.test",
		Groups: []string{"eng"}, Provider: "local",
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func serve(h http.Handler, headers http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "http://dify.example.test/some/path?q=1", nil)
	for k, vs := range headers {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func getJSON(t *testing.T, h http.Handler, headers http.Header) view {
	t.Helper()
	headers = headers.Clone()
	if headers == nil {
		headers = http.Header{}
	}
	headers.Set("Accept", "application/json")
	w := serve(h, headers)
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	var v view
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, w.Body)
	}
	return v
}

func TestAssertionStatus(t *testing.T) {
	f := newFixture(t)
	good := f.token(t, "dify")
	tests := []struct {
		name    string
		handler http.Handler
		headers http.Header
		want    assertionView
	}{
		{
			name:    "valid",
			handler: f.handler,
			headers: http.Header{"X-Sekisho-Assertion": {good}, "X-Sekisho-User": {"alice"}, "X-Sekisho-Email": {"alice@example.test"}},
			want: assertionView{Status: "valid", Claims: &claimsView{
				Subject: "alice", Email: "alice@example.test", Groups: []string{"eng"}, Kind: "session",
				Provider: "local", Issuer: issuer, Audience: "dify",
				IssuedAt: "2025-03-01T12:00:00Z", Expiry: "2025-03-01T12:05:00Z", ExpiresIn: "4m0s",
			}},
		},
		{
			name:    "valid_but_headers_disagree",
			handler: f.handler,
			headers: http.Header{"X-Sekisho-Assertion": {good}, "X-Sekisho-User": {"mallory"}, "X-Sekisho-Email": {"alice@example.test"}},
			want: assertionView{Status: "valid", Claims: &claimsView{
				Subject: "alice", Email: "alice@example.test", Groups: []string{"eng"}, Kind: "session",
				Provider: "local", Issuer: issuer, Audience: "dify",
				IssuedAt: "2025-03-01T12:00:00Z", Expiry: "2025-03-01T12:05:00Z", ExpiresIn: "4m0s",
			}, Mismatches: []string{`X-Sekisho-User is "mallory" but sub is "alice"`}},
		},
		{
			name:    "forged_assertion",
			handler: f.handler,
			headers: http.Header{"X-Sekisho-Assertion": {good[:len(good)-10] + "AAAAAAAAAA"}},
			want:    assertionView{Status: "invalid", Error: "token signature is invalid"},
		},
		{
			name:    "two_assertions",
			handler: f.handler,
			headers: http.Header{"X-Sekisho-Assertion": {good, good}},
			want:    assertionView{Status: "invalid", Error: "2 X-Sekisho-Assertion headers"},
		},
		{name: "missing", handler: f.handler, want: assertionView{Status: "missing"}},
		{
			name:    "no_verifier",
			handler: New(Options{}),
			headers: http.Header{"X-Sekisho-Assertion": {good}},
			want:    assertionView{Status: "not checked"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := getJSON(t, tc.handler, tc.headers).Assertion
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("assertion (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRequestView(t *testing.T) {
	f := newFixture(t)
	good := f.token(t, "dify")
	got := getJSON(t, f.handler, http.Header{
		"X-Sekisho-Assertion": {good},
		"X-Sekisho-User":      {"alice"},
		"X-Sekisho-Groups":    {"eng"},
		"X-Forwarded-For":     {"192.0.2.7"},
		"X-Forwarded-Proto":   {"https"},
		"X-Request-Id":        {"req-123"},
		"User-Agent":          {"test"},
	})
	got.Assertion = assertionView{}
	want := view{
		Method: "GET", Host: "dify.example.test", Path: "/some/path", RequestID: "req-123",
		Identity: []header{
			{"X-Sekisho-Assertion", good[:previewEnds] + "…" + good[len(good)-previewEnds:] + " (" + strconv.Itoa(len(good)) + " bytes)"},
			{"X-Sekisho-Groups", "eng"},
			{"X-Sekisho-User", "alice"},
		},
		Forwarded: []header{{"X-Forwarded-For", "192.0.2.7"}, {"X-Forwarded-Proto", "https"}, {"X-Request-Id", "req-123"}},
		Other:     []string{"Accept", "User-Agent"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("view (-want +got):\n%s", diff)
	}
}

// Credentials that reach the app must never be echoed back, in either view,
// and the full assertion is never shown (it could be replayed).
func TestNeverEchoesCredentials(t *testing.T) {
	f := newFixture(t)
	good := f.token(t, "dify")
	secrets := map[string]string{
		"Cookie":                    "__Host-sekisho=SECRET-COOKIE-VALUE",
		"Authorization":             "Bearer SECRET-BEARER-VALUE",
		"Proxy-Authorization":       "Basic SECRET-PROXY-VALUE",
		"X-Forwarded-Access-Token":  "SECRET-FORWARDED-TOKEN",
		"X-Sekisho-Debug-Cookie":    "SECRET-SEKISHO-COOKIE",
		"X-Forwarded-Authorization": "SECRET-FORWARDED-AUTHZ",
	}
	for _, accept := range []string{"application/json", "text/html"} {
		t.Run(accept, func(t *testing.T) {
			h := http.Header{"Accept": {accept}, "X-Sekisho-Assertion": {good}}
			for k, v := range secrets {
				h.Set(k, v)
			}
			body := serve(f.handler, h).Body.String()
			for name, secret := range secrets {
				if strings.Contains(body, strings.TrimPrefix(strings.TrimPrefix(secret, "Bearer "), "Basic ")) {
					t.Errorf("%s value echoed in the page", name)
				}
			}
			if strings.Contains(body, good) {
				t.Error("full assertion echoed in the page")
			}
			if !strings.Contains(body, "Cookie") {
				t.Error("the page should still list the Cookie header by name")
			}
		})
	}
}

func TestHTML(t *testing.T) {
	f := newFixture(t)
	good := f.token(t, "dify")
	w := serve(f.handler, http.Header{
		"Accept":              {"text/html,application/xhtml+xml,application/json;q=0.9"},
		"X-Sekisho-Assertion": {good},
		"X-Sekisho-User":      {"alice"},
		"X-Sekisho-Email":     {"alice@example.test"},
		"X-Forwarded-Host":    {`<script>alert("x")</script>`},
	})
	body := w.Body.String()
	checks := []struct {
		name string
		ok   bool
	}{
		{"content_type_html", w.Header().Get("Content-Type") == "text/html; charset=utf-8"},
		{"csp_no_scripts", strings.Contains(w.Header().Get("Content-Security-Policy"), "default-src 'none'")},
		{"no_store", w.Header().Get("Cache-Control") == "no-store"},
		{"xss_header_escaped", !strings.Contains(body, "<script>") && strings.Contains(body, "&lt;script&gt;")},
		{"shows_valid", strings.Contains(body, `class="badge valid">valid</span>`)},
		{"shows_subject", strings.Contains(body, "<td>alice</td>")},
		{"shows_route", strings.Contains(body, "<td>dify</td>")},
		{"logout_link_get", strings.Contains(body, `href="/.sekisho/logout"`) && !strings.Contains(body, "<form")},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !c.ok {
				t.Errorf("check failed; body:\n%s", body)
			}
		})
	}
}

func TestHTMLInvalid(t *testing.T) {
	f := newFixture(t)
	body := serve(f.handler, http.Header{"X-Sekisho-Assertion": {"not.a.token"}}).Body.String()
	if !strings.Contains(body, `class="badge invalid">invalid</span>`) {
		t.Errorf("bad assertion not shown as invalid:\n%s", body)
	}
}

func TestHead(t *testing.T) {
	f := newFixture(t)
	r := httptest.NewRequest(http.MethodHead, "/", nil)
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, r)
	if w.Code != http.StatusOK || w.Body.Len() != 0 {
		t.Errorf("HEAD: status %d, %d body bytes; want 200 and none", w.Code, w.Body.Len())
	}
}
