package oidc

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestCallbackRefusesBadInput runs the callback against an in-process
// provider that returns crafted ID tokens. Each case names the attack or
// failure; none may yield a session.
func TestCallbackRefusesBadInput(t *testing.T) {
	op := newFakeOP(t)
	now := time.Now()
	good := func(nonce string) map[string]any {
		return map[string]any{"iss": op.URL, "aud": "client-1", "sub": "u1", "email": "u1@example.com", "email_verified": true,
			"nonce": nonce, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "auth_time": now.Unix(), "hd": "example.com"}
	}
	with := func(m map[string]any, k string, v any) map[string]any {
		m[k] = v
		return m
	}
	without := func(m map[string]any, k string) map[string]any {
		delete(m, k)
		return m
	}
	unsignedNone := func(claims map[string]any) string {
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
		p, _ := json.Marshal(claims)
		return h + "." + base64.RawURLEncoding.EncodeToString(p) + "."
	}

	for _, tc := range []struct {
		name   string
		preset string
		// token prepares the provider's answer; nonce is the flow's.
		token func(t *testing.T, nonce string)
		// callback builds the callback query from the flow's state; nil: code=c&state=state.
		callback func(state string) string
		// otherBrowser sends the callback from a browser without the flow cookie.
		otherBrowser bool
		// replay sends the callback a second time (the first one is fine).
		replay bool
		// advance moves the gateway clock between start and callback.
		advance    time.Duration
		wantStatus int
		wantText   string
	}{
		{name: "missing state", callback: func(string) string { return "code=c" },
			wantStatus: 400, wantText: "has no state"},
		{name: "state that sekisho never issued", callback: func(string) string { return "code=c&state=" + randomToken() },
			wantStatus: 400, wantText: "another browser"},
		{name: "state from another browser (login CSRF)", otherBrowser: true,
			wantStatus: 400, wantText: "another browser"},
		{name: "duplicated state parameter", callback: func(s string) string { return "code=c&state=" + s + "&state=" + s },
			wantStatus: 400, wantText: "malformed"},
		{name: "stale state older than ten minutes", advance: 11 * time.Minute,
			wantStatus: 400, wantText: "too long"},
		{name: "replayed callback", replay: true, token: func(t *testing.T, n string) { op.respond(op.mint(t, good(n))) },
			wantStatus: 400, wantText: "already used"},
		{name: "wrong nonce (token injection)", token: func(t *testing.T, n string) { op.respond(op.mint(t, good("other-nonce"))) },
			wantStatus: 502, wantText: "could not be verified"},
		{name: "missing nonce", token: func(t *testing.T, n string) { op.respond(op.mint(t, without(good(n), "nonce"))) },
			wantStatus: 502, wantText: "could not be verified"},
		{name: "ID token from another issuer", token: func(t *testing.T, n string) {
			op.respond(op.mint(t, with(good(n), "iss", "https://evil.example")))
		}, wantStatus: 502, wantText: "could not be verified"},
		{name: "ID token for another audience", token: func(t *testing.T, n string) {
			op.respond(op.mint(t, with(good(n), "aud", "someone-elses-client")))
		}, wantStatus: 502, wantText: "could not be verified"},
		{name: "expired ID token", token: func(t *testing.T, n string) {
			op.respond(op.mint(t, with(good(n), "exp", now.Add(-time.Hour).Unix())))
		}, wantStatus: 502, wantText: "could not be verified"},
		{name: "alg none unsigned ID token", token: func(t *testing.T, n string) { op.respond(unsignedNone(good(n))) },
			wantStatus: 502, wantText: "could not be verified"},
		{name: "ID token signed by another key", token: func(t *testing.T, n string) {
			other := newFakeOP(t)
			op.respond(other.mint(t, good(n)))
		}, wantStatus: 502, wantText: "could not be verified"},
		{name: "error=access_denied from the provider", callback: func(s string) string {
			return "error=access_denied&error_description=user+said+no&state=" + s
		}, wantStatus: 403, wantText: "cancelled or refused"},
		{name: "code exchange failure", token: func(t *testing.T, n string) {
			op.respondRaw(400, `{"error":"invalid_grant","error_description":"code expired"}`)
		}, wantStatus: 502, wantText: "refused to complete"},
		{name: "token response without id_token", token: func(t *testing.T, n string) {
			op.respondRaw(200, `{"access_token":"at","token_type":"Bearer"}`)
		}, wantStatus: 502, wantText: "did not return an identity"},
		{name: "hd mismatch for the google preset", preset: PresetGoogle, token: func(t *testing.T, n string) {
			op.respond(op.mint(t, with(good(n), "hd", "evil.example")))
		}, wantStatus: 403, wantText: "not allowed here"},
		{name: "consumer account without hd for the google preset", preset: PresetGoogle, token: func(t *testing.T, n string) {
			op.respond(op.mint(t, without(good(n), "hd")))
		}, wantStatus: 403, wantText: "not allowed here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t)
			p := ProviderOptions{Name: "corp", Issuer: op.URL, ClientID: "client-1", ClientSecret: []byte("s")}
			g.setup(t, p, nil)
			if tc.preset == PresetGoogle {
				// The preset pins Google's issuer; test its hd rule against the fake issuer.
				g.h.providers["corp"].opts.Preset = PresetGoogle
				g.h.providers["corp"].opts.AllowedDomains = []string{"example.com"}
			}
			c := browser(t)
			q, flowCookie := startFlow(t, c, g, "corp", "/app")
			state, nonce := q.Get("state"), q.Get("nonce")
			if tc.token != nil {
				tc.token(t, nonce)
			} else {
				op.respond(op.mint(t, good(nonce)))
			}
			g.clock.Advance(tc.advance)
			cbq := "code=c&state=" + url.QueryEscape(state)
			if tc.callback != nil {
				cbq = tc.callback(state)
			}
			sender := c
			if tc.otherBrowser {
				sender = browser(t)
			}
			req, _ := http.NewRequest(http.MethodGet, g.URL+CallbackPath+"?"+cbq, nil)
			if tc.replay {
				resp, body := get(t, noFollow(sender), req.URL.String())
				if resp.StatusCode != http.StatusSeeOther {
					t.Fatalf("first callback: status %d, want 303; body:\n%s", resp.StatusCode, body)
				}
				// The attacker replays the URL with a copy of the flow cookie.
				req.AddCookie(flowCookie)
				sender = &http.Client{}
			}
			resp, err := noFollow(sender).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			body := string(raw)
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status = %d, want %d; body:\n%s", resp.StatusCode, tc.wantStatus, body)
			}
			if !strings.Contains(body, tc.wantText) {
				t.Errorf("page does not say %q:\n%s", tc.wantText, body)
			}
			if !strings.Contains(body, "req-test") {
				t.Errorf("page does not show the request id:\n%s", body)
			}
			for _, ck := range resp.Cookies() {
				if ck.Name == g.codec.CookieName() && ck.MaxAge > 0 {
					t.Errorf("a session cookie was issued")
				}
			}
		})
	}
}

// TestCallbackAcceptsGoodToken is the control for the table above: the
// same fake provider with a good token signs in.
func TestCallbackAcceptsGoodToken(t *testing.T) {
	op := newFakeOP(t)
	g := newGateway(t)
	g.setup(t, ProviderOptions{Name: "corp", Issuer: op.URL, ClientID: "client-1", ClientSecret: []byte("s"), GroupsClaim: "realm_access.roles"}, nil)
	c := browser(t)
	q, _ := startFlow(t, c, g, "corp", "/app")
	now := time.Now()
	op.respond(op.mint(t, map[string]any{"iss": op.URL, "aud": "client-1", "sub": "u1", "email": "U1@Example.com", "email_verified": "true",
		"nonce": q.Get("nonce"), "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"realm_access": map[string]any{"roles": []any{"dev", 7, "ops"}}}))
	if got := q.Get("code_challenge_method"); got != "S256" || q.Get("code_challenge") == "" {
		t.Errorf("authorization request has code_challenge_method %q, want S256 with a challenge", got)
	}
	resp, body := get(t, c, g.URL+CallbackPath+"?code=c&state="+q.Get("state"))
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/app" {
		t.Fatalf("status %d at %s, want 200 at /app; body:\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	for _, want := range []string{`"User":"u1@example.com"`, `"Email":"u1@example.com"`, `"Groups":["dev","ops"]`, `"Provider":"corp"`} {
		if !strings.Contains(body, want) {
			t.Errorf("session %s lacks %s", body, want)
		}
	}
}
