package jwtcheck

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	// DefaultMinRefreshInterval is the least time between two key set
	// fetches when KeySetOptions.MinRefreshInterval is zero.
	DefaultMinRefreshInterval = time.Minute
	// DefaultKeySetTTL is how long a key set is used when its response has
	// no Cache-Control max-age and KeySetOptions.DefaultTTL is zero.
	DefaultKeySetTTL = time.Hour
	// MaxKeySetTTL caps a max-age the issuer sends.
	MaxKeySetTTL = 24 * time.Hour
	// maxBodySize bounds a fetched key set or discovery document.
	maxBodySize = 1 << 20
	// fetchTimeout bounds one fetch (discovery plus key set).
	fetchTimeout = 10 * time.Second
	// minRSABits is the smallest RSA modulus a key set may use.
	minRSABits = 2048
)

// Key is a public key from a key set and the algorithms it may verify.
type Key struct {
	// Public is an *rsa.PublicKey or an *ecdsa.PublicKey.
	Public any
	// Algs are the algorithms this key verifies: the one its JWK declares,
	// or, when it declares none, every allowed one of its key type.
	Algs []jose.SignatureAlgorithm
}

// KeySetOptions configures a KeySet.
type KeySetOptions struct {
	// JWKSURL is the key set's address. "" means: discover it from
	// Issuer + "/.well-known/openid-configuration" (jwks_uri). Must be https,
	// or http to a loopback address.
	JWKSURL string
	// Issuer is the OIDC issuer URL, used for discovery when JWKSURL is "";
	// the discovery document's "issuer" must equal it exactly.
	Issuer string
	// Algs are the algorithms keys may be used for; keys for none of them
	// are dropped. Required; only SupportedAlgs may appear.
	Algs []jose.SignatureAlgorithm
	// HTTPClient fetches. Nil means a client with a 10s timeout.
	HTTPClient *http.Client
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// MinRefreshInterval is the least time between two fetches, so tokens
	// with made-up key ids cannot make sekisho hammer the issuer. Zero means
	// DefaultMinRefreshInterval (1m).
	MinRefreshInterval time.Duration
	// DefaultTTL is how long a fetched key set is used when the response has
	// no Cache-Control max-age. Zero means DefaultKeySetTTL (1h).
	DefaultTTL time.Duration
}

// KeySet is a lazily fetched, cached JSON Web Key Set. It is fetched on
// first use, again when older than its TTL (Cache-Control max-age, clamped
// to [MinRefreshInterval, 24h], else DefaultTTL) and when a token names an
// unknown kid — at most once per MinRefreshInterval in all, one fetch at a
// time. A failed fetch keeps the keys already held. Safe for concurrent use.
type KeySet struct {
	opts   KeySetOptions
	client *http.Client
	now    func() time.Time

	fetchMu sync.Mutex // one fetch at a time; waiters reuse its result

	mu          sync.RWMutex
	jwksURL     string // discovered or configured
	keys        map[string]Key
	fetchedAt   time.Time
	ttl         time.Duration
	attemptedAt time.Time
}

// NewKeySet checks opts and returns a KeySet. It does not fetch.
func NewKeySet(opts KeySetOptions) (*KeySet, error) {
	if len(opts.Algs) == 0 {
		return nil, errors.New("key set: no algorithms allowed")
	}
	for _, a := range opts.Algs {
		if !slices.Contains(SupportedAlgs, a) {
			return nil, fmt.Errorf("key set: algorithm %q is not supported (only %v)", a, SupportedAlgs)
		}
	}
	switch {
	case opts.JWKSURL != "":
		if err := CheckURL(opts.JWKSURL); err != nil {
			return nil, fmt.Errorf("key set: jwks_url: %w", err)
		}
	case opts.Issuer != "":
		if err := CheckURL(opts.Issuer); err != nil {
			return nil, fmt.Errorf("key set: issuer: %w", err)
		}
	default:
		return nil, errors.New("key set: neither a JWKS URL nor an issuer URL to discover it from")
	}
	k := &KeySet{opts: opts, client: opts.HTTPClient, now: opts.Now, jwksURL: opts.JWKSURL}
	if k.client == nil {
		k.client = &http.Client{Timeout: fetchTimeout}
	}
	if k.now == nil {
		k.now = time.Now
	}
	if k.opts.MinRefreshInterval <= 0 {
		k.opts.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if k.opts.DefaultTTL <= 0 {
		k.opts.DefaultTTL = DefaultKeySetTTL
	}
	return k, nil
}

// CheckURL accepts an absolute https URL, or http to a loopback host.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q: %w", raw, err)
	}
	switch {
	case u.Host == "":
		return fmt.Errorf("%q is not an absolute URL", raw)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("%q is plain http to a non-loopback host; anyone on the path could swap the keys: use https", raw)
	}
	return fmt.Errorf("%q is not an http(s) URL", raw)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Key returns the key named kid, fetching as the KeySet doc says. A fetch it
// triggers uses ctx's values but not its cancellation (a client hanging up
// must not abort it and so defeat the rate limit).
func (k *KeySet) Key(ctx context.Context, kid string) (Key, error) {
	key, ok, stale, canFetch := k.lookup(kid)
	if ok && (!stale || !canFetch) {
		return key, nil
	}
	k.fetchMu.Lock()
	defer k.fetchMu.Unlock()
	key, ok, stale, canFetch = k.lookup(kid)
	if ok && (!stale || !canFetch) {
		return key, nil
	}
	if !canFetch {
		return Key{}, fmt.Errorf("%w: kid %q (key set fetched less than %s ago)", ErrUnknownKey, kid, k.opts.MinRefreshInterval)
	}
	err := k.refresh(ctx)
	key, ok, _, _ = k.lookup(kid)
	switch {
	case ok:
		return key, nil // a failed refresh keeps the old keys
	case err != nil:
		return Key{}, fmt.Errorf("%w: kid %q (fetching the key set: %v)", ErrUnknownKey, kid, err)
	}
	return Key{}, fmt.Errorf("%w: kid %q", ErrUnknownKey, kid)
}

func (k *KeySet) lookup(kid string) (key Key, ok, stale, canFetch bool) {
	now := k.now()
	k.mu.RLock()
	defer k.mu.RUnlock()
	key, ok = k.keys[kid]
	stale = k.fetchedAt.IsZero() || now.Sub(k.fetchedAt) >= k.ttl
	canFetch = k.attemptedAt.IsZero() || now.Sub(k.attemptedAt) >= k.opts.MinRefreshInterval ||
		now.Before(k.attemptedAt) // the clock stepped back
	return key, ok, stale, canFetch
}

func (k *KeySet) refresh(ctx context.Context) error {
	k.mu.Lock()
	k.attemptedAt = k.now()
	jwksURL := k.jwksURL
	k.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	if jwksURL == "" {
		u, err := k.discover(ctx)
		if err != nil {
			return err
		}
		jwksURL = u
		k.mu.Lock()
		k.jwksURL = u
		k.mu.Unlock()
	}
	body, hdr, err := k.get(ctx, jwksURL)
	if err != nil {
		return err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return fmt.Errorf("GET %s: not a JSON Web Key Set: %w", jwksURL, err)
	}
	keys := UsableKeys(set, k.opts.Algs)
	if len(keys) == 0 {
		return fmt.Errorf("GET %s: the key set has no key with a kid for %v", jwksURL, k.opts.Algs)
	}
	k.mu.Lock()
	k.keys = keys
	k.fetchedAt = k.now()
	k.ttl = ttlFrom(hdr.Get("Cache-Control"), k.opts.DefaultTTL, k.opts.MinRefreshInterval)
	k.mu.Unlock()
	return nil
}

// discover reads the OIDC discovery document and returns its jwks_uri.
func (k *KeySet) discover(ctx context.Context) (string, error) {
	u := strings.TrimSuffix(k.opts.Issuer, "/") + "/.well-known/openid-configuration"
	body, _, err := k.get(ctx, u)
	if err != nil {
		return "", err
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("GET %s: not a discovery document: %w", u, err)
	}
	if doc.Issuer != k.opts.Issuer {
		return "", fmt.Errorf("GET %s: discovery says issuer %q, want %q", u, doc.Issuer, k.opts.Issuer)
	}
	if err := CheckURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("GET %s: jwks_uri: %w", u, err)
	}
	return doc.JWKSURI, nil
}

func (k *KeySet) get(ctx context.Context, u string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: status %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodySize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > maxBodySize {
		return nil, nil, fmt.Errorf("GET %s: response is larger than %d bytes", u, maxBodySize)
	}
	return body, resp.Header, nil
}

// ttlFrom reads max-age from a Cache-Control header, clamped to
// [lo, MaxKeySetTTL]; no-store, no-cache or no max-age give def.
func ttlFrom(cc string, def, lo time.Duration) time.Duration {
	ttl := def
	for d := range strings.SplitSeq(cc, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "no-store" || d == "no-cache":
			return lo
		case strings.HasPrefix(d, "max-age="):
			n, err := strconv.ParseInt(strings.Trim(d[len("max-age="):], `"`), 10, 64)
			if err == nil && n >= 0 && n < int64(MaxKeySetTTL/time.Second) {
				ttl = time.Duration(n) * time.Second
			} else if err == nil && n >= 0 {
				ttl = MaxKeySetTTL
			}
		}
	}
	return min(max(ttl, lo), MaxKeySetTTL)
}

// UsableKeys keeps the signing keys with a kid that may verify one of algs:
// RSA keys of at least 2048 bits for RS256/RS384/RS512/PS256, P-256 keys for
// ES256, P-384 keys for ES384. A key that declares an alg is pinned to it
// (and dropped if the alg does not fit its type); symmetric keys are never
// used, so no HMAC-with-the-public-key confusion is possible.
func UsableKeys(set jose.JSONWebKeySet, algs []jose.SignatureAlgorithm) map[string]Key {
	out := make(map[string]Key, len(set.Keys))
	for _, jk := range set.Keys {
		if jk.KeyID == "" || (jk.Use != "" && jk.Use != "sig") {
			continue
		}
		pub, family := publicKey(jk.Key)
		if pub == nil {
			continue
		}
		var use []jose.SignatureAlgorithm
		for _, a := range family {
			if slices.Contains(algs, a) && (jk.Algorithm == "" || jk.Algorithm == string(a)) {
				use = append(use, a)
			}
		}
		if len(use) == 0 {
			continue
		}
		if _, dup := out[jk.KeyID]; dup {
			continue // the first key with a kid wins; a later one cannot shadow it
		}
		out[jk.KeyID] = Key{Public: pub, Algs: use}
	}
	return out
}

// publicKey returns the public half of a JWK's key and the algorithms its
// type can verify, or nil for keys sekisho does not use.
func publicKey(k any) (any, []jose.SignatureAlgorithm) {
	switch key := k.(type) {
	case *rsa.PrivateKey:
		return publicKey(&key.PublicKey)
	case *ecdsa.PrivateKey:
		return publicKey(&key.PublicKey)
	case *rsa.PublicKey:
		if key.N == nil || key.N.BitLen() < minRSABits {
			return nil, nil
		}
		return key, []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256}
	case *ecdsa.PublicKey:
		switch key.Curve {
		case elliptic.P256():
			return key, []jose.SignatureAlgorithm{jose.ES256}
		case elliptic.P384():
			return key, []jose.SignatureAlgorithm{jose.ES384}
		}
	}
	return nil, nil
}
