package server_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/testenv"
)

// fakeIdentityServer is the metadata server's identity endpoint: a JWT
// (unsigned: only its aud and exp matter here) for the audience asked.
func fakeIdentityServer(t *testing.T, up *atomic.Bool) {
	t.Helper()
	md := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() || r.Header.Get("Metadata-Flavor") != "Google" || r.URL.Path != "/computeMetadata/v1/instance/service-accounts/default/identity" {
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Metadata-Flavor", "Google")
		enc := base64.RawURLEncoding.EncodeToString
		fmt.Fprint(w, enc([]byte(`{"alg":"RS256"}`))+"."+enc([]byte(fmt.Sprintf(`{"aud":%q,"exp":%d,"email":"sekisho@acme.iam.gserviceaccount.com"}`,
			r.URL.Query().Get("audience"), time.Now().Add(time.Hour).Unix())))+".sig")
	}))
	t.Cleanup(md.Close)
	t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(md.URL, "http://"))
}

func tokenAudience(t *testing.T, header string) string {
	tok, ok := strings.CutPrefix(header, "Bearer ")
	parts := strings.Split(tok, ".")
	if !ok || len(parts) != 3 {
		return ""
	}
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct{ Aud string }
	json.Unmarshal(b, &c)
	return c.Aud
}

// A Cloud Run app with internal ingress admits only sekisho's service
// account: every request (and health check) carries an ID token for the
// app's URL in X-Serverless-Authorization, the app's own Authorization
// header goes through untouched, and a token a client sends itself in
// X-Serverless-Authorization never reaches the app (the attack: invoking
// the service with a token of one's own choosing through the gateway).
func TestCloudRunUpstreamGetsAnIDToken(t *testing.T) {
	var mdUp atomic.Bool
	mdUp.Store(true)
	fakeIdentityServer(t, &mdUp)
	var checks atomic.Int64
	var app atomic.Pointer[http.Request] // the last request for the app (health checks come too)
	e := testenv.Start(t, `version: 1
pools:
  - name: flowise
    urls: ["{{UPSTREAM}}"]
    google_id_token: {}
    health_check: {path: /healthz, interval: 1s, timeout: 500ms}
routes: [{name: flowise, host: "*", pool: flowise, policy: {public: true}}]
`)
	e.Upstream.Handler = func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if tokenAudience(t, r.Header.Get("X-Serverless-Authorization")) == "http://"+r.Host {
				checks.Add(1)
			}
			return
		}
		app.Store(r)
		fmt.Fprint(w, "ok")
	}
	status, _, _ := e.Get(e.Client(), "/api/v1/prediction", "Authorization", "Bearer flowise-app-key",
		"X-Serverless-Authorization", "Bearer attacker-chosen")
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	last := app.Load()
	want := e.Upstream.URL // scheme and host: the audience Cloud Run expects
	if aud := tokenAudience(t, last.Header.Get("X-Serverless-Authorization")); aud != want {
		t.Errorf("the app got X-Serverless-Authorization %q (audience %q), want an ID token for %s", last.Header.Get("X-Serverless-Authorization"), aud, want)
	}
	if got := last.Header.Get("Authorization"); got != "Bearer flowise-app-key" {
		t.Errorf("the app's own Authorization = %q, want it untouched", got)
	}
	waitUntilTrue(t, "a health check carried the token", func() bool { return checks.Load() > 0 })

	// With the metadata server down, a token for an audience not yet
	// cached cannot be had: the request gets 502, the app is not called.
	mdUp.Store(false)
	if err := e.Reload(`version: 1
pools:
  - name: flowise
    urls: ["{{UPSTREAM}}"]
    google_id_token: {audience: "https://flowise.example.run.app"}
routes: [{name: flowise, host: "*", pool: flowise, policy: {public: true}}]
`); err != nil {
		t.Fatal(err)
	}
	if status, _, _ := e.Get(e.Client(), "/x", "Accept", "application/json"); status != http.StatusBadGateway {
		t.Errorf("with no ID token to be had: %d, want 502", status)
	}
}

func waitUntilTrue(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
