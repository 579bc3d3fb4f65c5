package assert

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/sekisho/sekisho/internal/identity"
)

const (
	// DefaultLifetime is how long an assertion is valid when
	// SignerOptions.Lifetime is zero.
	DefaultLifetime = 5 * time.Minute
	// MaxLifetime is the longest lifetime a Signer accepts; pkg/verify
	// rejects tokens whose exp - iat is longer.
	MaxLifetime = 10 * time.Minute
	// DefaultCacheSize is how many signed tokens a Signer keeps when
	// SignerOptions.CacheSize is zero.
	DefaultCacheSize = 10000
)

// SignerOptions configures NewSigner.
type SignerOptions struct {
	// Keys are the P-256 keys. Keys[0] signs; every key is published in the
	// JWKS, so during a rotation the old key stays listed (second) until the
	// tokens it signed have expired. At least one key is required.
	Keys []*ecdsa.PrivateKey
	// Issuer is the "iss" claim, normally the gateway's external URL.
	// Required.
	Issuer string
	// Lifetime is exp - iat. Zero means DefaultLifetime (5m). It must be at
	// least one second and at most MaxLifetime (10m).
	Lifetime time.Duration
	// CacheSize bounds how many signed tokens are kept for reuse. Zero means
	// DefaultCacheSize; a negative value turns the cache off.
	CacheSize int
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Signer signs assertions. It is safe for concurrent use.
//
// A token for the same audience and the same identity is reused while more
// than half of its lifetime is left, so a busy user costs one ECDSA signature
// per half-lifetime per route, not one per request.
type Signer struct {
	signer   jose.Signer
	issuer   string
	lifetime time.Duration
	now      func() time.Time
	jwks     []byte

	maxEntries int
	mu         sync.Mutex
	cache      map[cacheKey]cacheEntry
}

// cacheKey is the exact, length-prefixed encoding of every input to the
// claims (see appendCacheKey), or for a long one ("h" + SHA-256 of it).
// A raw key starts with "r", so the two kinds never meet.
type cacheKey = string

// maxRawKey is the longest encoding kept as it is; longer ones (many or
// long group names) are hashed so that a full cache stays small.
const maxRawKey = 256

type cacheEntry struct {
	token      string
	iat        time.Time
	freshUntil time.Time // reuse before this instant (iat + lifetime/2)
}

// NewSigner checks opts and returns a Signer.
func NewSigner(opts SignerOptions) (*Signer, error) {
	if len(opts.Keys) == 0 {
		return nil, errors.New("assertion signer: no signing key")
	}
	if opts.Issuer == "" {
		return nil, errors.New("assertion signer: issuer is empty")
	}
	lifetime := opts.Lifetime
	switch {
	case lifetime == 0:
		lifetime = DefaultLifetime
	case lifetime < 0:
		return nil, fmt.Errorf("assertion signer: lifetime %s is negative", lifetime)
	case lifetime < time.Second:
		return nil, fmt.Errorf("assertion signer: lifetime %s is shorter than 1s", lifetime)
	case lifetime > MaxLifetime:
		return nil, fmt.Errorf("assertion signer: lifetime %s is longer than the maximum %s", lifetime, MaxLifetime)
	}
	lifetime = lifetime.Truncate(time.Second) // JWT times are whole seconds

	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(opts.Keys))}
	seen := make(map[string]int, len(opts.Keys))
	var signKID string
	for i, k := range opts.Keys {
		if k == nil {
			return nil, fmt.Errorf("assertion signer: key %d is nil", i)
		}
		kid, err := KeyID(&k.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("assertion signer: key %d: %w", i, err)
		}
		if j, dup := seen[kid]; dup {
			return nil, fmt.Errorf("assertion signer: key %d is the same key as key %d (kid %s)", i, j, kid)
		}
		seen[kid] = i
		if i == 0 {
			signKID = kid
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key:       &k.PublicKey,
			KeyID:     kid,
			Algorithm: string(jose.ES256),
			Use:       "sig",
		})
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("assertion signer: encoding JWKS: %w", err)
	}

	js, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: opts.Keys[0], KeyID: signKID}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return nil, fmt.Errorf("assertion signer: %w", err)
	}

	now := opts.Now
	if now == nil {
		now = time.Now
	}
	maxEntries := opts.CacheSize
	if maxEntries == 0 {
		maxEntries = DefaultCacheSize
	}
	return &Signer{
		signer:     js,
		issuer:     opts.Issuer,
		lifetime:   lifetime,
		now:        now,
		jwks:       jwks,
		maxEntries: maxEntries,
		cache:      make(map[cacheKey]cacheEntry),
	}, nil
}

// claims is the assertion's payload.
type claims struct {
	jwt.Claims
	Email    string   `json:"email"`
	Groups   []string `json:"groups"`
	Kind     string   `json:"sekisho_kind"`
	Provider string   `json:"provider"`
}

// Sign returns an assertion for id addressed to audience (the route name):
// claims iss, aud, sub (id.User), email, groups (always an array), iat, exp,
// sekisho_kind and provider. It refuses an empty audience and an
// unauthenticated identity.
func (s *Signer) Sign(audience string, id identity.Identity) (string, error) {
	if audience == "" {
		return "", errors.New("assertion: audience (route name) is empty")
	}
	if !id.Authenticated() {
		return "", errors.New("assertion: identity is anonymous")
	}
	now := s.now()
	var buf [maxRawKey]byte
	key := cacheKeyBytes(buf[:0], audience, id)
	if s.maxEntries > 0 {
		s.mu.Lock()
		e, ok := s.cache[string(key)] // no copy for a lookup
		s.mu.Unlock()
		// The iat check keeps a clock that stepped back from handing out
		// a token issued in the future.
		if ok && !now.Before(e.iat) && now.Before(e.freshUntil) {
			return e.token, nil
		}
	}

	iat := time.Unix(now.Unix(), 0)
	exp := iat.Add(s.lifetime)
	groups := id.Groups
	if groups == nil {
		groups = []string{}
	}
	c := claims{
		Claims: jwt.Claims{
			Issuer:   s.issuer,
			Subject:  id.User,
			Audience: jwt.Audience{audience},
			IssuedAt: jwt.NewNumericDate(iat),
			Expiry:   jwt.NewNumericDate(exp),
		},
		Email:    id.Email,
		Groups:   groups,
		Kind:     string(id.Kind),
		Provider: id.Provider,
	}
	token, err := jwt.Signed(s.signer).Claims(c).Serialize()
	if err != nil {
		return "", fmt.Errorf("assertion: signing: %w", err)
	}
	if s.maxEntries > 0 {
		s.store(string(key), cacheEntry{token: token, iat: iat, freshUntil: iat.Add(s.lifetime / 2)}, now)
	}
	return token, nil
}

// store adds e to the cache, making room first if it is full: entries past
// their half-life go first, then arbitrary ones until an eighth of the room
// is free, so the sweep is paid once per many inserts, not on each one.
func (s *Signer) store(key cacheKey, e cacheEntry, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cache[key]; !ok && len(s.cache) >= s.maxEntries {
		for k, old := range s.cache {
			if !now.Before(old.freshUntil) {
				delete(s.cache, k)
			}
		}
		target := s.maxEntries - s.maxEntries/8
		if target >= s.maxEntries {
			target = s.maxEntries - 1
		}
		for k := range s.cache {
			if len(s.cache) <= target {
				break
			}
			delete(s.cache, k) // map order is random: a random eviction
		}
	}
	s.cache[key] = e
}

// cacheLen reports the number of cached tokens (for tests).
func (s *Signer) cacheLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.cache)
}

// cacheKeyBytes appends the cache key for a token for audience and id to
// buf: every input that goes into the claims, each field length-prefixed so
// that no two different inputs share an encoding. Keys longer than
// maxRawKey are replaced by their SHA-256.
func cacheKeyBytes(buf []byte, audience string, id identity.Identity) []byte {
	b := append(buf, 'r')
	put := func(s string) {
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	put(audience)
	put(string(id.Kind))
	put(id.User)
	put(id.Email)
	put(id.Provider)
	b = binary.BigEndian.AppendUint64(b, uint64(len(id.Groups)))
	for _, g := range id.Groups {
		put(g)
	}
	if len(b) <= maxRawKey {
		return b
	}
	sum := sha256.Sum256(b)
	return append(append(buf[:0], 'h'), sum[:]...)
}

// JWKS returns the JSON Web Key Set of every configured key's public half,
// each with kid, "alg": "ES256" and "use": "sig". The slice is shared; do not
// modify it.
func (s *Signer) JWKS() []byte { return s.jwks }

// Handler serves JWKS() with Content-Type application/json and
// Cache-Control "public, max-age=300". Mount it at /.sekisho/jwks.json.
// Methods other than GET and HEAD get 405.
func (s *Signer) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age=300")
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Method == http.MethodHead {
			return
		}
		w.Write(s.jwks)
	})
}
