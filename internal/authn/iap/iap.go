// Package iap trusts Google's Identity-Aware Proxy in front of sekisho: it
// verifies the x-goog-iap-jwt-assertion header IAP adds to every request
// and takes the signed-in Google identity from it, so per-route policies,
// API keys and audit apply on top of IAP.
//
// The checks are those Google documents for signed headers
// (https://cloud.google.com/iap/docs/signed-headers-howto): alg ES256, a kid
// from Google's IAP key set, iss https://cloud.google.com/iap, aud the
// configured backend service or App Engine app, exp in the future and iat in
// the past (30 s skew each), a lifetime of at most 10 minutes plus twice the
// skew, and a sub and email. Unlike Go's idtoken package it checks iss and
// iat too.
package iap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/authn/bearer/jwtcheck"
	"github.com/sekisho/sekisho/internal/identity"
)

const (
	// Header carries IAP's signed assertion.
	Header = "X-Goog-Iap-Jwt-Assertion"
	// Issuer is the iss of every IAP assertion.
	Issuer = "https://cloud.google.com/iap"
	// DefaultJWKSURL is Google's IAP key set in JWK form.
	DefaultJWKSURL = "https://www.gstatic.com/iap/verify/public_key-jwk"
	// DefaultLeeway is the skew Google documents for exp and iat.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway is the largest Options.Leeway accepted.
	MaxLeeway = 5 * time.Minute
	// MaxLifetime is IAP's longest assertion lifetime, before skew.
	MaxLifetime = 10 * time.Minute
	// Provider is Identity.Provider for IAP identities.
	Provider = "iap"
)

// Options configures the IAP Authenticator.
type Options struct {
	// Trusted turns the Authenticator on. False (the default): the header
	// is ignored — anyone can send it when IAP is not really in front.
	Trusted bool
	// Audience is the expected aud: "/projects/NUMBER/global/backendServices/ID"
	// (load balancer) or "/projects/NUMBER/apps/PROJECT_ID" (App Engine).
	// Required when Trusted.
	Audience string
	// JWKSURL is IAP's key set. "" means DefaultJWKSURL.
	JWKSURL string
	// Leeway is the clock skew allowed on exp and iat. Zero means 30s;
	// negative means none; at most MaxLeeway (5m).
	Leeway time.Duration
	// CacheSize is how many verified assertions are remembered (by SHA-256,
	// until exp). Zero means 10000; negative disables the cache.
	CacheSize int
	// HTTPClient fetches the key set. Nil means a client with a 10s timeout.
	HTTPClient *http.Client
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

var algs = []jose.SignatureAlgorithm{jose.ES256}

// Authenticator verifies IAP assertions. Safe for concurrent use.
type Authenticator struct {
	trusted bool
	rules   jwtcheck.Rules
	keys    *jwtcheck.KeySet
	cache   *jwtcheck.Cache[identity.Identity]
	now     func() time.Time
}

// New checks opts and returns an Authenticator. It fetches nothing.
func New(opts Options) (*Authenticator, error) {
	if !opts.Trusted {
		return &Authenticator{}, nil
	}
	var errs []error
	if err := CheckAudience(opts.Audience); err != nil {
		errs = append(errs, err)
	}
	leeway := opts.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0:
		leeway = 0
	case leeway > MaxLeeway:
		errs = append(errs, fmt.Errorf("leeway %s is longer than %s", leeway, MaxLeeway))
	}
	a := &Authenticator{trusted: true, now: opts.Now, cache: jwtcheck.NewCache[identity.Identity](opts.CacheSize)}
	if a.now == nil {
		a.now = time.Now
	}
	u := opts.JWKSURL
	if u == "" {
		u = DefaultJWKSURL
	}
	ks, err := jwtcheck.NewKeySet(jwtcheck.KeySetOptions{JWKSURL: u, Algs: algs, HTTPClient: opts.HTTPClient, Now: a.now})
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("trust_google_iap: %w", err)
	}
	a.keys = ks
	a.rules = jwtcheck.Rules{Issuer: Issuer, Audiences: []string{opts.Audience}, Leeway: leeway,
		RequireIAT: true, MaxLifetime: MaxLifetime + 2*leeway}
	return a, nil
}

// CheckAudience accepts the two audience forms IAP uses.
func CheckAudience(aud string) error {
	parts := strings.Split(aud, "/")
	// "", "projects", NUMBER, then "global","backendServices",ID or "apps",PROJECT_ID
	ok := len(parts) >= 5 && parts[0] == "" && parts[1] == "projects" && digits(parts[2])
	switch {
	case ok && len(parts) == 6 && parts[3] == "global" && parts[4] == "backendServices" && digits(parts[5]):
		return nil
	case ok && len(parts) == 5 && parts[3] == "apps" && parts[4] != "":
		return nil
	}
	return fmt.Errorf("audience %q is not /projects/NUMBER/global/backendServices/ID or /projects/NUMBER/apps/PROJECT_ID (see the IAP console's signed header JWT audience)", aud)
}

func digits(s string) bool {
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil && s != ""
}

// Authenticate implements the pipeline's Authenticator. Without Trusted, or
// without the header, the caller is anonymous; a refused assertion is an
// error naming why. The result's CredentialHeader names the header.
func (a *Authenticator) Authenticate(_ http.ResponseWriter, r *http.Request, _ authn.Request) (authn.Result, error) {
	if !a.trusted {
		return authn.Result{}, nil
	}
	vals := r.Header.Values(Header)
	switch len(vals) {
	case 0:
		return authn.Result{}, nil
	case 1:
	default:
		return authn.Result{}, fmt.Errorf("iap: %s is sent %d times", Header, len(vals))
	}
	id, err := a.Verify(r.Context(), strings.TrimSpace(vals[0]))
	if err != nil {
		return authn.Result{}, fmt.Errorf("iap: %s: %w", Header, err)
	}
	return authn.Result{Identity: id, CredentialHeader: Header}, nil
}

// Verify checks one assertion and returns its identity.
func (a *Authenticator) Verify(ctx context.Context, token string) (identity.Identity, error) {
	if !a.trusted {
		return identity.Identity{}, errors.New("IAP is not trusted on this listener")
	}
	if id, ok := a.cache.Get(token, a.now()); ok {
		return id, nil
	}
	tok, err := jwtcheck.Parse(token, algs)
	if err != nil {
		return identity.Identity{}, err
	}
	key, err := a.keys.Key(ctx, tok.KeyID)
	if err != nil {
		return identity.Identity{}, err
	}
	payload, err := tok.Verify(key)
	if err != nil {
		return identity.Identity{}, err
	}
	var c struct {
		jwt.Claims
		Email string `json:"email"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return identity.Identity{}, fmt.Errorf("%w: %v", jwtcheck.ErrClaims, err)
	}
	win, err := a.rules.Check(&c.Claims, a.now())
	if err != nil {
		return identity.Identity{}, err
	}
	if c.Subject == "" || c.Email == "" || strings.ContainsFunc(c.Email, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		return identity.Identity{}, fmt.Errorf("%w: sub and a printable email are required", jwtcheck.ErrClaims)
	}
	id := identity.Identity{Kind: identity.IAP, User: c.Email, Email: c.Email, Provider: Provider}
	a.cache.Put(token, id, win)
	return id, nil
}
