// Package jwtcheck holds what the bearer and IAP authenticators share:
// parsing a compact JWS with a pinned algorithm list, a cached key set
// fetched from an issuer, the registered-claim checks, and a bounded cache
// of verified tokens so a client that reuses one token does not pay a
// signature check per request.
package jwtcheck

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// MaxTokenSize bounds a token; ID tokens of the issuers sekisho trusts are
// 1-2 KiB.
const MaxTokenSize = 16 << 10

// SupportedAlgs are the only algorithms a token may use. Never "none", never
// HMAC: a verifier that accepts HS256 can be fooled with the issuer's public
// key used as the HMAC secret.
var SupportedAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.PS256}

// Errors the checks wrap, for errors.Is.
var (
	ErrMalformed   = errors.New("malformed token")
	ErrAlgorithm   = errors.New("token algorithm is not allowed")
	ErrUnknownKey  = errors.New("token key id is not in the issuer's key set")
	ErrSignature   = errors.New("token signature is invalid")
	ErrIssuer      = errors.New("token issuer is not trusted")
	ErrAudience    = errors.New("token audience is not accepted")
	ErrExpired     = errors.New("token has expired")
	ErrNotYetValid = errors.New("token is not valid yet")
	ErrClaims      = errors.New("token claims are invalid")
)

// Token is a parsed, not yet verified, compact JWS.
type Token struct {
	// Alg and KeyID are the protected header's alg and kid.
	Alg   jose.SignatureAlgorithm
	KeyID string
	// Payload is the payload, NOT verified: only for choosing the issuer.
	Payload []byte
	jws     *jose.JSONWebSignature
}

// Parse parses a compact JWS whose alg is one of algs (a subset of
// SupportedAlgs), with exactly one signature and a kid, of at most
// MaxTokenSize bytes. It checks no signature.
func Parse(token string, algs []jose.SignatureAlgorithm) (*Token, error) {
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes is longer than %d", ErrMalformed, len(token), MaxTokenSize)
	}
	if strings.Count(token, ".") != 2 {
		return nil, fmt.Errorf("%w: not three dot-separated parts", ErrMalformed)
	}
	jws, err := jose.ParseSignedCompact(token, algs)
	if err != nil {
		if alg := headerAlg(token); alg != "" && !slices.Contains(algs, jose.SignatureAlgorithm(alg)) {
			return nil, fmt.Errorf("%w: alg %q (allowed: %v)", ErrAlgorithm, alg, algs)
		}
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: %d signatures", ErrMalformed, len(jws.Signatures))
	}
	h := jws.Signatures[0].Header
	alg := jose.SignatureAlgorithm(h.Algorithm)
	if !slices.Contains(algs, alg) {
		return nil, fmt.Errorf("%w: alg %q (allowed: %v)", ErrAlgorithm, alg, algs)
	}
	if h.KeyID == "" {
		return nil, fmt.Errorf("%w: no kid in the header", ErrMalformed)
	}
	return &Token{Alg: alg, KeyID: h.KeyID, Payload: jws.UnsafePayloadWithoutVerification(), jws: jws}, nil
}

// headerAlg returns the alg of a token's header, for naming an algorithm
// mismatch (the usual attack) instead of a parse error.
func headerAlg(token string) string {
	h, _, _ := strings.Cut(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return ""
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(b, &hdr) != nil {
		return ""
	}
	if hdr.Alg == "" {
		return "(empty)"
	}
	return hdr.Alg
}

// Verify checks t's signature with key, which must be allowed to verify
// t's alg, and returns the verified payload.
func (t *Token) Verify(key Key) ([]byte, error) {
	if !slices.Contains(key.Algs, t.Alg) {
		return nil, fmt.Errorf("%w: alg %q, but key %q is for %v", ErrAlgorithm, t.Alg, t.KeyID, key.Algs)
	}
	payload, err := t.jws.Verify(key.Public)
	if err != nil {
		return nil, fmt.Errorf("%w (kid %q)", ErrSignature, t.KeyID)
	}
	return payload, nil
}

// Issuer returns the iss claim of the unverified payload, or "".
func (t *Token) Issuer() string {
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(t.Payload, &c) != nil {
		return ""
	}
	return c.Iss
}

// Rules are the registered-claim checks.
type Rules struct {
	// Issuer is the exact iss required.
	Issuer string
	// Audiences: aud must contain at least one. Required.
	Audiences []string
	// Leeway is the clock skew allowed on exp, nbf and iat (>= 0).
	Leeway time.Duration
	// RequireIAT demands an iat claim.
	RequireIAT bool
	// MaxLifetime, when above zero, bounds exp - iat (iat then required).
	MaxLifetime time.Duration
}

// Window is when a verified token may be used: from NotBefore until, not
// including, Expiry, leeway left out — what the verified-token cache keeps.
type Window struct {
	NotBefore, Expiry time.Time
}

// Check applies r to c at now and returns the token's validity window.
func (r Rules) Check(c *jwt.Claims, now time.Time) (Window, error) {
	if c.Issuer != r.Issuer {
		return Window{}, fmt.Errorf("%w: iss %q, want %q", ErrIssuer, c.Issuer, r.Issuer)
	}
	if !slices.ContainsFunc(r.Audiences, c.Audience.Contains) {
		return Window{}, fmt.Errorf("%w: aud %q, want one of %q", ErrAudience, []string(c.Audience), r.Audiences)
	}
	if c.Expiry == nil {
		return Window{}, fmt.Errorf("%w: no exp", ErrClaims)
	}
	exp := c.Expiry.Time()
	if (r.RequireIAT || r.MaxLifetime > 0) && c.IssuedAt == nil {
		return Window{}, fmt.Errorf("%w: no iat", ErrClaims)
	}
	w := Window{Expiry: exp}
	if c.IssuedAt != nil {
		iat := c.IssuedAt.Time()
		if exp.Before(iat) {
			return Window{}, fmt.Errorf("%w: exp %s is before iat %s", ErrClaims, stamp(exp), stamp(iat))
		}
		if r.MaxLifetime > 0 && exp.Sub(iat) > r.MaxLifetime {
			return Window{}, fmt.Errorf("%w: lifetime %s is longer than %s", ErrClaims, exp.Sub(iat), r.MaxLifetime)
		}
		if now.Add(r.Leeway).Before(iat) {
			return Window{}, fmt.Errorf("%w: issued in the future (iat %s)", ErrNotYetValid, stamp(iat))
		}
		w.NotBefore = iat
	}
	if c.NotBefore != nil {
		nbf := c.NotBefore.Time()
		if now.Add(r.Leeway).Before(nbf) {
			return Window{}, fmt.Errorf("%w: nbf %s", ErrNotYetValid, stamp(nbf))
		}
		if nbf.After(w.NotBefore) {
			w.NotBefore = nbf
		}
	}
	if !now.Add(-r.Leeway).Before(exp) { // RFC 7519: now must be before exp
		return Window{}, fmt.Errorf("%w: exp %s", ErrExpired, stamp(exp))
	}
	// The cache may serve the token only where a fresh check would pass,
	// without leeway: never after exp.
	w.NotBefore = w.NotBefore.Add(-r.Leeway)
	return w, nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
