// Package verify checks the identity assertion that the sekisho gateway adds
// to every request it forwards to an app, in the X-Sekisho-Assertion header.
//
// The assertion is a JWT signed with ES256. Its claims say who the user is
// (sub, email, groups), how they signed in (sekisho_kind, provider), which
// route it was minted for (aud) and when it expires (at most 10 minutes after
// iat). The gateway publishes its public keys at /.sekisho/jwks.json.
//
// An app that trusts the assertion instead of the plain X-Sekisho-User header
// is safe even if something else on the network can reach it directly:
//
//	v, err := verify.New(verify.Options{
//		JWKSURL:  "https://apps.example.com/.sekisho/jwks.json",
//		Issuer:   "https://apps.example.com", // the gateway's issuer setting
//		Audience: "dify",                     // the route name in front of this app
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//	http.ListenAndServe(":8080", v.Middleware(appHandler))
//
// and inside appHandler:
//
//	c, _ := verify.ClaimsFromContext(r.Context())
//	fmt.Fprintf(w, "hello %s", c.Email)
//
// Only ES256 is accepted; "none", HMAC and RSA tokens are rejected before any
// key is looked at. The package depends only on the standard library and
// github.com/go-jose/go-jose/v4.
package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	// HeaderName is the request header that carries the assertion.
	HeaderName = "X-Sekisho-Assertion"
	// DefaultLeeway is the clock skew allowed when Options.Leeway is zero.
	DefaultLeeway = 30 * time.Second
	// MaxLifetime is the longest exp - iat a token may have.
	MaxLifetime = 10 * time.Minute
	// DefaultMinRefreshInterval is the least time between two JWKS fetches
	// when Options.MinRefreshInterval is zero.
	DefaultMinRefreshInterval = time.Minute
	// DefaultKeySetTTL is how long a fetched key set is used before it is
	// fetched again, when Options.KeySetTTL is zero.
	DefaultKeySetTTL = 15 * time.Minute
	// maxTokenSize bounds the token length; sekisho's tokens are < 2 KiB
	// unless a user has very many groups.
	maxTokenSize = 64 << 10
)

// Options configures a Verifier.
type Options struct {
	// JWKSURL is where the gateway publishes its keys, normally
	// https://<gateway host>/.sekisho/jwks.json. It must be https, or http
	// to a loopback address, unless InsecureAllowHTTP is set. Required by
	// New; ignored by NewWithKeys.
	JWKSURL string
	// Issuer is the expected "iss" claim: the gateway's issuer setting.
	// Required.
	Issuer string
	// Audience is the expected "aud" claim: the name of the gateway route in
	// front of this app. Required unless InsecureAnyAudience is set.
	Audience string
	// InsecureAnyAudience accepts a token minted for any route and reports
	// the route in Claims.Audience. A token for one app can then be replayed
	// to another, so only diagnostic tools (sekisho's whoami) set it.
	InsecureAnyAudience bool
	// InsecureAllowHTTP allows a plain-http JWKSURL to a non-loopback host,
	// where anyone on the path could swap the keys.
	InsecureAllowHTTP bool
	// HTTPClient fetches the key set. Nil means a client with a 10s timeout.
	HTTPClient *http.Client
	// Leeway is the clock skew allowed on exp, nbf and iat. Zero means
	// DefaultLeeway (30s); a negative value means none.
	Leeway time.Duration
	// MinRefreshInterval is the least time between two key set fetches, so
	// tokens with made-up key ids cannot make the app hammer the gateway.
	// Zero means DefaultMinRefreshInterval (1m).
	MinRefreshInterval time.Duration
	// KeySetTTL is how long a fetched key set is trusted before the next
	// Verify fetches it again (so a key the gateway dropped stops working).
	// If that fetch fails the old set is kept. Zero means DefaultKeySetTTL.
	KeySetTTL time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Claims is what a verified assertion says.
type Claims struct {
	// Subject is the user's stable name (the "sub" claim).
	Subject string
	// Email is the user's verified email, or "".
	Email string
	// Groups the user belongs to; never nil.
	Groups []string
	// Kind is how the user authenticated: "session", "apikey", "bearer" or "iap".
	Kind string
	// Provider is the identity source: "local" or an OIDC provider's name.
	Provider string
	// Issuer is the "iss" claim.
	Issuer string
	// Audience is the route the token was minted for.
	Audience string
	// IssuedAt and Expiry are the "iat" and "exp" claims.
	IssuedAt, Expiry time.Time
}

// Verifier checks assertions. It is safe for concurrent use.
type Verifier struct {
	opts   Options
	now    func() time.Time
	leeway time.Duration
	client *http.Client
	static bool // keys given by NewWithKeys; never fetched

	fetchMu sync.Mutex // one fetch at a time

	mu          sync.RWMutex
	keys        map[string]*ecdsa.PublicKey // by kid
	fetchedAt   time.Time                   // last successful fetch
	attemptedAt time.Time                   // last fetch attempt
}

// New returns a Verifier that fetches keys from opts.JWKSURL when first
// needed, and again when a token names an unknown kid (at most once per
// MinRefreshInterval) or the set is older than KeySetTTL.
func New(opts Options) (*Verifier, error) {
	if opts.JWKSURL == "" {
		return nil, errors.New("verify: JWKSURL is empty")
	}
	u, err := url.Parse(opts.JWKSURL)
	if err != nil {
		return nil, fmt.Errorf("verify: JWKSURL %q: %w", opts.JWKSURL, err)
	}
	switch {
	case u.Scheme == "https" && u.Host != "":
	case u.Scheme == "http" && u.Host != "" && (opts.InsecureAllowHTTP || isLoopback(u.Hostname())):
	case u.Scheme == "http" && u.Host != "":
		return nil, fmt.Errorf("verify: JWKSURL %q is plain http to a non-loopback host; use https or set InsecureAllowHTTP", opts.JWKSURL)
	default:
		return nil, fmt.Errorf("verify: JWKSURL %q is not an absolute http(s) URL", opts.JWKSURL)
	}
	v, err := newVerifier(opts)
	if err != nil {
		return nil, err
	}
	v.client = opts.HTTPClient
	if v.client == nil {
		v.client = &http.Client{Timeout: 10 * time.Second}
	}
	return v, nil
}

// NewWithKeys returns a Verifier that uses the given keys and never fetches.
// Keys that are not ECDSA P-256 public (or private) keys with a kid are
// ignored; at least one must remain. opts.JWKSURL and HTTPClient are ignored.
func NewWithKeys(keys jose.JSONWebKeySet, opts Options) (*Verifier, error) {
	v, err := newVerifier(opts)
	if err != nil {
		return nil, err
	}
	v.static = true
	v.keys = usableKeys(keys)
	if len(v.keys) == 0 {
		return nil, errors.New("verify: key set has no ES256 (P-256) key with a kid")
	}
	return v, nil
}

func newVerifier(opts Options) (*Verifier, error) {
	if opts.Issuer == "" {
		return nil, errors.New("verify: Issuer is empty")
	}
	if opts.Audience == "" && !opts.InsecureAnyAudience {
		return nil, errors.New("verify: Audience (the gateway route name) is empty")
	}
	v := &Verifier{opts: opts, now: opts.Now, leeway: opts.Leeway}
	if v.now == nil {
		v.now = time.Now
	}
	switch {
	case v.leeway == 0:
		v.leeway = DefaultLeeway
	case v.leeway < 0:
		v.leeway = 0
	}
	if v.opts.MinRefreshInterval <= 0 {
		v.opts.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if v.opts.KeySetTTL <= 0 {
		v.opts.KeySetTTL = DefaultKeySetTTL
	}
	return v, nil
}

// Errors Verify wraps, for errors.Is.
var (
	ErrMalformed  = errors.New("malformed token")
	ErrAlgorithm  = errors.New("token algorithm is not ES256")
	ErrUnknownKey = errors.New("token key id is not in the gateway's key set")
	ErrSignature  = errors.New("token signature is invalid")
	ErrClaims     = errors.New("token claims are invalid")
	ErrExpired    = errors.New("token has expired")
)

// wireClaims is the token payload beyond the registered claims.
type wireClaims struct {
	Email    string   `json:"email"`
	Groups   []string `json:"groups"`
	Kind     string   `json:"sekisho_kind"`
	Provider string   `json:"provider"`
}

var allowedAlgs = []jose.SignatureAlgorithm{jose.ES256}

// Verify checks token and returns its claims. It fails unless the token is
// an ES256 JWS signed by a known key, with the expected iss and aud, a sub,
// exp and iat present, exp not past and iat/nbf not in the future (both with
// leeway), and exp - iat of at most 10 minutes. A key fetch it triggers uses
// ctx's values but not its cancellation, and takes at most 10 seconds.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	if len(token) > maxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes is longer than %d", ErrMalformed, len(token), maxTokenSize)
	}
	jws, err := jose.ParseSignedCompact(token, allowedAlgs)
	if err != nil {
		// Name an algorithm mismatch: it is the usual attack.
		var h struct {
			Alg string `json:"alg"`
		}
		if headerOf(token, &h) == nil && h.Alg != string(jose.ES256) {
			return nil, fmt.Errorf("%w: alg %q", ErrAlgorithm, h.Alg)
		}
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: %d signatures", ErrMalformed, len(jws.Signatures))
	}
	hdr := jws.Signatures[0].Header
	if hdr.Algorithm != string(jose.ES256) {
		return nil, fmt.Errorf("%w: alg %q", ErrAlgorithm, hdr.Algorithm)
	}
	if hdr.KeyID == "" {
		return nil, fmt.Errorf("%w: no kid header", ErrMalformed)
	}
	key, err := v.key(ctx, hdr.KeyID)
	if err != nil {
		return nil, err
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, ErrSignature
	}
	var std jwt.Claims
	var extra wireClaims
	if err := json.Unmarshal(payload, &std); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrClaims, err)
	}
	if err := json.Unmarshal(payload, &extra); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrClaims, err)
	}
	return v.check(std, extra)
}

func (v *Verifier) check(std jwt.Claims, extra wireClaims) (*Claims, error) {
	if std.Issuer != v.opts.Issuer {
		return nil, fmt.Errorf("%w: issuer %q, want %q", ErrClaims, std.Issuer, v.opts.Issuer)
	}
	var aud string
	if v.opts.Audience != "" {
		if !std.Audience.Contains(v.opts.Audience) {
			return nil, fmt.Errorf("%w: audience %q, want %q", ErrClaims, []string(std.Audience), v.opts.Audience)
		}
		aud = v.opts.Audience
	} else {
		if len(std.Audience) != 1 || std.Audience[0] == "" {
			return nil, fmt.Errorf("%w: audience %q is not a single route name", ErrClaims, []string(std.Audience))
		}
		aud = std.Audience[0]
	}
	if std.Subject == "" {
		return nil, fmt.Errorf("%w: no sub", ErrClaims)
	}
	if std.Expiry == nil || std.IssuedAt == nil {
		return nil, fmt.Errorf("%w: exp and iat are required", ErrClaims)
	}
	iat, exp := std.IssuedAt.Time(), std.Expiry.Time()
	if exp.Before(iat) {
		return nil, fmt.Errorf("%w: exp %s is before iat %s", ErrClaims, exp.UTC().Format(time.RFC3339), iat.UTC().Format(time.RFC3339))
	}
	if exp.Sub(iat) > MaxLifetime {
		return nil, fmt.Errorf("%w: lifetime %s is longer than %s", ErrClaims, exp.Sub(iat), MaxLifetime)
	}
	now := v.now()
	if now.Add(-v.leeway).After(exp) {
		return nil, fmt.Errorf("%w: at %s", ErrExpired, exp.UTC().Format(time.RFC3339))
	}
	if now.Add(v.leeway).Before(iat) {
		return nil, fmt.Errorf("%w: issued in the future (%s)", ErrClaims, iat.UTC().Format(time.RFC3339))
	}
	if std.NotBefore != nil && now.Add(v.leeway).Before(std.NotBefore.Time()) {
		return nil, fmt.Errorf("%w: not valid before %s", ErrClaims, std.NotBefore.Time().UTC().Format(time.RFC3339))
	}
	groups := extra.Groups
	if groups == nil {
		groups = []string{}
	}
	return &Claims{
		Subject:  std.Subject,
		Email:    extra.Email,
		Groups:   groups,
		Kind:     extra.Kind,
		Provider: extra.Provider,
		Issuer:   std.Issuer,
		Audience: aud,
		IssuedAt: iat,
		Expiry:   exp,
	}, nil
}

func isP256(k *ecdsa.PublicKey) bool { return k != nil && k.Curve == elliptic.P256() }
