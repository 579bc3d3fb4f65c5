package bearer

import (
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sekisho/sekisho/internal/authn/authntest"
	"github.com/sekisho/sekisho/internal/authn/bearer/jwtcheck"
	"github.com/sekisho/sekisho/internal/authn/bearer/jwtcheck/jwttest"
)

func TestKeySetFetching(t *testing.T) {
	t.Run("unknown_kid_refetch_rate_limited", func(t *testing.T) {
		e := newEnv(t, nil)
		rogue := jwttest.NewEC(t, "rotated-in")
		for i := range 20 {
			tok := jwttest.SignWith(t, rogue, e.with("sub", "forged-"+string(rune('a'+i))))
			if _, err := e.auth.Verify(t.Context(), "app", tok); !errors.Is(err, jwtcheck.ErrUnknownKey) {
				t.Fatalf("err = %v, want ErrUnknownKey", err)
			}
		}
		if n := e.srv.Fetches.Load(); n != 1 {
			t.Fatalf("20 tokens with an unknown kid made %d fetches, want 1", n)
		}
		// The issuer rotates the key in; after the interval it is found.
		e.srv.SetKeys(jwttest.Set(e.rsa, rogue), http.StatusOK)
		e.clock.Advance(jwtcheck.DefaultMinRefreshInterval)
		if _, err := e.auth.Verify(t.Context(), "app", jwttest.SignWith(t, rogue, e.claims())); err != nil {
			t.Fatalf("rotated-in key not picked up after the interval: %v", err)
		}
		if n := e.srv.Fetches.Load(); n != 2 {
			t.Fatalf("fetches = %d, want 2", n)
		}
	})
	t.Run("jwks_down_keeps_cached_keys", func(t *testing.T) {
		e := newEnv(t, nil)
		if _, err := e.auth.Verify(t.Context(), "app", jwttest.SignWith(t, e.rsa, e.claims())); err != nil {
			t.Fatal(err)
		}
		e.srv.SetKeys(jose.JSONWebKeySet{}, http.StatusInternalServerError)
		e.clock.Advance(2 * time.Hour) // past the key set TTL
		tok := jwttest.SignWith(t, e.rsa, e.with("iat", e.clock.Now().Unix(), "exp", e.clock.Now().Add(5*time.Minute).Unix()))
		if _, err := e.auth.Verify(t.Context(), "app", tok); err != nil {
			t.Fatalf("key set down: cached keys not used: %v", err)
		}
		if n := e.srv.Fetches.Load(); n != 2 {
			t.Fatalf("fetches = %d, want 2 (a stale set is refetched, the failure keeps the old keys)", n)
		}
	})
	t.Run("jwks_down_at_start_refuses", func(t *testing.T) {
		e := newEnv(t, nil)
		e.srv.SetKeys(jose.JSONWebKeySet{}, http.StatusBadGateway)
		_, err := e.auth.Verify(t.Context(), "app", jwttest.SignWith(t, e.rsa, e.claims()))
		if !errors.Is(err, jwtcheck.ErrUnknownKey) {
			t.Fatalf("err = %v, want ErrUnknownKey", err)
		}
	})
	t.Run("key_without_alg_in_jwks", func(t *testing.T) {
		e := newEnv(t, nil)
		bare := e.rsa
		bare.Alg = ""
		bareEC := e.ec
		bareEC.Alg = ""
		e.srv.SetKeys(jwttest.Set(bare, bareEC), http.StatusOK)
		for _, tc := range []struct {
			name    string
			alg     jose.SignatureAlgorithm
			key     jwttest.Key
			wantErr error
		}{
			{name: "rs256_on_rsa_key", alg: jose.RS256, key: bare},
			{name: "ps256_on_rsa_key", alg: jose.PS256, key: bare},
			{name: "es256_on_p256_key", alg: jose.ES256, key: bareEC},
			{name: "hs256_on_rsa_key_refused", alg: jose.HS256, key: jwttest.Key{Private: []byte("0123456789abcdef0123456789abcdef"), KID: bare.KID}, wantErr: jwtcheck.ErrAlgorithm},
			{name: "es256_claiming_rsa_kid_refused", alg: jose.ES256, key: jwttest.Key{Private: jwttest.NewEC(t, "x").Private, KID: bare.KID}, wantErr: jwtcheck.ErrAlgorithm},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tok := jwttest.Sign(t, tc.alg, tc.key.Private, tc.key.KID, e.with("sub", tc.name))
				_, err := e.auth.Verify(t.Context(), "app", tok)
				if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			})
		}
	})
	t.Run("issuer_allowed_algs_pin", func(t *testing.T) {
		e := newEnv(t, func(i *Issuer, _ *Options) { i.AllowedAlgs = []string{"ES256"} })
		if _, err := e.auth.Verify(t.Context(), "app", jwttest.SignWith(t, e.rsa, e.claims())); !errors.Is(err, jwtcheck.ErrAlgorithm) {
			t.Fatalf("RS256 token on an ES256-only issuer: err = %v, want ErrAlgorithm", err)
		}
		if _, err := e.auth.Verify(t.Context(), "app", jwttest.SignWith(t, e.ec, e.claims())); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("discovery_finds_jwks", func(t *testing.T) {
		e := newEnv(t, func(i *Issuer, _ *Options) { i.JWKSURL = "" })
		for range 3 {
			if _, err := e.auth.Verify(t.Context(), "app", jwttest.SignWith(t, e.ec, e.claims())); err != nil {
				t.Fatal(err)
			}
		}
		if d, f := e.srv.Discoveries.Load(), e.srv.Fetches.Load(); d != 1 || f != 1 {
			t.Fatalf("discoveries %d, fetches %d, want 1 and 1", d, f)
		}
	})
	t.Run("concurrent_first_use_fetches_once", func(t *testing.T) {
		e := newEnv(t, func(_ *Issuer, o *Options) { o.CacheSize = -1 })
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			tok := jwttest.SignWith(t, e.ec, e.with("sub", "w"+string(rune('a'+i))))
			wg.Go(func() {
				_, err := e.auth.Verify(t.Context(), "app", tok)
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if n := e.srv.Fetches.Load(); n != 1 {
			t.Fatalf("16 concurrent first requests made %d fetches, want 1", n)
		}
	})
}

func TestVerifiedTokenCache(t *testing.T) {
	t.Run("cache_never_returns_a_verified_result_after_exp", func(t *testing.T) {
		e := newEnv(t, func(i *Issuer, _ *Options) { i.Leeway = -1 })
		tok := jwttest.SignWith(t, e.rsa, e.with("exp", jwttest.T0.Add(2*time.Minute).Unix()))
		if _, err := e.auth.Verify(t.Context(), "app", tok); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(2*time.Minute - time.Second)
		if _, err := e.auth.Verify(t.Context(), "app", tok); err != nil {
			t.Fatalf("one second before exp: %v", err)
		}
		e.clock.Advance(time.Second)
		if _, err := e.auth.Verify(t.Context(), "app", tok); !errors.Is(err, jwtcheck.ErrExpired) {
			t.Fatalf("at exp: err = %v, want ErrExpired", err)
		}
	})
	t.Run("cache_spares_the_key_set", func(t *testing.T) {
		e := newEnv(t, nil)
		tok := jwttest.SignWith(t, e.rsa, e.claims())
		for range 5 {
			if _, err := e.auth.Verify(t.Context(), "app", tok); err != nil {
				t.Fatal(err)
			}
		}
		if n := e.auth.cache.Len(); n != 1 {
			t.Fatalf("cache holds %d tokens, want 1", n)
		}
	})
	t.Run("refused_tokens_are_not_cached", func(t *testing.T) {
		e := newEnv(t, nil)
		for _, c := range []map[string]any{e.with("aud", "x"), e.with("iss", "https://evil.example")} {
			e.auth.Verify(t.Context(), "app", jwttest.SignWith(t, e.rsa, c))
		}
		if n := e.auth.cache.Len(); n != 0 {
			t.Fatalf("cache holds %d refused tokens", n)
		}
	})
}

// BenchmarkAuthenticate is the steady state: one CI token reused, keys
// cached. BenchmarkAuthenticate/uncached pays the signature check.
func BenchmarkAuthenticate(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cache int
		ec    bool
	}{{"cached", 0, false}, {"uncached_rs256", -1, false}, {"uncached_es256", -1, true}} {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b, func(_ *Issuer, o *Options) { o.CacheSize = bc.cache })
			k := e.rsa
			if bc.ec {
				k = e.ec
			}
			tok := jwttest.SignWith(b, k, e.claims())
			r, info := request("app", "Proxy-Authorization", "Bearer "+tok)
			b.ReportAllocs()
			for b.Loop() {
				info.CredentialHeader = ""
				if _, err := authntest.Authenticate(e.auth, nil, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
