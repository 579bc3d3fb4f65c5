package verify

import (
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	// maxJWKSSize bounds a fetched key set.
	maxJWKSSize = 1 << 20
	// fetchTimeout bounds one key set fetch.
	fetchTimeout = 10 * time.Second
)

// key returns the public key named kid, fetching the key set if there is
// none yet, if it is older than KeySetTTL, or if kid is unknown — at most
// once per MinRefreshInterval in all. A caller with an unknown kid waits for
// a fetch already in flight.
func (v *Verifier) key(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	k, stale, canFetch := v.lookup(kid)
	switch {
	case v.static:
		if k == nil {
			return nil, fmt.Errorf("%w: kid %q", ErrUnknownKey, kid)
		}
		return k, nil
	case k != nil && (!stale || !canFetch):
		return k, nil // fresh, or stale but too soon to refetch
	}

	// Unknown kid or stale set: fetch, or wait for the fetch in flight.
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	k, stale, canFetch = v.lookup(kid)
	if k != nil && (!stale || !canFetch) {
		return k, nil
	}
	if !canFetch {
		return nil, fmt.Errorf("%w: kid %q", ErrUnknownKey, kid)
	}
	err := v.refresh(ctx)
	k, _, _ = v.lookup(kid)
	if k == nil {
		if err != nil {
			return nil, fmt.Errorf("%w: kid %q (fetching key set: %v)", ErrUnknownKey, kid, err)
		}
		return nil, fmt.Errorf("%w: kid %q", ErrUnknownKey, kid)
	}
	return k, nil // a failed refresh keeps the old keys
}

// lookup reports the cached key for kid, whether the cached set is past its
// TTL, and whether the rate limit allows a fetch now.
func (v *Verifier) lookup(kid string) (key *ecdsa.PublicKey, stale, canFetch bool) {
	now := v.now()
	v.mu.RLock()
	defer v.mu.RUnlock()
	key = v.keys[kid]
	stale = v.fetchedAt.IsZero() || now.Sub(v.fetchedAt) >= v.opts.KeySetTTL
	canFetch = v.attemptedAt.IsZero() || now.Sub(v.attemptedAt) >= v.opts.MinRefreshInterval ||
		now.Before(v.attemptedAt) // the clock stepped back
	return key, stale, canFetch
}

// refresh fetches the key set and replaces the cached keys on success.
func (v *Verifier) refresh(ctx context.Context) error {
	v.mu.Lock()
	v.attemptedAt = v.now()
	v.mu.Unlock()

	// The fetch ignores the caller's cancellation: a client that hangs up
	// must not abort it, or forged kids plus hang-ups would defeat the rate
	// limit. It is bounded by fetchTimeout instead.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	keys, err := v.fetch(ctx)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.keys = keys
	v.fetchedAt = v.now()
	v.mu.Unlock()
	return nil
}

func (v *Verifier) fetch(ctx context.Context) (map[string]*ecdsa.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.opts.JWKSURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %s", v.opts.JWKSURL, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", v.opts.JWKSURL, err)
	}
	if len(body) > maxJWKSSize {
		return nil, fmt.Errorf("GET %s: key set is larger than %d bytes", v.opts.JWKSURL, maxJWKSSize)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("GET %s: not a JSON Web Key Set: %w", v.opts.JWKSURL, err)
	}
	keys := usableKeys(set)
	if len(keys) == 0 {
		return nil, fmt.Errorf("GET %s: key set has no ES256 (P-256) key with a kid", v.opts.JWKSURL)
	}
	return keys, nil
}

// usableKeys keeps the P-256 keys with a kid that may verify ES256
// signatures (alg and use, when present, must say so).
func usableKeys(set jose.JSONWebKeySet) map[string]*ecdsa.PublicKey {
	out := make(map[string]*ecdsa.PublicKey, len(set.Keys))
	for _, k := range set.Keys {
		if k.KeyID == "" || (k.Algorithm != "" && k.Algorithm != string(jose.ES256)) || (k.Use != "" && k.Use != "sig") {
			continue
		}
		var pub *ecdsa.PublicKey
		switch key := k.Key.(type) {
		case *ecdsa.PublicKey:
			pub = key
		case *ecdsa.PrivateKey:
			pub = &key.PublicKey
		}
		if isP256(pub) {
			out[k.KeyID] = pub
		}
	}
	return out
}

// headerOf decodes the protected header of a compact JWS into dst.
func headerOf(token string, dst any) error {
	h, _, ok := strings.Cut(token, ".")
	if !ok {
		return fmt.Errorf("no header")
	}
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, dst)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
