// Package gcpauth gets Google-signed ID tokens from the metadata server
// (Compute Engine, Cloud Run, GKE), so that sekisho can call a Cloud Run
// service whose ingress is internal and which admits only callers with
// roles/run.invoker: sekisho's own service account.
package gcpauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/compute/metadata"
)

// Header is where an ID token for Cloud Run goes: Cloud Run checks it
// and leaves Authorization to the app (its own API keys, its users'
// tokens).
const Header = "X-Serverless-Authorization"

// refreshBefore is how long before a token's expiry a new one is fetched.
const refreshBefore = 5 * time.Minute

// IDTokens fetches ID tokens for audiences and caches each until shortly
// before it expires. Safe for concurrent use; one fetch per audience at a
// time.
type IDTokens struct {
	// Client reaches the metadata server. nil: one with a 5 s timeout
	// (GCE_METADATA_HOST, when set, names the server, as for every Google
	// client library).
	Client *metadata.Client
	// Now is the clock. nil: time.Now.
	Now func() time.Time

	once  sync.Once
	mu    sync.Mutex
	cache map[string]*cached
}

type cached struct {
	mu      sync.Mutex // held during a fetch
	token   string
	expires time.Time
}

func (s *IDTokens) init() {
	s.once.Do(func() {
		if s.Client == nil {
			s.Client = metadata.NewClient(&http.Client{Timeout: 5 * time.Second})
		}
		if s.Now == nil {
			s.Now = time.Now
		}
		s.cache = map[string]*cached{}
	})
}

// Token returns an ID token for audience, from the cache while it has more
// than five minutes left.
func (s *IDTokens) Token(ctx context.Context, audience string) (string, error) {
	s.init()
	s.mu.Lock()
	c, ok := s.cache[audience]
	if !ok {
		c = &cached{}
		s.cache[audience] = c
	}
	s.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && s.Now().Before(c.expires.Add(-refreshBefore)) {
		return c.token, nil
	}
	tok, err := s.Client.GetWithContext(ctx, "instance/service-accounts/default/identity?audience="+url.QueryEscape(audience)+"&format=full")
	if err != nil {
		return "", fmt.Errorf("ID token for audience %q from the metadata server: %w", audience, err)
	}
	tok = strings.TrimSpace(tok)
	exp, err := expiry(tok)
	if err != nil {
		return "", fmt.Errorf("ID token for audience %q: %w", audience, err)
	}
	c.token, c.expires = tok, exp
	return tok, nil
}

// expiry reads a JWT's exp claim. The token is not verified: it comes
// from the metadata server and is for the upstream to check; only its
// lifetime matters here.
func expiry(jwt string) (time.Time, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return time.Time{}, errors.New("the metadata server's answer is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, errors.New("the metadata server's token has a malformed payload")
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == 0 {
		return time.Time{}, errors.New("the metadata server's token has no expiry")
	}
	return time.Unix(claims.Exp, 0), nil
}
