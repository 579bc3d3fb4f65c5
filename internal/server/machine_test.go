package server_test

import (
	"context"
	"crypto/rand"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/apikey"
	"github.com/sekisho/sekisho/internal/authn/bearer/jwtcheck/jwttest"
	"github.com/sekisho/sekisho/internal/testenv"
)

// One host serves the browser UI and the API: browsers sign in, programs
// send API keys or bearer tokens; the app's own Authorization passes.
const machineConfig = `version: 1
bearer_issuers:
  - name: ci
    issuer_url: "{{ISSUER}}"
    jwks_url: "{{ISSUER}}/jwks"
    audiences: [sekisho-test]
    required_claims: {repository_owner: example-org}
pools: [{name: app, urls: ["{{UPSTREAM}}"]}]
routes:
  - name: ui
    host: "*"
    path: /
    pool: app
    policy: {allow_authenticated: true}
  - name: api
    host: "*"
    path: /api/v1
    pool: app
    auth: {authorization_header: true, bearer_issuers: [ci]}
    policy: {users: ["ci:repo:example-org/app"]}
  - name: flowise-api
    host: "*"
    path: /flowise/api
    pool: app
    policy: {allow_authenticated: true}
`

func startMachine(t *testing.T) (*testenv.Env, jwttest.Key) {
	key := jwttest.NewEC(t, "k1")
	jwks := jwttest.NewServer(t, jwttest.Set(key))
	cfg := strings.ReplaceAll(machineConfig, "{{ISSUER}}", jwks.URL)
	e := testenv.Start(t, cfg)
	return e, key
}

func createKey(t testing.TB, e *testenv.Env, name string, routes ...string) string {
	t.Helper()
	tok, rec, err := apikey.Generate(rand.Reader, apikey.Spec{Name: name, Routes: routes})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Store().CreateAPIKey(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return tok
}

// waitStatus polls until GET path with headers answers want (keys created
// from another process appear within the poll interval).
func waitStatus(t *testing.T, e *testenv.Env, want int, path string, headers ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		status, body, _ := e.Get(e.Client(), path, headers...)
		if status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s = %d (%s), want %d", path, status, body, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAPIKeysOnTheSameHostAsTheUI(t *testing.T) {
	e, _ := startMachine(t)
	key := createKey(t, e, "ci-bot", "api")
	other := createKey(t, e, "flowise-bot", "flowise-api")
	waitStatus(t, e, 200, "/api/v1/run", "Proxy-Authorization", "Bearer "+key)
	up := e.Upstream.Last()
	if up.Header.Get("X-Sekisho-User") != "apikey:ci-bot" || up.Header.Get("Proxy-Authorization") != "" {
		t.Fatalf("upstream saw user %q, Proxy-Authorization %q", up.Header.Get("X-Sekisho-User"), up.Header.Get("Proxy-Authorization"))
	}
	t.Run("authorization_header_allowed_route_strips_sekisho_key", func(t *testing.T) {
		if status, _, _ := e.Get(e.Client(), "/api/v1/run", "Authorization", "Bearer "+key); status != 200 {
			t.Fatalf("status %d", status)
		}
		if got := e.Upstream.Last().Header.Get("Authorization"); got != "" {
			t.Fatalf("sekisho's key reached the app in Authorization: %q", got)
		}
	})
	t.Run("apps_own_authorization_passes_untouched", func(t *testing.T) {
		status, _, _ := e.Get(e.Client(), "/flowise/api/prediction", "Proxy-Authorization", "Bearer "+other, "Authorization", "Bearer flowise-own-key")
		if status != 200 || e.Upstream.Last().Header.Get("Authorization") != "Bearer flowise-own-key" {
			t.Fatalf("status %d, app saw Authorization %q", status, e.Upstream.Last().Header.Get("Authorization"))
		}
	})
	t.Run("key_used_on_another_route", func(t *testing.T) {
		if status, _, _ := e.Get(e.Client(), "/flowise/api/x", "Proxy-Authorization", "Bearer "+key); status != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", status)
		}
	})
	t.Run("one_bit_flipped", func(t *testing.T) {
		b := []byte(key)
		b[len(b)-3] ^= 1
		if status, _, _ := e.Get(e.Client(), "/api/v1/run", "Proxy-Authorization", "Bearer "+string(b)); status != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", status)
		}
	})
	t.Run("unauthenticated_api_call_gets_401_json_not_redirect", func(t *testing.T) {
		status, body, h := e.Get(e.Client(), "/api/v1/run", "Accept", "application/json")
		if status != 401 || h.Get("WWW-Authenticate") == "" || !strings.Contains(body, "request_id") {
			t.Fatalf("%d %v %s", status, h, body)
		}
	})
	t.Run("revoked_key_refused_within_poll", func(t *testing.T) {
		if _, err := e.Store().RevokeAPIKey(context.Background(), "ci-bot"); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, e, 401, "/api/v1/run", "Proxy-Authorization", "Bearer "+key)
	})
}

func TestBearerTokensFromTrustedIssuer(t *testing.T) {
	e, key := startMachine(t)
	now := time.Now()
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"iss": strings.TrimSuffix(e.Config.BearerIssuers[0].IssuerURL, "/"), "aud": "sekisho-test", "sub": "repo:example-org/app",
			"repository_owner": "example-org", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	good := jwttest.SignWith(t, key, claims(nil))
	if status, body, _ := e.Get(e.Client(), "/api/v1/run", "Authorization", "Bearer "+good); status != 200 {
		t.Fatalf("CI job with a valid token: %d %s", status, body)
	}
	if got := e.Upstream.Last().Header.Get("X-Sekisho-User"); got != "ci:repo:example-org/app" {
		t.Fatalf("identity %q, want the issuer-qualified subject", got)
	}
	attacks := map[string]string{
		"wrong_audience":          jwttest.SignWith(t, key, claims(func(c map[string]any) { c["aud"] = "other" })),
		"expired":                 jwttest.SignWith(t, key, claims(func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() })),
		"other_repository_owner":  jwttest.SignWith(t, key, claims(func(c map[string]any) { c["repository_owner"] = "evil-org" })),
		"forged_by_another_key":   jwttest.SignWith(t, jwttest.NewEC(t, "k1"), claims(nil)),
		"subject_not_in_policy":   jwttest.SignWith(t, key, claims(func(c map[string]any) { c["sub"] = "repo:example-org/other" })),
		"alg_none":                "eyJhbGciOiJub25lIiwia2lkIjoiazEifQ." + jwttest.B64(claims(nil)) + ".",
		"token_on_route_not_open": "",
	}
	for name, tok := range attacks {
		t.Run(name, func(t *testing.T) {
			path := "/api/v1/run"
			if name == "token_on_route_not_open" {
				tok, path = good, "/flowise/api/x"
			}
			status, _, _ := e.Get(e.Client(), path, "Proxy-Authorization", "Bearer "+tok, "Accept", "application/json")
			if status != http.StatusUnauthorized && status != http.StatusForbidden {
				t.Fatalf("status %d, want 401/403", status)
			}
		})
	}
}

func TestMaxAgeReauth(t *testing.T) {
	e := testenv.Start(t, `version: 1
pools: [{name: app, urls: ["{{UPSTREAM}}"]}]
routes:
  - {name: app, host: "*", pool: app, policy: {allow_authenticated: true}}
  - {name: billing, host: "*", path: /billing, pool: app, auth: {max_age: 1s}, policy: {allow_authenticated: true}}
`)
	e.AddUser("alice", pw, "")
	c := e.Login("alice", pw)
	if status, _, _ := e.Get(c, "/billing"); status != 200 {
		t.Fatalf("fresh sign-in on a max_age route: %d", status)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _, h := e.Get(c, "/billing")
		if status == http.StatusFound && strings.HasPrefix(h.Get("Location"), "/.sekisho/login?rd=%2Fbilling") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stale sign-in still admitted to the max_age route: %d", status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if status, _, _ := e.Get(c, "/other"); status != 200 {
		t.Fatalf("the session must still work on routes without max_age: %d", status)
	}
}
