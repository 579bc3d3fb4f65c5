package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// APIKeys holds API keys for machines. The key's secret is never stored,
// only its hash (see internal/apikey, which makes keys and checks them).
// Every create and revoke also appends a row to a change log that each
// replica's key cache polls (APIKeyChangesSince), so a revocation reaches
// every replica within one poll interval without a store query per request.
//
// The same ordering promise as [Revocations] holds for the change log: a
// row with seq s is visible only after every row with a smaller seq is.
type APIKeys interface {
	// CreateAPIKey adds k. CreatedAt is set to the store's clock; RevokedAt
	// and LastUsedAt are ignored. It fails with ErrExists if the id or the
	// name is taken (by a live or a revoked key).
	CreateAPIKey(ctx context.Context, k APIKey) error
	// GetAPIKey returns the key with the given id or an error wrapping
	// ErrNotFound.
	GetAPIKey(ctx context.Context, id string) (APIKey, error)
	// ListAPIKeys returns every key, revoked and expired ones too, ordered
	// by name.
	ListAPIKeys(ctx context.Context) ([]APIKey, error)
	// RevokeAPIKey revokes the key whose id or name is idOrName at the
	// store's clock and returns it as it now is. Revoking a revoked key
	// keeps the first RevokedAt and succeeds. It fails with ErrNotFound if
	// no key matches, and refuses when idOrName is one key's id and
	// another key's name.
	RevokeAPIKey(ctx context.Context, idOrName string) (APIKey, error)
	// TouchAPIKeys records when keys were last used: used maps key id to
	// time. A time never moves LastUsedAt backwards; unknown ids are
	// skipped. Callers batch these (one call every minute or so), never
	// one write per request. Touches do not enter the change log.
	TouchAPIKeys(ctx context.Context, used map[string]time.Time) error
	// APIKeyChangesSince returns up to [APIKeyChangeBatch] change-log rows
	// with Seq > seq, in ascending Seq order. Callers loop until a short
	// batch to catch up.
	APIKeyChangesSince(ctx context.Context, seq int64) ([]APIKeyChange, error)
	// LatestAPIKeyChange returns the highest Seq in the change log (0 if
	// none), so a cache can load every key and then poll from there.
	LatestAPIKeyChange(ctx context.Context) (int64, error)
}

// APIKeyChangeBatch bounds how many rows one APIKeyChangesSince call returns.
const APIKeyChangeBatch = 1000

var _ APIKeys = (*SQLite)(nil)

// APIKey is one machine credential.
type APIKey struct {
	// ID is the public part of the key, used to find the record; 1-64
	// characters of [a-z0-9].
	ID string
	// Name is the operator's label, unique, 1-64 characters of
	// [a-z0-9._@-] (lowercased); identities read "apikey:"+Name.
	Name string
	// SecretHash is the 32-byte hash of the key's secret.
	SecretHash []byte
	// Routes are the route names the key is valid on; at least one.
	Routes []string
	// Methods the key may use (upper case); nil or empty means any.
	Methods []string
	// PathPrefixes the request path must lie under; nil or empty means any.
	PathPrefixes []string
	// CreatedAt is set by the store.
	CreatedAt time.Time
	// ExpiresAt is when the key stops working; zero means never.
	ExpiresAt time.Time
	// RevokedAt is when the key was revoked; zero means it is not.
	RevokedAt time.Time
	// LastUsedAt is the last recorded use (recorded in batches, so it may
	// lag by the flush interval); zero means never.
	LastUsedAt time.Time
}

// APIKeyChange is one change-log row: the key with KeyID was created or
// revoked and caches must re-read it.
type APIKeyChange struct {
	Seq   int64
	KeyID string
}

// Bounds on an API key record.
const (
	MaxAPIKeyIDLen      = 64
	MaxAPIKeyScopeItems = 64
	MaxAPIKeyScopeLen   = 1024
)

// CanonicalAPIKeyName lowercases name and checks it is 1-64 characters of
// [a-z0-9._@-], like account names. The error names the bad name.
func CanonicalAPIKeyName(name string) (string, error) {
	n := asciiLower(name)
	if n == "" {
		return "", errors.New("api key name is empty")
	}
	if len(n) > MaxNameLen {
		return "", fmt.Errorf("api key name %q is longer than %d characters", truncate(name, MaxNameLen), MaxNameLen)
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '@' || c == '-') {
			return "", fmt.Errorf("api key name %q: character %q not allowed (use a-z 0-9 . _ @ -)", truncate(name, MaxNameLen), c)
		}
	}
	return n, nil
}

func checkAPIKeyID(id string) error {
	if id == "" || len(id) > MaxAPIKeyIDLen {
		return fmt.Errorf("api key id must be 1-%d characters", MaxAPIKeyIDLen)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return fmt.Errorf("api key id %q: character %q not allowed (a-z 0-9)", truncate(id, MaxAPIKeyIDLen), c)
		}
	}
	return nil
}

// checkAPIKey checks the shape of a record before it is written; it returns
// the canonical name.
func checkAPIKey(k APIKey) (string, error) {
	if err := checkAPIKeyID(k.ID); err != nil {
		return "", err
	}
	name, err := CanonicalAPIKeyName(k.Name)
	if err != nil {
		return "", err
	}
	if len(k.SecretHash) != 32 {
		return "", fmt.Errorf("api key %q: secret hash is %d bytes, want 32", name, len(k.SecretHash))
	}
	if len(k.Routes) == 0 {
		return "", fmt.Errorf("api key %q: names no route", name)
	}
	for _, l := range []struct {
		what  string
		items []string
		check func(string) bool
	}{
		{"route", k.Routes, func(s string) bool {
			return strings.TrimSpace(s) == s && !strings.ContainsAny(s, "\x00\r\n") && utf8.ValidString(s)
		}},
		{"method", k.Methods, func(s string) bool { return strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == "" }},
		{"path prefix", k.PathPrefixes, func(s string) bool { return s[0] == '/' && !strings.ContainsAny(s, "\x00\r\n?#") }},
	} {
		if len(l.items) > MaxAPIKeyScopeItems {
			return "", fmt.Errorf("api key %q: %d %ss, more than the %d allowed", name, len(l.items), l.what, MaxAPIKeyScopeItems)
		}
		for _, s := range l.items {
			if s == "" || len(s) > MaxAPIKeyScopeLen || !l.check(s) {
				return "", fmt.Errorf("api key %q: %s %q is not valid", name, l.what, truncate(s, 64))
			}
		}
	}
	return name, nil
}
