package store

import (
	"context"
	"errors"
	"time"
)

// OIDCTokens keeps, per browser session, what sekisho received from an OIDC
// provider at sign-in and needs later without putting it in the cookie: the
// refresh token (to refresh the session's identity) and the ID token (the
// id_token_hint of RP-initiated logout). The store sees only an opaque blob
// sealed by the caller (internal/authn/oidc seals it with the session
// keyring), so a database dump reveals no token.
type OIDCTokens interface {
	// PutOIDCTokens inserts or replaces the row of t.SessionID. UpdatedAt
	// is set to the store's clock.
	PutOIDCTokens(ctx context.Context, t OIDCTokenRecord) error
	// GetOIDCTokens returns the session's row or an error wrapping
	// ErrNotFound. A row past its ExpiresAt is reported as not found.
	GetOIDCTokens(ctx context.Context, sessionID string) (OIDCTokenRecord, error)
	// DeleteOIDCTokens removes the session's row; no row is not an error.
	DeleteOIDCTokens(ctx context.Context, sessionID string) error
	// PruneOIDCTokens deletes rows whose ExpiresAt is before now and
	// returns how many it deleted.
	PruneOIDCTokens(ctx context.Context, now time.Time) (int64, error)
}

// OIDCTokenRecord is one session's provider tokens, sealed.
type OIDCTokenRecord struct {
	// SessionID is the browser session's ID (session.Session.ID). Required.
	SessionID string
	// Provider is the configured OIDC provider name. Required.
	Provider string
	// Subject is the provider's sub claim, so a user's rows can be found.
	Subject string
	// Sealed is the caller's sealed blob; at most MaxOIDCSealedBytes.
	Sealed []byte
	// ExpiresAt is when the row may be pruned: the session's absolute end.
	// Required.
	ExpiresAt time.Time
	// UpdatedAt is set by the store.
	UpdatedAt time.Time
}

// MaxOIDCSealedBytes bounds OIDCTokenRecord.Sealed (ID tokens with many
// groups can be a few KiB).
const MaxOIDCSealedBytes = 64 << 10

var _ OIDCTokens = (*SQLite)(nil)

func checkOIDCTokens(t OIDCTokenRecord) error {
	for _, f := range []struct{ what, s string }{
		{"oidc tokens: session id", t.SessionID}, {"oidc tokens: provider", t.Provider}, {"oidc tokens: subject", t.Subject},
	} {
		if err := checkText(f.what, f.s); err != nil {
			return err
		}
	}
	switch {
	case t.SessionID == "" || len(t.SessionID) > 256:
		return errors.New("oidc tokens: session id must be 1-256 bytes")
	case t.Provider == "" || len(t.Provider) > 256:
		return errors.New("oidc tokens: provider must be 1-256 bytes")
	case len(t.Subject) > 1024:
		return errors.New("oidc tokens: subject longer than 1024 bytes")
	case len(t.Sealed) == 0 || len(t.Sealed) > MaxOIDCSealedBytes:
		return errors.New("oidc tokens: sealed blob must be 1 byte to 64 KiB")
	case t.ExpiresAt.IsZero():
		return errors.New("oidc tokens: expiry is required")
	}
	return nil
}
