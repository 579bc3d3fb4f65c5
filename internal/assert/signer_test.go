package assert

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/testclock"
	"github.com/sekisho/sekisho/pkg/verify"
)

const testIssuer = "https://gw.example.test"

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is the settable test clock.
type clock = testclock.Clock

func newTestKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func alice() identity.Identity {
	return identity.Identity{
		Kind:      identity.Session,
		User:      "alice",
		Email:     "alice@example.test",
		Groups:    []string{"eng", "admins"},
		Provider:  "google",
		SessionID: "s1",
		AuthTime:  t0.Add(-time.Hour),
	}
}

// verifierFor verifies with the signer's published JWKS, as an app would.
func verifierFor(t *testing.T, s *Signer, clk *clock, audience string) *verify.Verifier {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(s.JWKS(), &set); err != nil {
		t.Fatalf("JWKS is not a key set: %v", err)
	}
	v, err := verify.NewWithKeys(set, verify.Options{Issuer: testIssuer, Audience: audience, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSignVerifyRoundTrip(t *testing.T) {
	clk := testclock.New(t0)
	s, err := NewSigner(SignerOptions{Keys: []*ecdsa.PrivateKey{newTestKey(t)}, Issuer: testIssuer, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		id   identity.Identity
		want verify.Claims
	}{
		{name: "session_user", id: alice(), want: verify.Claims{
			Subject: "alice", Email: "alice@example.test", Groups: []string{"eng", "admins"},
			Kind: "session", Provider: "google",
		}},
		{name: "api_key_no_groups", id: identity.Identity{Kind: identity.APIKey, User: "ci-bot", Provider: "local"},
			want: verify.Claims{Subject: "ci-bot", Groups: []string{}, Kind: "apikey", Provider: "local"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := s.Sign("dify", tc.id)
			if err != nil {
				t.Fatal(err)
			}
			got, err := verifierFor(t, s, clk, "dify").Verify(context.Background(), tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := tc.want
			want.Issuer, want.Audience = testIssuer, "dify"
			want.IssuedAt, want.Expiry = t0, t0.Add(DefaultLifetime)
			if diff := cmp.Diff(&want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSignHeader(t *testing.T) {
	key := newTestKey(t)
	s, err := NewSigner(SignerOptions{Keys: []*ecdsa.PrivateKey{key}, Issuer: testIssuer})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign("dify", alice())
	if err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := KeyID(&key.PublicKey)
	h := jws.Signatures[0].Header
	got := map[string]any{"alg": h.Algorithm, "kid": h.KeyID, "typ": h.ExtraHeaders["typ"]}
	want := map[string]any{"alg": "ES256", "kid": kid, "typ": "JWT"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
}

func TestSignCache(t *testing.T) {
	clk := testclock.New(t0)
	s, err := NewSigner(SignerOptions{Keys: []*ecdsa.PrivateKey{newTestKey(t)}, Issuer: testIssuer,
		Lifetime: 4 * time.Minute, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Sign("dify", alice())
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(2*time.Minute - time.Second) // just over half its life left
	again, _ := s.Sign("dify", alice())
	if again != first {
		t.Error("token not reused while more than half of its life is left")
	}
	clk.Advance(time.Second) // exactly half left
	fresh, _ := s.Sign("dify", alice())
	if fresh == first {
		t.Error("token reused with only half of its life left")
	}
	if got, _ := s.Sign("dify", alice()); got != fresh {
		t.Error("the new token was not cached")
	}
}

// Tokens must never be shared across identities or routes: the cache key
// covers every claim input.
func TestSignCacheNoSharing(t *testing.T) {
	s, err := NewSigner(SignerOptions{Keys: []*ecdsa.PrivateKey{newTestKey(t)}, Issuer: testIssuer,
		Now: (testclock.New(t0)).Now})
	if err != nil {
		t.Fatal(err)
	}
	base := alice()
	variants := []struct {
		name     string
		audience string
		mod      func(*identity.Identity)
	}{
		{name: "base", audience: "dify", mod: func(*identity.Identity) {}},
		{name: "other_route", audience: "flowise", mod: func(*identity.Identity) {}},
		{name: "other_user", audience: "dify", mod: func(id *identity.Identity) { id.User = "bob" }},
		{name: "other_email", audience: "dify", mod: func(id *identity.Identity) { id.Email = "a@evil.test" }},
		{name: "groups_differ", audience: "dify", mod: func(id *identity.Identity) { id.Groups = []string{"eng"} }},
		{name: "groups_merged_boundary", audience: "dify", mod: func(id *identity.Identity) { id.Groups = []string{"engadmins"} }},
		{name: "groups_shifted_boundary", audience: "dify", mod: func(id *identity.Identity) { id.Groups = []string{"en", "gadmins"} }},
		{name: "other_kind", audience: "dify", mod: func(id *identity.Identity) { id.Kind = identity.APIKey }},
		{name: "other_provider", audience: "dify", mod: func(id *identity.Identity) { id.Provider = "okta" }},
		{name: "user_email_boundary", audience: "dify", mod: func(id *identity.Identity) {
			id.User, id.Email = "alicealice@example.test", ""
		}},
		{name: "audience_user_boundary", audience: "difya", mod: func(id *identity.Identity) { id.User = "lice" }},
		// Keys past maxRawKey are hashed: these two differ in the last group only.
		{name: "many_groups_hashed_key", audience: "dify", mod: func(id *identity.Identity) { id.Groups = manyGroups("x") }},
		{name: "many_groups_last_differs", audience: "dify", mod: func(id *identity.Identity) { id.Groups = manyGroups("y") }},
	}
	seen := map[string]string{}
	for _, tc := range variants {
		t.Run(tc.name, func(t *testing.T) {
			id := base
			id.Groups = append([]string(nil), base.Groups...)
			tc.mod(&id)
			tok, err := s.Sign(tc.audience, id)
			if err != nil {
				t.Fatal(err)
			}
			if prev, dup := seen[tok]; dup {
				t.Fatalf("same token as variant %q", prev)
			}
			seen[tok] = tc.name
		})
	}
	t.Run("session_id_does_not_split_cache", func(t *testing.T) {
		id := base
		id.SessionID = "another-session"
		tok, _ := s.Sign("dify", id)
		if seen[tok] != "base" {
			t.Error("a field that is not in the claims changed the token")
		}
	})
}

// manyGroups is a group list whose cache key is too long to keep raw.
func manyGroups(last string) []string {
	var g []string
	for i := range 20 {
		g = append(g, fmt.Sprintf("engineering-team-%02d", i))
	}
	return append(g, last)
}

func TestCacheKeyKinds(t *testing.T) {
	var buf [maxRawKey]byte
	short := cacheKeyBytes(buf[:0], "dify", alice())
	if short[0] != 'r' || len(short) > maxRawKey {
		t.Fatalf("short key %q: want a raw key (prefix r, at most %d bytes)", short, maxRawKey)
	}
	id := alice()
	id.Groups = manyGroups("x")
	long := cacheKeyBytes(buf[:0], "dify", id)
	if long[0] != 'h' || len(long) != 1+sha256.Size {
		t.Fatalf("long key is %d bytes starting %q: want h + SHA-256", len(long), long[:1])
	}
}

func TestSignCacheBounded(t *testing.T) {
	clk := testclock.New(t0)
	s, err := NewSigner(SignerOptions{Keys: []*ecdsa.PrivateKey{newTestKey(t)}, Issuer: testIssuer,
		CacheSize: 16, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := s.Sign("dify", identity.Identity{Kind: identity.Session, User: fmt.Sprint("u", i)}); err != nil {
			t.Fatal(err)
		}
		if n := s.cacheLen(); n > 16 {
			t.Fatalf("cache holds %d entries, bound is 16", n)
		}
	}
}

func TestSignCacheConcurrent(t *testing.T) {
	s, err := NewSigner(SignerOptions{Keys: []*ecdsa.PrivateKey{newTestKey(t)}, Issuer: testIssuer, CacheSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				id := identity.Identity{Kind: identity.Session, User: fmt.Sprint("u", (g*50+i)%20)}
				if _, err := s.Sign("r", id); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// A token signed by the old key still verifies after rotation while the old
// key is published second; once it is dropped, it does not.
func TestKeyRotation(t *testing.T) {
	clk := testclock.New(t0)
	oldKey, newKey := newTestKey(t), newTestKey(t)
	before, err := NewSigner(SignerOptions{Keys: []*ecdsa.PrivateKey{oldKey}, Issuer: testIssuer, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	oldTok, _ := before.Sign("dify", alice())

	during, err := NewSigner(SignerOptions{Keys: []*ecdsa.PrivateKey{newKey, oldKey}, Issuer: testIssuer, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	newTok, _ := during.Sign("dify", alice())
	v := verifierFor(t, during, clk, "dify")
	for name, tok := range map[string]string{"old": oldTok, "new": newTok} {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Errorf("%s-key token during rotation: %v", name, err)
		}
	}
	if oldTok == newTok {
		t.Error("rotated signer reused the old key")
	}

	after, err := NewSigner(SignerOptions{Keys: []*ecdsa.PrivateKey{newKey}, Issuer: testIssuer, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verifierFor(t, after, clk, "dify").Verify(context.Background(), oldTok); err == nil {
		t.Error("old-key token verified after the old key was dropped")
	}
}

func TestSignRefuses(t *testing.T) {
	s, err := NewSigner(SignerOptions{Keys: []*ecdsa.PrivateKey{newTestKey(t)}, Issuer: testIssuer})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		audience string
		id       identity.Identity
	}{
		{name: "empty_audience", audience: "", id: alice()},
		{name: "anonymous", audience: "dify", id: identity.Identity{}},
		{name: "kind_without_user", audience: "dify", id: identity.Identity{Kind: identity.Session}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tok, err := s.Sign(tc.audience, tc.id); err == nil {
				t.Fatalf("Sign returned %q, want an error", tok)
			}
		})
	}
}

func TestNewSignerOptions(t *testing.T) {
	k := newTestKey(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    SignerOptions
		wantErr string
	}{
		{name: "defaults", opts: SignerOptions{Keys: []*ecdsa.PrivateKey{k}, Issuer: "i"}},
		{name: "max_lifetime", opts: SignerOptions{Keys: []*ecdsa.PrivateKey{k}, Issuer: "i", Lifetime: 10 * time.Minute}},
		{name: "lifetime_over_10m", opts: SignerOptions{Keys: []*ecdsa.PrivateKey{k}, Issuer: "i", Lifetime: 11 * time.Minute}, wantErr: "longer than"},
		{name: "negative_lifetime", opts: SignerOptions{Keys: []*ecdsa.PrivateKey{k}, Issuer: "i", Lifetime: -time.Second}, wantErr: "negative"},
		{name: "sub_second_lifetime", opts: SignerOptions{Keys: []*ecdsa.PrivateKey{k}, Issuer: "i", Lifetime: time.Millisecond}, wantErr: "shorter than 1s"},
		{name: "no_keys", opts: SignerOptions{Issuer: "i"}, wantErr: "no signing key"},
		{name: "nil_key", opts: SignerOptions{Keys: []*ecdsa.PrivateKey{nil}, Issuer: "i"}, wantErr: "key 0 is nil"},
		{name: "P-384_key", opts: SignerOptions{Keys: []*ecdsa.PrivateKey{p384}, Issuer: "i"}, wantErr: "P-384"},
		{name: "duplicate_key", opts: SignerOptions{Keys: []*ecdsa.PrivateKey{k, k}, Issuer: "i"}, wantErr: "same key"},
		{name: "no_issuer", opts: SignerOptions{Keys: []*ecdsa.PrivateKey{k}}, wantErr: "issuer is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSigner(tc.opts)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("NewSigner: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestJWKSHandler(t *testing.T) {
	k1, k2 := newTestKey(t), newTestKey(t)
	s, err := NewSigner(SignerOptions{Keys: []*ecdsa.PrivateKey{k1, k2}, Issuer: testIssuer})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	resp, err := srv.Client().Get(srv.URL + "/.sekisho/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	gotHeaders := map[string]string{
		"Content-Type":  resp.Header.Get("Content-Type"),
		"Cache-Control": resp.Header.Get("Cache-Control"),
	}
	wantHeaders := map[string]string{"Content-Type": "application/json", "Cache-Control": "public, max-age=300"}
	if diff := cmp.Diff(wantHeaders, gotHeaders); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	kid1, _ := KeyID(&k1.PublicKey)
	kid2, _ := KeyID(&k2.PublicKey)
	var got []string
	for _, k := range raw.Keys {
		if _, leaked := k["d"]; leaked {
			t.Fatal("JWKS contains a private key (d)")
		}
		got = append(got, fmt.Sprint(k["kid"], " ", k["alg"], " ", k["use"], " ", k["kty"], " ", k["crv"]))
	}
	want := []string{kid1 + " ES256 sig EC P-256", kid2 + " ES256 sig EC P-256"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}

	req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
	resp2, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST status = %d, want 405", resp2.StatusCode)
	}
}

func BenchmarkSignCached(b *testing.B) {
	s, err := NewSigner(SignerOptions{Keys: []*ecdsa.PrivateKey{newTestKey(b)}, Issuer: testIssuer})
	if err != nil {
		b.Fatal(err)
	}
	id := alice()
	for b.Loop() {
		if _, err := s.Sign("dify", id); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignUncached(b *testing.B) {
	s, err := NewSigner(SignerOptions{Keys: []*ecdsa.PrivateKey{newTestKey(b)}, Issuer: testIssuer, CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	id := alice()
	for b.Loop() {
		if _, err := s.Sign("dify", id); err != nil {
			b.Fatal(err)
		}
	}
}
