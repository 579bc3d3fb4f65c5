package jwtcheck

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/authn/bearer/jwtcheck/jwttest"
)

func TestTTLFromCacheControl(t *testing.T) {
	const def, lo = time.Hour, time.Minute
	tests := []struct {
		name, cc string
		want     time.Duration
	}{
		{name: "absent", cc: "", want: def},
		{name: "max_age", cc: "public, max-age=19800, must-revalidate", want: 19800 * time.Second},
		{name: "max_age_below_floor", cc: "max-age=5", want: lo},
		{name: "max_age_above_cap", cc: "max-age=99999999", want: MaxKeySetTTL},
		{name: "max_age_overflow", cc: "max-age=99999999999999999999999", want: def},
		{name: "no_store", cc: "no-store", want: lo},
		{name: "garbage", cc: "max-age=abc", want: def},
		{name: "negative", cc: "max-age=-5", want: def},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ttlFrom(tc.cc, def, lo); got != tc.want {
				t.Fatalf("ttlFrom(%q) = %s, want %s", tc.cc, got, tc.want)
			}
		})
	}
}

func TestKeySetTTLFromCacheControl(t *testing.T) {
	k := jwttest.NewEC(t, "k")
	srv := jwttest.NewServer(t, jwttest.Set(k))
	srv.SetCacheControl("max-age=300")
	clk := jwttest.NewClock()
	ks, err := NewKeySet(KeySetOptions{JWKSURL: srv.JWKSURL(), Algs: SupportedAlgs, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		advance time.Duration
		fetches int32
	}{{0, 1}, {299 * time.Second, 1}, {time.Second, 2}, {time.Minute, 2}} {
		clk.Advance(step.advance)
		if _, err := ks.Key(t.Context(), "k"); err != nil {
			t.Fatal(err)
		}
		if n := srv.Fetches.Load(); n != step.fetches {
			t.Fatalf("after +%s: %d fetches, want %d", step.advance, n, step.fetches)
		}
	}
}

func TestUsableKeys(t *testing.T) {
	ec := jwttest.NewEC(t, "ec")
	rs := jwttest.NewRSA(t, "rs")
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		keys []jose.JSONWebKey
		algs []jose.SignatureAlgorithm
		want map[string][]jose.SignatureAlgorithm
	}{
		{name: "declared_algs_pin", keys: []jose.JSONWebKey{ec.JWK(), rs.JWK()}, algs: SupportedAlgs,
			want: map[string][]jose.SignatureAlgorithm{"ec": {jose.ES256}, "rs": {jose.RS256}}},
		{name: "undeclared_rsa_gets_rsa_family", keys: []jose.JSONWebKey{{Key: rs.Public(), KeyID: "rs"}}, algs: SupportedAlgs,
			want: map[string][]jose.SignatureAlgorithm{"rs": {jose.RS256, jose.RS384, jose.RS512, jose.PS256}}},
		{name: "alg_not_fitting_key_type_dropped", keys: []jose.JSONWebKey{{Key: rs.Public(), KeyID: "rs", Algorithm: "ES256"}}, algs: SupportedAlgs,
			want: map[string][]jose.SignatureAlgorithm{}},
		{name: "symmetric_key_dropped", keys: []jose.JSONWebKey{{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "hs", Algorithm: "HS256"}}, algs: SupportedAlgs,
			want: map[string][]jose.SignatureAlgorithm{}},
		{name: "encryption_key_dropped", keys: []jose.JSONWebKey{{Key: ec.Public(), KeyID: "ec", Use: "enc"}}, algs: SupportedAlgs,
			want: map[string][]jose.SignatureAlgorithm{}},
		{name: "no_kid_dropped", keys: []jose.JSONWebKey{{Key: ec.Public(), Algorithm: "ES256"}}, algs: SupportedAlgs,
			want: map[string][]jose.SignatureAlgorithm{}},
		{name: "outside_allowed_algs_dropped", keys: []jose.JSONWebKey{ec.JWK(), rs.JWK()}, algs: []jose.SignatureAlgorithm{jose.ES256},
			want: map[string][]jose.SignatureAlgorithm{"ec": {jose.ES256}}},
		{name: "p384_is_es384", keys: []jose.JSONWebKey{{Key: &p384.PublicKey, KeyID: "p384"}}, algs: SupportedAlgs,
			want: map[string][]jose.SignatureAlgorithm{"p384": {jose.ES384}}},
		{name: "p384_declared_es256_dropped", keys: []jose.JSONWebKey{{Key: &p384.PublicKey, KeyID: "p384", Algorithm: "ES256"}}, algs: SupportedAlgs,
			want: map[string][]jose.SignatureAlgorithm{}},
		{name: "duplicate_kid_first_wins", keys: []jose.JSONWebKey{ec.JWK(), {Key: rs.Public(), KeyID: "ec", Algorithm: "RS256"}}, algs: SupportedAlgs,
			want: map[string][]jose.SignatureAlgorithm{"ec": {jose.ES256}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string][]jose.SignatureAlgorithm{}
			for kid, k := range UsableKeys(jose.JSONWebKeySet{Keys: tc.keys}, tc.algs) {
				got[kid] = k.Algs
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("usable keys (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCache(t *testing.T) {
	t0 := jwttest.T0
	win := Window{NotBefore: t0, Expiry: t0.Add(time.Minute)}
	tests := []struct {
		name string
		at   time.Time
		hit  bool
	}{
		{name: "inside", at: t0.Add(30 * time.Second), hit: true},
		{name: "at_not_before", at: t0, hit: true},
		{name: "before_not_before", at: t0.Add(-time.Second)},
		{name: "at_exp", at: t0.Add(time.Minute)},
		{name: "after_exp", at: t0.Add(time.Hour)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCache[string](0)
			c.Put("tok", "alice", win)
			got, ok := c.Get("tok", tc.at)
			if ok != tc.hit || (ok && got != "alice") {
				t.Fatalf("Get at %s = %q, %v; want hit %v", tc.at, got, ok, tc.hit)
			}
		})
	}
	t.Run("lru_eviction_bounded", func(t *testing.T) {
		c := NewCache[int](3)
		for i := range 5 {
			c.Put(string(rune('a'+i)), i, win)
			c.Get("a", t0) // keep "a" recently used
		}
		if c.Len() != 3 {
			t.Fatalf("len %d, want 3", c.Len())
		}
		var have []string
		for _, k := range []string{"a", "b", "c", "d", "e"} {
			if _, ok := c.Get(k, t0); ok {
				have = append(have, k)
			}
		}
		if diff := cmp.Diff([]string{"a", "d", "e"}, have); diff != "" {
			t.Fatalf("kept (-want +got):\n%s", diff)
		}
	})
	t.Run("disabled_cache_keeps_nothing", func(t *testing.T) {
		c := NewCache[int](-1)
		c.Put("a", 1, win)
		if _, ok := c.Get("a", t0); ok || c.Len() != 0 {
			t.Fatal("a disabled cache returned a value")
		}
	})
}

// FuzzParse checks Parse's promises on arbitrary input: never a panic, and
// a parsed token has three segments, at most MaxTokenSize bytes, an allowed
// alg equal to its header's, a kid, and the payload its middle segment
// decodes to.
func FuzzParse(f *testing.F) {
	k := jwttest.NewEC(f, "k1")
	good := jwttest.SignWith(f, k, map[string]any{"iss": "https://i.example", "sub": "a"})
	parts := strings.Split(good, ".")
	f.Add(good)
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(jwttest.B64(map[string]string{"alg": "none", "kid": "k1"}) + "." + parts[1] + ".")
	f.Add(jwttest.B64(map[string]any{"alg": "ES256", "kid": "k1", "crit": []string{"exp"}}) + "." + parts[1] + "." + parts[2])
	f.Add(jwttest.Sign(f, jose.HS256, []byte("0123456789abcdef0123456789abcdef"), "k1", map[string]any{"sub": "a"}))
	f.Add("..")
	f.Add("a.b.c.d.e")
	algs := []jose.SignatureAlgorithm{jose.ES256, jose.RS256}
	f.Fuzz(func(t *testing.T, token string) {
		tok, err := Parse(token, algs)
		if err != nil {
			return
		}
		segs := strings.Split(token, ".")
		if len(segs) != 3 || len(token) > MaxTokenSize {
			t.Fatalf("parsed %d segments, %d bytes", len(segs), len(token))
		}
		if !slices.Contains(algs, tok.Alg) || tok.KeyID == "" {
			t.Fatalf("parsed alg %q kid %q", tok.Alg, tok.KeyID)
		}
		hb, err := base64.RawURLEncoding.DecodeString(segs[0])
		if err != nil {
			t.Fatalf("parsed a header that is not base64url: %q", segs[0])
		}
		var h struct {
			Alg string `json:"alg"`
		}
		if err := json.Unmarshal(hb, &h); err != nil || h.Alg != string(tok.Alg) {
			t.Fatalf("header alg %q (err %v), parsed %q", h.Alg, err, tok.Alg)
		}
		pb, err := base64.RawURLEncoding.DecodeString(segs[1])
		if err != nil || string(pb) != string(tok.Payload) {
			t.Fatalf("payload %q is not the middle segment decoded (err %v)", tok.Payload, err)
		}
	})
}
