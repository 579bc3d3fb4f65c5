package verify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sekisho/sekisho/internal/authn/bearer/jwtcheck/jwttest"
)

const (
	testIssuer   = "https://gw.example.test"
	testAudience = "dify"
)

// t0 is the fake clock's start.
var t0 = jwttest.T0

// clock is the settable fake clock the bearer-token tests use too.
type clock = jwttest.Clock

func newClock() *clock { return jwttest.NewClock() }

type testKey struct {
	priv *ecdsa.PrivateKey
	kid  string
}

func newKey(t testing.TB, kid string) testKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{priv: k, kid: kid}
}

func (k testKey) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.kid, Algorithm: "ES256", Use: "sig"}
}

func keySet(keys ...testKey) jose.JSONWebKeySet {
	var s jose.JSONWebKeySet
	for _, k := range keys {
		s.Keys = append(s.Keys, k.jwk())
	}
	return s
}

// goodClaims are valid claims at t0.
func goodClaims() map[string]any {
	return map[string]any{
		"iss":          testIssuer,
		"aud":          testAudience,
		"sub":          "alice",
		"email":        "alice@example.test",
		"groups":       []string{"eng", "admins"},
		"sekisho_kind": "session",
		"provider":     "local",
		"iat":          t0.Unix(),
		"exp":          t0.Add(5 * time.Minute).Unix(),
	}
}

// sign makes a compact JWS of claims with any algorithm and key go-jose
// supports, with kid in the header.
func sign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	return jwttest.Sign(t, alg, key, kid, claims)
}

func signES(t testing.TB, k testKey, claims map[string]any) string {
	t.Helper()
	return sign(t, jose.ES256, k.priv, k.kid, claims)
}

func b64(v any) string { return jwttest.B64(v) }
