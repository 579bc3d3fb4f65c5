// Package jwttest helps tests of token verifiers: a settable clock, a key
// set server on 127.0.0.1 that counts fetches and can fail, and signing
// with keys the test makes.
package jwttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sekisho/sekisho/internal/testclock"
)

// T0 is the tests' start time.
var T0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// Clock is the settable fake clock shared by the tests.
type Clock = testclock.Clock

// NewClock returns a clock at T0.
func NewClock() *Clock { return testclock.New(T0) }

// Key is a signing key the test made.
type Key struct {
	// Private is an *rsa.PrivateKey or *ecdsa.PrivateKey.
	Private any
	// KID is its key id.
	KID string
	// Alg is the alg its JWK declares; "" declares none.
	Alg jose.SignatureAlgorithm
}

// NewEC returns a P-256 key declared ES256.
func NewEC(t testing.TB, kid string) Key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return Key{Private: k, KID: kid, Alg: jose.ES256}
}

// NewRSA returns a 2048-bit RSA key declared RS256.
func NewRSA(t testing.TB, kid string) Key {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return Key{Private: k, KID: kid, Alg: jose.RS256}
}

// Public returns the public half.
func (k Key) Public() any {
	switch p := k.Private.(type) {
	case *rsa.PrivateKey:
		return &p.PublicKey
	case *ecdsa.PrivateKey:
		return &p.PublicKey
	}
	return nil
}

// JWK returns the key's public JWK.
func (k Key) JWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Public(), KeyID: k.KID, Algorithm: string(k.Alg), Use: "sig"}
}

// Set returns the public key set of keys.
func Set(keys ...Key) jose.JSONWebKeySet {
	var s jose.JSONWebKeySet
	for _, k := range keys {
		s.Keys = append(s.Keys, k.JWK())
	}
	return s
}

// Sign makes a compact JWS of claims with alg, key material key (any type
// go-jose signs with, including []byte for HMAC) and kid in the header.
func Sign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
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

// SignWith signs claims with k, using its declared alg (ES256 if none).
func SignWith(t testing.TB, k Key, claims map[string]any) string {
	t.Helper()
	alg := k.Alg
	if alg == "" {
		alg = jose.ES256
		if _, ok := k.Private.(*rsa.PrivateKey); ok {
			alg = jose.RS256
		}
	}
	return Sign(t, alg, k.Private, k.KID, claims)
}

// With sets claims[k] = v for each key, value pair in kv and deletes k
// where v is nil, so a test reads as the claims it changes:
// With(good, "aud", "other", "exp", nil). It returns claims.
func With(claims map[string]any, kv ...any) map[string]any {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(claims, kv[i].(string))
			continue
		}
		claims[kv[i].(string)] = kv[i+1]
	}
	return claims
}

// B64 is base64url (no padding) of v's JSON.
func B64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Server serves a key set at /jwks and an OIDC discovery document at
// /.well-known/openid-configuration naming itself as issuer, on 127.0.0.1.
type Server struct {
	*httptest.Server
	mu           sync.Mutex
	set          jose.JSONWebKeySet
	status       int
	cacheControl string
	// Fetches counts key set requests; Discoveries counts discovery ones.
	Fetches, Discoveries atomic.Int32
}

// NewServer starts a Server with set; it stops when the test ends.
func NewServer(t testing.TB, set jose.JSONWebKeySet) *Server {
	t.Helper()
	s := &Server{set: set, status: http.StatusOK}
	mux := http.NewServeMux()
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		s.Fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.status != http.StatusOK {
			w.WriteHeader(s.status)
			return
		}
		if s.cacheControl != "" {
			w.Header().Set("Cache-Control", s.cacheControl)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.set)
	})
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		s.Discoveries.Add(1)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"issuer": s.URL, "jwks_uri": s.URL + "/jwks"})
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// JWKSURL is the key set's address.
func (s *Server) JWKSURL() string { return s.URL + "/jwks" }

// SetKeys replaces the key set; a status other than 200 makes fetches fail.
func (s *Server) SetKeys(set jose.JSONWebKeySet, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set, s.status = set, status
}

// SetCacheControl sets the Cache-Control header of key set responses.
func (s *Server) SetCacheControl(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cacheControl = v
}
