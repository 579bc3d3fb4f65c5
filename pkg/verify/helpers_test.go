package verify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	testIssuer   = "https://gw.example.test"
	testAudience = "dify"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

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
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func signES(t testing.TB, k testKey, claims map[string]any) string {
	t.Helper()
	return sign(t, jose.ES256, k.priv, k.kid, claims)
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// jwksServer serves a key set that the test can change, counting fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	set     jose.JSONWebKeySet
	status  int
	fetches atomic.Int32
}

func newJWKSServer(t *testing.T, set jose.JSONWebKeySet) *jwksServer {
	t.Helper()
	s := &jwksServer{set: set, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.status != http.StatusOK {
			w.WriteHeader(s.status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.set)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setKeys(set jose.JSONWebKeySet, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set, s.status = set, status
}
