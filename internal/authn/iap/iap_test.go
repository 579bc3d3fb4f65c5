package iap

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/authn/authntest"
	"github.com/sekisho/sekisho/internal/authn/bearer/jwtcheck"
	"github.com/sekisho/sekisho/internal/authn/bearer/jwtcheck/jwttest"
	"github.com/sekisho/sekisho/internal/identity"
)

const testAudience = "/projects/123456789/global/backendServices/987654321"

type env struct {
	srv   *jwttest.Server
	key   jwttest.Key
	clock *jwttest.Clock
	auth  *Authenticator
}

func newEnv(t testing.TB, mod func(*Options)) *env {
	t.Helper()
	e := &env{key: jwttest.NewEC(t, "iap-1"), clock: jwttest.NewClock()}
	e.srv = jwttest.NewServer(t, jwttest.Set(e.key))
	opts := Options{Trusted: true, Audience: testAudience, JWKSURL: e.srv.JWKSURL(), Now: e.clock.Now}
	if mod != nil {
		mod(&opts)
	}
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.auth = a
	return e
}

// claims are what IAP sends, valid at T0: issued 10 s ago, 10 min life.
func claims(kv ...any) map[string]any {
	iat := jwttest.T0.Add(-10 * time.Second)
	c := map[string]any{
		"iss":   Issuer,
		"aud":   testAudience,
		"sub":   "accounts.google.com:1234567890",
		"email": "alice@example.com",
		"hd":    "example.com",
		"iat":   iat.Unix(),
		"exp":   iat.Add(10 * time.Minute).Unix(),
	}
	return jwttest.With(c, kv...)
}

func request(values ...string) (*http.Request, *authntest.Call) {
	r := httptest.NewRequest(http.MethodGet, "http://gw.example.test/", nil)
	c := &authntest.Call{Request: authn.Request{Route: "app"}}
	for _, v := range values {
		r.Header.Add("x-goog-iap-jwt-assertion", v)
	}
	return authntest.With(r, c), c
}

func TestAuthenticate(t *testing.T) {
	e := newEnv(t, nil)
	forger := jwttest.NewEC(t, "iap-1")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	good := jwttest.SignWith(t, e.key, claims())
	parts := strings.Split(good, ".")
	pubDER, err := x509.MarshalPKIXPublicKey(e.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	t0 := jwttest.T0
	want := identity.Identity{Kind: identity.IAP, User: "alice@example.com", Email: "alice@example.com", Provider: "iap"}
	tests := []struct {
		name    string
		token   string
		want    identity.Identity
		wantErr error
	}{
		{name: "valid", token: good, want: want},
		{name: "app_engine_audience_refused_on_backend_service", token: jwttest.SignWith(t, e.key, claims("aud", "/projects/123456789/apps/my-project")), wantErr: jwtcheck.ErrAudience},
		{name: "forged_signature", token: jwttest.SignWith(t, forger, claims()), wantErr: jwtcheck.ErrSignature},
		{name: "tampered_email", token: parts[0] + "." + jwttest.B64(claims("email", "admin@example.com")) + "." + parts[2], wantErr: jwtcheck.ErrSignature},
		{name: "expired", token: jwttest.SignWith(t, e.key, claims("iat", t0.Add(-11*time.Minute).Unix(), "exp", t0.Add(-31*time.Second).Unix())), wantErr: jwtcheck.ErrExpired},
		{name: "issued_in_the_future", token: jwttest.SignWith(t, e.key, claims("iat", t0.Add(31*time.Second).Unix(), "exp", t0.Add(5*time.Minute).Unix())), wantErr: jwtcheck.ErrNotYetValid},
		{name: "not_yet_valid_nbf", token: jwttest.SignWith(t, e.key, claims("nbf", t0.Add(time.Minute).Unix())), wantErr: jwtcheck.ErrNotYetValid},
		{name: "lifetime_longer_than_iap_gives", token: jwttest.SignWith(t, e.key, claims("exp", t0.Add(time.Hour).Unix())), wantErr: jwtcheck.ErrClaims},
		{name: "no_iat", token: jwttest.SignWith(t, e.key, claims("iat", nil)), wantErr: jwtcheck.ErrClaims},
		{name: "wrong_audience", token: jwttest.SignWith(t, e.key, claims("aud", "/projects/123456789/global/backendServices/1")), wantErr: jwtcheck.ErrAudience},
		{name: "wrong_issuer", token: jwttest.SignWith(t, e.key, claims("iss", "https://accounts.google.com")), wantErr: jwtcheck.ErrIssuer},
		{name: "no_email", token: jwttest.SignWith(t, e.key, claims("email", nil)), wantErr: jwtcheck.ErrClaims},
		{name: "no_sub", token: jwttest.SignWith(t, e.key, claims("sub", nil)), wantErr: jwtcheck.ErrClaims},
		{name: "email_with_crlf_header_injection", token: jwttest.SignWith(t, e.key, claims("email", "a@example.com\r\nX-Sekisho-User: admin")), wantErr: jwtcheck.ErrClaims},
		{name: "alg_none", token: jwttest.B64(map[string]string{"alg": "none", "kid": "iap-1"}) + "." + parts[1] + ".", wantErr: jwtcheck.ErrAlgorithm},
		{name: "hs256_signed_with_the_public_key", token: jwttest.Sign(t, jose.HS256, pubDER, "iap-1", claims()), wantErr: jwtcheck.ErrAlgorithm},
		{name: "rs256_refused", token: jwttest.Sign(t, jose.RS256, rsaKey, "iap-1", claims()), wantErr: jwtcheck.ErrAlgorithm},
		{name: "unknown_kid", token: jwttest.Sign(t, jose.ES256, forger.Private, "iap-9", claims()), wantErr: jwtcheck.ErrUnknownKey},
		{name: "truncated", token: good[:len(good)-10], wantErr: jwtcheck.ErrSignature},
		{name: "truncated_to_two_parts", token: parts[0] + "." + parts[1], wantErr: jwtcheck.ErrMalformed},
		{name: "oversized", token: parts[0] + "." + strings.Repeat("A", jwtcheck.MaxTokenSize) + "." + parts[2], wantErr: jwtcheck.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, info := request(tc.token)
			got, err := authntest.Authenticate(e.auth, nil, r)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if got.Authenticated() || info.CredentialHeader != "" {
					t.Fatalf("refused assertion gave %+v via %q", got, info.CredentialHeader)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("identity (-want +got):\n%s", diff)
			}
			if info.CredentialHeader != Header {
				t.Fatalf("CredentialHeader = %q", info.CredentialHeader)
			}
		})
	}
}

func TestAuthenticateHeader(t *testing.T) {
	e := newEnv(t, nil)
	good := jwttest.SignWith(t, e.key, claims())
	untrusted, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		auth     *Authenticator
		values   []string
		wantUser string
		wantErr  bool
	}{
		{name: "trusted", auth: e.auth, values: []string{good}, wantUser: "alice@example.com"},
		{name: "no_header_is_anonymous", auth: e.auth},
		{name: "header_ignored_when_iap_not_trusted", auth: untrusted, values: []string{good}},
		{name: "two_assertions_refused", auth: e.auth, values: []string{good, good}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := request(tc.values...)
			id, err := authntest.Authenticate(tc.auth, nil, r)
			if (err != nil) != tc.wantErr || id.User != tc.wantUser {
				t.Fatalf("got %q, %v; want %q, error %v", id.User, err, tc.wantUser, tc.wantErr)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	t.Run("unknown_kid_refetch_rate_limited", func(t *testing.T) {
		e := newEnv(t, nil)
		rogue := jwttest.NewEC(t, "iap-2")
		for range 10 {
			if _, err := e.auth.Verify(t.Context(), jwttest.SignWith(t, rogue, claims())); !errors.Is(err, jwtcheck.ErrUnknownKey) {
				t.Fatalf("err = %v, want ErrUnknownKey", err)
			}
		}
		if n := e.srv.Fetches.Load(); n != 1 {
			t.Fatalf("fetches = %d, want 1", n)
		}
	})
	t.Run("jwks_down_keeps_cached_keys", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.CacheSize = -1 })
		if _, err := e.auth.Verify(t.Context(), jwttest.SignWith(t, e.key, claims())); err != nil {
			t.Fatal(err)
		}
		e.srv.SetKeys(jose.JSONWebKeySet{}, http.StatusServiceUnavailable)
		e.clock.Advance(3 * time.Hour)
		now := e.clock.Now()
		if _, err := e.auth.Verify(t.Context(), jwttest.SignWith(t, e.key, claims("iat", now.Unix(), "exp", now.Add(10*time.Minute).Unix()))); err != nil {
			t.Fatalf("key set down: %v", err)
		}
	})
	t.Run("key_without_alg_in_jwks", func(t *testing.T) {
		e := newEnv(t, nil)
		bare := e.key
		bare.Alg = ""
		e.srv.SetKeys(jwttest.Set(bare), http.StatusOK)
		if _, err := e.auth.Verify(t.Context(), jwttest.SignWith(t, e.key, claims())); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("rsa_key_in_jwks_never_used", func(t *testing.T) {
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, nil)
		e.srv.SetKeys(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &rk.PublicKey, KeyID: "iap-1", Algorithm: "RS256"}}}, http.StatusOK)
		if _, err := e.auth.Verify(t.Context(), jwttest.Sign(t, jose.RS256, rk, "iap-1", claims())); !errors.Is(err, jwtcheck.ErrAlgorithm) {
			t.Fatalf("err = %v, want ErrAlgorithm", err)
		}
	})
	t.Run("cache_never_returns_a_verified_result_after_exp", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.Leeway = -1 })
		tok := jwttest.SignWith(t, e.key, claims())
		if _, err := e.auth.Verify(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(10*time.Minute - 10*time.Second) // exactly exp
		if _, err := e.auth.Verify(t.Context(), tok); !errors.Is(err, jwtcheck.ErrExpired) {
			t.Fatalf("at exp: err = %v, want ErrExpired", err)
		}
	})
}

func TestNewRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{name: "no_audience", opts: Options{Trusted: true}, want: `audience ""`},
		{name: "audience_not_iap_form", opts: Options{Trusted: true, Audience: "my-client-id.apps.googleusercontent.com"}, want: "is not /projects/NUMBER"},
		{name: "audience_project_not_number", opts: Options{Trusted: true, Audience: "/projects/abc/global/backendServices/1"}, want: "is not /projects/NUMBER"},
		{name: "plain_http_jwks", opts: Options{Trusted: true, Audience: testAudience, JWKSURL: "http://keys.example/jwk"}, want: "plain http"},
		{name: "leeway_too_long", opts: Options{Trusted: true, Audience: testAudience, Leeway: time.Hour}, want: "leeway"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	for _, aud := range []string{testAudience, "/projects/123/apps/my-project"} {
		if err := CheckAudience(aud); err != nil {
			t.Errorf("CheckAudience(%q): %v", aud, err)
		}
	}
}

// FuzzParse feeds arbitrary assertions to Verify: never a panic, and an
// accepted one must carry an ES256 signature by the test's key (checked with
// crypto/ecdsa) and the identity of an assertion this test signed.
func FuzzParse(f *testing.F) {
	e := newEnv(f, nil)
	signed := map[string]identity.Identity{}
	for _, email := range []string{"alice@example.com", "bob@example.com"} {
		tok := jwttest.SignWith(f, e.key, claims("email", email))
		id, err := e.auth.Verify(f.Context(), tok)
		if err != nil {
			f.Fatal(err)
		}
		signed[id.User] = id
		f.Add(tok)
	}
	good := jwttest.SignWith(f, e.key, claims())
	parts := strings.Split(good, ".")
	f.Add(jwttest.B64(map[string]string{"alg": "none", "kid": "iap-1"}) + "." + parts[1] + ".")
	f.Add(parts[0] + "." + parts[1])
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		id, err := e.auth.Verify(t.Context(), token)
		if err != nil {
			if id.Authenticated() {
				t.Fatalf("identity with error %v", err)
			}
			return
		}
		segs := strings.Split(token, ".")
		if len(segs) != 3 {
			t.Fatalf("accepted %d segments", len(segs))
		}
		sig, err := base64.RawURLEncoding.DecodeString(segs[2])
		if err != nil || len(sig) != 64 {
			t.Fatalf("accepted a signature that is not 64 bytes of base64url: %q", token)
		}
		sum := sha256.Sum256([]byte(segs[0] + "." + segs[1]))
		if !ecdsa.Verify(e.key.Public().(*ecdsa.PublicKey), sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			t.Fatalf("accepted a token the key did not sign: %q", token)
		}
		want, ok := signed[id.User]
		if !ok {
			t.Fatalf("accepted identity %q no signed token carried", id.User)
		}
		if diff := cmp.Diff(want, id); diff != "" {
			t.Fatalf("identity (-want +got):\n%s", diff)
		}
	})
}

// BenchmarkAuthenticate: one IAP assertion reused (IAP reissues it every
// few minutes), keys cached.
func BenchmarkAuthenticate(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cache int
	}{{"cached", 0}, {"uncached", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b, func(o *Options) { o.CacheSize = bc.cache })
			r, _ := request(jwttest.SignWith(b, e.key, claims()))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := authntest.Authenticate(e.auth, nil, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
