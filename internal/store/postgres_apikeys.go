package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
)

// CreateAPIKey implements APIKeys.
func (p *Postgres) CreateAPIKey(ctx context.Context, k APIKey) error {
	name, err := checkAPIKey(k)
	if err != nil {
		return fmt.Errorf("store: create api key: %w", err)
	}
	routes, err := encodeList(k.Routes)
	if err != nil {
		return fmt.Errorf("store: create api key %q: %w", name, err)
	}
	methods, err := encodeList(k.Methods)
	if err != nil {
		return fmt.Errorf("store: create api key %q: %w", name, err)
	}
	paths, err := encodeList(k.PathPrefixes)
	if err != nil {
		return fmt.Errorf("store: create api key %q: %w", name, err)
	}
	now := toMicros(p.now())
	err = p.inTx(ctx, func(tx pgx.Tx) error {
		// ON CONFLICT DO NOTHING without a target covers both unique
		// columns (id and name); a concurrent insert of the same key waits
		// for the other transaction and then does nothing.
		tag, err := tx.Exec(ctx, `INSERT INTO api_keys (`+apiKeyColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0)
			ON CONFLICT DO NOTHING`,
			k.ID, name, k.SecretHash, routes, methods, paths, now, toMicros(k.ExpiresAt))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrExists
		}
		return p.insertAPIKeyChange(ctx, tx, k.ID)
	})
	if err != nil {
		return fmt.Errorf("store: create api key %q: %w", name, err)
	}
	return nil
}

// GetAPIKey implements APIKeys.
func (p *Postgres) GetAPIKey(ctx context.Context, id string) (APIKey, error) {
	if err := checkAPIKeyID(id); err != nil {
		// An invalid id cannot exist; callers treat it like any missing key.
		return APIKey{}, fmt.Errorf("store: get api key: %w: %w", ErrNotFound, err)
	}
	k, err := scanAPIKey(p.pool.QueryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return APIKey{}, fmt.Errorf("store: get api key %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return APIKey{}, fmt.Errorf("store: get api key %q: %w", id, err)
	}
	return k, nil
}

// ListAPIKeys implements APIKeys.
func (p *Postgres) ListAPIKeys(ctx context.Context) ([]APIKey, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: list api keys: %w", err)
	}
	defer rows.Close()
	var ks []APIKey
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list api keys: %w", err)
		}
		ks = append(ks, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list api keys: %w", err)
	}
	return ks, nil
}

// RevokeAPIKey implements APIKeys.
func (p *Postgres) RevokeAPIKey(ctx context.Context, idOrName string) (APIKey, error) {
	// Ids are lower case like names, so one lowercased value finds either.
	key := asciiLower(idOrName)
	if key == "" || len(key) > MaxNameLen || checkText("key", key) != nil {
		return APIKey{}, fmt.Errorf("store: revoke api key %q: %w", truncate(idOrName, MaxNameLen), ErrNotFound)
	}
	var out APIKey
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		// FOR UPDATE: a concurrent revoke of the same key waits here and
		// then reads it revoked, so the key gets one RevokedAt and one
		// change row, as with SQLite's single writer.
		rows, err := tx.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE id = $1 OR name = $1 ORDER BY id FOR UPDATE`, key)
		if err != nil {
			return err
		}
		var found []APIKey
		for rows.Next() {
			k, err := scanAPIKey(rows)
			if err != nil {
				rows.Close()
				return err
			}
			found = append(found, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		switch len(found) {
		case 0:
			return ErrNotFound
		case 1:
		default:
			byID := found[0]
			for _, k := range found {
				if k.ID == key {
					byID = k
				}
			}
			return fmt.Errorf("%q is the id of key %q and the name of another key; revoke by the id of the one you mean", key, byID.Name)
		}
		out = found[0]
		if !out.RevokedAt.IsZero() {
			return nil
		}
		now := p.now()
		if _, err := tx.Exec(ctx, `UPDATE api_keys SET revoked_at = $2 WHERE id = $1`, out.ID, toMicros(now)); err != nil {
			return err
		}
		out.RevokedAt = fromMicros(toMicros(now))
		return p.insertAPIKeyChange(ctx, tx, out.ID)
	})
	if err != nil {
		return APIKey{}, fmt.Errorf("store: revoke api key %q: %w", key, err)
	}
	return out, nil
}

// TouchAPIKeys implements APIKeys.
func (p *Postgres) TouchAPIKeys(ctx context.Context, used map[string]time.Time) error {
	ids := make([]string, 0, len(used))
	for id := range used {
		if checkText("id", id) == nil { // any other id cannot exist: skipped like unknown ids
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	// Rows are locked in id order, so two replicas flushing overlapping
	// sets at once cannot deadlock.
	sort.Strings(ids)
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		b := new(pgx.Batch)
		for _, id := range ids {
			b.Queue(`UPDATE api_keys SET last_used_at = GREATEST(last_used_at, $2) WHERE id = $1`, id, toMicros(used[id]))
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("store: record last use of %d api key(s): %w", len(used), err)
	}
	return nil
}

// APIKeyChangesSince implements APIKeys.
func (p *Postgres) APIKeyChangesSince(ctx context.Context, seq int64) ([]APIKeyChange, error) {
	rows, err := p.pool.Query(ctx, `SELECT seq, key_id FROM api_key_changes WHERE seq > $1 ORDER BY seq LIMIT $2`,
		seq, APIKeyChangeBatch)
	if err != nil {
		return nil, fmt.Errorf("store: api key changes since seq %d: %w", seq, err)
	}
	defer rows.Close()
	var cs []APIKeyChange
	for rows.Next() {
		var c APIKeyChange
		if err := rows.Scan(&c.Seq, &c.KeyID); err != nil {
			return nil, fmt.Errorf("store: api key changes since seq %d: %w", seq, err)
		}
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: api key changes since seq %d: %w", seq, err)
	}
	return cs, nil
}

// LatestAPIKeyChange implements APIKeys.
func (p *Postgres) LatestAPIKeyChange(ctx context.Context) (int64, error) {
	var v int64
	if err := p.pool.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM api_key_changes`).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: latest api key change: %w", err)
	}
	return v, nil
}

func (p *Postgres) insertAPIKeyChange(ctx context.Context, tx pgx.Tx, id string) error {
	return p.appendLog(ctx, tx, "api_key_changes", `INSERT INTO api_key_changes (key_id) VALUES ($1)`, id)
}
