package gcpauth

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/testclock"
)

// FakeMetadata-like server for this package's tests: identity tokens
// for any audience, with exp an hour after the clock.
func fakeIdentity(t *testing.T, clk *testclock.Clock, body func(aud string) string) *atomic.Int64 {
	t.Helper()
	var calls atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" || r.URL.Path != "/computeMetadata/v1/instance/service-accounts/default/identity" {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("format") != "full" {
			http.Error(w, "want format=full", http.StatusBadRequest)
			return
		}
		calls.Add(1)
		w.Header().Set("Metadata-Flavor", "Google")
		fmt.Fprint(w, body(r.URL.Query().Get("audience")))
	}))
	t.Cleanup(ts.Close)
	t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(ts.URL, "http://"))
	return &calls
}

func jwtFor(aud string, exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(fmt.Sprintf(`{"aud":%q,"exp":%d}`, aud, exp.Unix()))) + ".sig"
}

func TestIDTokensCachedUntilShortlyBeforeExpiry(t *testing.T) {
	clk := testclock.New(time.Date(2026, 12, 8, 9, 0, 0, 0, time.UTC))
	calls := fakeIdentity(t, clk, func(aud string) string { return jwtFor(aud, clk.Now().Add(time.Hour)) })
	s := &IDTokens{Now: clk.Now}
	ctx := context.Background()
	const flowise = "https://flowise-abc-an.a.run.app"
	tok, err := s.Token(ctx, flowise)
	if err != nil || !strings.Contains(tok, ".") {
		t.Fatalf("Token = %q, %v", tok, err)
	}
	if _, err := s.Token(ctx, flowise); err != nil || calls.Load() != 1 {
		t.Fatalf("a second Token fetched again (%d calls, %v): it is cached", calls.Load(), err)
	}
	if _, err := s.Token(ctx, "https://dify-abc-an.a.run.app"); err != nil || calls.Load() != 2 {
		t.Fatalf("another audience: %d calls, %v; want its own token", calls.Load(), err)
	}
	clk.Advance(56 * time.Minute) // within five minutes of expiry
	if _, err := s.Token(ctx, flowise); err != nil || calls.Load() != 3 {
		t.Fatalf("near expiry: %d calls, %v; want a fresh token", calls.Load(), err)
	}
}

func TestIDTokensErrorsNameTheAudience(t *testing.T) {
	clk := testclock.New(time.Now())
	fakeIdentity(t, clk, func(string) string { return "not-a-jwt" })
	_, err := (&IDTokens{Now: clk.Now}).Token(context.Background(), "https://x.a.run.app")
	if err == nil || !strings.Contains(err.Error(), `"https://x.a.run.app"`) || !strings.Contains(err.Error(), "not a JWT") {
		t.Fatalf("malformed token: %v", err)
	}
	t.Setenv("GCE_METADATA_HOST", "127.0.0.1:1") // nothing listens
	_, err = (&IDTokens{}).Token(context.Background(), "https://x.a.run.app")
	if err == nil || !strings.Contains(err.Error(), "metadata server") {
		t.Fatalf("metadata server down: %v", err)
	}
}
