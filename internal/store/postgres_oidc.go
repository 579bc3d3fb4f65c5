package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// PutOIDCTokens implements OIDCTokens.
func (p *Postgres) PutOIDCTokens(ctx context.Context, t OIDCTokenRecord) error {
	if err := checkOIDCTokens(t); err != nil {
		return fmt.Errorf("store: put oidc tokens: %w", err)
	}
	_, err := p.pool.Exec(ctx, `INSERT INTO oidc_tokens (session_id, provider, subject, sealed, expires_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (session_id) DO UPDATE SET provider = excluded.provider, subject = excluded.subject,
			sealed = excluded.sealed, expires_at = excluded.expires_at, updated_at = excluded.updated_at`,
		t.SessionID, t.Provider, t.Subject, t.Sealed, toMicros(t.ExpiresAt), toMicros(p.now()))
	if err != nil {
		return fmt.Errorf("store: put oidc tokens for provider %q: %w", t.Provider, err)
	}
	return nil
}

// GetOIDCTokens implements OIDCTokens.
func (p *Postgres) GetOIDCTokens(ctx context.Context, sessionID string) (OIDCTokenRecord, error) {
	var (
		t                  OIDCTokenRecord
		expires, updatedAt int64
	)
	if checkText("session id", sessionID) != nil {
		// Cannot have been stored (and Postgres would refuse the query).
		return OIDCTokenRecord{}, fmt.Errorf("store: oidc tokens of the session: %w", ErrNotFound)
	}
	err := p.pool.QueryRow(ctx, `SELECT session_id, provider, subject, sealed, expires_at, updated_at
		FROM oidc_tokens WHERE session_id = $1 AND expires_at >= $2`, sessionID, toMicros(p.now())).
		Scan(&t.SessionID, &t.Provider, &t.Subject, &t.Sealed, &expires, &updatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return OIDCTokenRecord{}, fmt.Errorf("store: oidc tokens of the session: %w", ErrNotFound)
	}
	if err != nil {
		return OIDCTokenRecord{}, fmt.Errorf("store: get oidc tokens: %w", err)
	}
	t.ExpiresAt, t.UpdatedAt = fromMicros(expires), fromMicros(updatedAt)
	return t, nil
}

// DeleteOIDCTokens implements OIDCTokens.
func (p *Postgres) DeleteOIDCTokens(ctx context.Context, sessionID string) error {
	if checkText("session id", sessionID) != nil {
		return nil // cannot have been stored
	}
	if _, err := p.pool.Exec(ctx, `DELETE FROM oidc_tokens WHERE session_id = $1`, sessionID); err != nil {
		return fmt.Errorf("store: delete oidc tokens: %w", err)
	}
	return nil
}

// PruneOIDCTokens implements OIDCTokens.
func (p *Postgres) PruneOIDCTokens(ctx context.Context, now time.Time) (int64, error) {
	tag, err := p.pool.Exec(ctx, `DELETE FROM oidc_tokens WHERE expires_at < $1`, toMicros(now))
	if err != nil {
		return 0, fmt.Errorf("store: prune oidc tokens: %w", err)
	}
	return tag.RowsAffected(), nil
}
