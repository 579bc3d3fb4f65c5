package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

func staticVerifier(t *testing.T, clk *clock, keys ...testKey) *Verifier {
	t.Helper()
	v, err := NewWithKeys(keySet(keys...), Options{Issuer: testIssuer, Audience: testAudience, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifyGood(t *testing.T) {
	k := newKey(t, "k1")
	v := staticVerifier(t, newClock(), k)
	got, err := v.Verify(context.Background(), signES(t, k, goodClaims()))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := &Claims{
		Subject:  "alice",
		Email:    "alice@example.test",
		Groups:   []string{"eng", "admins"},
		Kind:     "session",
		Provider: "local",
		Issuer:   testIssuer,
		Audience: testAudience,
		IssuedAt: time.Unix(t0.Unix(), 0),
		Expiry:   time.Unix(t0.Add(5*time.Minute).Unix(), 0),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
}

func TestVerify(t *testing.T) {
	k := newKey(t, "k1")
	other := newKey(t, "k1") // same kid, different key
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&k.priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	jwkJSON, err := k.jwk().MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}

	with := func(mod func(c map[string]any)) map[string]any {
		c := goodClaims()
		mod(c)
		return c
	}
	good := signES(t, k, goodClaims())
	parts := strings.Split(good, ".")

	tests := []struct {
		name    string
		token   func() string
		advance time.Duration
		wantErr error // nil: must verify
	}{
		{name: "good", token: func() string { return good }},
		{name: "good_within_leeway_after_exp", advance: 5*time.Minute + 29*time.Second,
			token: func() string { return good }},
		{name: "expired", advance: 5*time.Minute + 31*time.Second, wantErr: ErrExpired,
			token: func() string { return good }},
		{name: "iat_in_future_within_leeway", token: func() string {
			return signES(t, k, with(func(c map[string]any) {
				c["iat"] = t0.Add(20 * time.Second).Unix()
			}))
		}},
		{name: "iat_in_future_beyond_leeway", wantErr: ErrClaims, token: func() string {
			return signES(t, k, with(func(c map[string]any) {
				c["iat"] = t0.Add(31 * time.Second).Unix()
			}))
		}},
		{name: "nbf_in_future", wantErr: ErrClaims, token: func() string {
			return signES(t, k, with(func(c map[string]any) { c["nbf"] = t0.Add(time.Minute).Unix() }))
		}},
		{name: "wrong_audience_other_route", wantErr: ErrClaims, token: func() string {
			return signES(t, k, with(func(c map[string]any) { c["aud"] = "flowise" }))
		}},
		{name: "audience_list_containing_ours", token: func() string {
			return signES(t, k, with(func(c map[string]any) { c["aud"] = []string{"x", testAudience} }))
		}},
		{name: "wrong_issuer", wantErr: ErrClaims, token: func() string {
			return signES(t, k, with(func(c map[string]any) { c["iss"] = "https://evil.test" }))
		}},
		{name: "missing_sub", wantErr: ErrClaims, token: func() string {
			return signES(t, k, with(func(c map[string]any) { delete(c, "sub") }))
		}},
		{name: "missing_exp", wantErr: ErrClaims, token: func() string {
			return signES(t, k, with(func(c map[string]any) { delete(c, "exp") }))
		}},
		{name: "missing_iat", wantErr: ErrClaims, token: func() string {
			return signES(t, k, with(func(c map[string]any) { delete(c, "iat") }))
		}},
		{name: "lifetime_over_10m", wantErr: ErrClaims, token: func() string {
			return signES(t, k, with(func(c map[string]any) { c["exp"] = t0.Add(10*time.Minute + time.Second).Unix() }))
		}},
		{name: "exp_before_iat", wantErr: ErrClaims, token: func() string {
			return signES(t, k, with(func(c map[string]any) { c["exp"] = t0.Add(-time.Second).Unix() }))
		}},
		{name: "groups_wrong_type", wantErr: ErrClaims, token: func() string {
			return signES(t, k, with(func(c map[string]any) { c["groups"] = "admins" }))
		}},
		{name: "alg_none", wantErr: ErrAlgorithm, token: func() string {
			return b64(map[string]string{"alg": "none", "kid": "k1", "typ": "JWT"}) + "." + parts[1] + "."
		}},
		{name: "alg_none_with_good_signature", wantErr: ErrAlgorithm, token: func() string {
			return b64(map[string]string{"alg": "none", "kid": "k1"}) + "." + parts[1] + "." + parts[2]
		}},
		{name: "alg_confusion_HS256_with_public_key_PEM", wantErr: ErrAlgorithm, token: func() string {
			return sign(t, jose.HS256, pubPEM, "k1", goodClaims())
		}},
		{name: "alg_confusion_HS256_with_public_JWK", wantErr: ErrAlgorithm, token: func() string {
			return sign(t, jose.HS256, jwkJSON, "k1", goodClaims())
		}},
		{name: "alg_RS256", wantErr: ErrAlgorithm, token: func() string {
			return sign(t, jose.RS256, rsaKey, "k1", goodClaims())
		}},
		{name: "alg_ES384", wantErr: ErrAlgorithm, token: func() string {
			return sign(t, jose.ES384, p384, "k1", goodClaims())
		}},
		{name: "unknown_kid", wantErr: ErrUnknownKey, token: func() string {
			return signES(t, newKey(t, "forged"), goodClaims())
		}},
		{name: "missing_kid", wantErr: ErrMalformed, token: func() string {
			return signES(t, testKey{priv: k.priv}, goodClaims())
		}},
		{name: "key_substitution_same_kid", wantErr: ErrSignature, token: func() string {
			return signES(t, other, goodClaims())
		}},
		{name: "embedded_jwk_header_attacker_key", wantErr: ErrSignature, token: func() string {
			s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: other.priv},
				(&jose.SignerOptions{EmbedJWK: true}).WithHeader("kid", "k1"))
			if err != nil {
				t.Fatal(err)
			}
			jws, err := s.Sign(mustJSON(t, goodClaims()))
			if err != nil {
				t.Fatal(err)
			}
			out, err := jws.CompactSerialize()
			if err != nil {
				t.Fatal(err)
			}
			return out
		}},
		{name: "tampered_payload", wantErr: ErrSignature, token: func() string {
			c := goodClaims()
			c["sub"] = "mallory"
			return parts[0] + "." + b64(c) + "." + parts[2]
		}},
		{name: "tampered_signature", wantErr: ErrSignature, token: func() string {
			sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
			sig[10] ^= 1
			return parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
		}},
		{name: "truncated_signature", wantErr: ErrSignature, token: func() string {
			return good[:len(good)-4]
		}},
		{name: "truncated_two_parts", wantErr: ErrMalformed, token: func() string {
			return parts[0] + "." + parts[1]
		}},
		{name: "empty", wantErr: ErrMalformed, token: func() string { return "" }},
		{name: "json_serialization", wantErr: ErrMalformed, token: func() string {
			return `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`
		}},
		{name: "oversized", wantErr: ErrMalformed, token: func() string {
			return parts[0] + "." + strings.Repeat("A", maxTokenSize) + "." + parts[2]
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			v := staticVerifier(t, clk, k)
			token := tc.token()
			clk.Advance(tc.advance)
			got, err := v.Verify(context.Background(), token)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if got.Subject != "alice" {
					t.Errorf("Subject = %q, want alice", got.Subject)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify error = %v, want %v", err, tc.wantErr)
			}
			if got != nil {
				t.Errorf("Verify returned claims %+v with an error", got)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifyAnyAudience(t *testing.T) {
	k := newKey(t, "k1")
	clk := newClock()
	v, err := NewWithKeys(keySet(k), Options{Issuer: testIssuer, InsecureAnyAudience: true, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	c := goodClaims()
	c["aud"] = "flowise"
	got, err := v.Verify(context.Background(), signES(t, k, c))
	if err != nil {
		t.Fatal(err)
	}
	if got.Audience != "flowise" {
		t.Errorf("Audience = %q, want flowise", got.Audience)
	}
	c["aud"] = []string{"a", "b"}
	if _, err := v.Verify(context.Background(), signES(t, k, c)); !errors.Is(err, ErrClaims) {
		t.Errorf("two audiences: err = %v, want ErrClaims", err)
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "https", opts: Options{JWKSURL: "https://gw.test/.sekisho/jwks.json", Issuer: "i", Audience: "a"}},
		{name: "http_loopback", opts: Options{JWKSURL: "http://127.0.0.1:8080/.sekisho/jwks.json", Issuer: "i", Audience: "a"}},
		{name: "http_localhost", opts: Options{JWKSURL: "http://localhost/.sekisho/jwks.json", Issuer: "i", Audience: "a"}},
		{name: "http_remote_key_swap", opts: Options{JWKSURL: "http://gw.test/jwks", Issuer: "i", Audience: "a"}, wantErr: "plain http"},
		{name: "http_remote_insecure", opts: Options{JWKSURL: "http://gw.test/jwks", Issuer: "i", Audience: "a", InsecureAllowHTTP: true}},
		{name: "relative_url", opts: Options{JWKSURL: "/.sekisho/jwks.json", Issuer: "i", Audience: "a"}, wantErr: "not an absolute"},
		{name: "no_url", opts: Options{Issuer: "i", Audience: "a"}, wantErr: "JWKSURL is empty"},
		{name: "no_issuer", opts: Options{JWKSURL: "https://gw.test/j", Audience: "a"}, wantErr: "Issuer is empty"},
		{name: "no_audience", opts: Options{JWKSURL: "https://gw.test/j", Issuer: "i"}, wantErr: "Audience"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewWithKeysRejectsUnusableKeys(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := newKey(t, "k1")
	tests := []struct {
		name string
		set  jose.JSONWebKeySet
	}{
		{name: "empty", set: jose.JSONWebKeySet{}},
		{name: "P-384", set: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p384.PublicKey, KeyID: "x"}}}},
		{name: "no_kid", set: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.priv.PublicKey}}}},
		{name: "alg_RS256", set: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.priv.PublicKey, KeyID: "x", Algorithm: "RS256"}}}},
		{name: "use_enc", set: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.priv.PublicKey, KeyID: "x", Use: "enc"}}}},
		{name: "symmetric", set: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "x"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewWithKeys(tc.set, Options{Issuer: "i", Audience: "a"}); err == nil {
				t.Fatal("NewWithKeys accepted a set with no usable key")
			}
		})
	}
}
