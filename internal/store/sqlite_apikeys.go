package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

const apiKeyColumns = `id, name, secret_hash, routes_json, methods_json, paths_json, created_at, expires_at, revoked_at, last_used_at`

// CreateAPIKey implements APIKeys.
func (s *SQLite) CreateAPIKey(ctx context.Context, k APIKey) error {
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
	now := toMicros(s.now())
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		// ON CONFLICT DO NOTHING covers both unique columns (id and name).
		res, err := tx.ExecContext(ctx, `INSERT INTO api_keys (`+apiKeyColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0)
			ON CONFLICT DO NOTHING`,
			k.ID, name, k.SecretHash, routes, methods, paths, now, toMicros(k.ExpiresAt))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrExists
		}
		return insertAPIKeyChange(ctx, tx, k.ID)
	})
	if err != nil {
		return fmt.Errorf("store: create api key %q: %w", name, err)
	}
	return nil
}

// GetAPIKey implements APIKeys.
func (s *SQLite) GetAPIKey(ctx context.Context, id string) (APIKey, error) {
	if err := checkAPIKeyID(id); err != nil {
		// An invalid id cannot exist; callers treat it like any missing key.
		return APIKey{}, fmt.Errorf("store: get api key: %w: %w", ErrNotFound, err)
	}
	k, err := scanAPIKey(s.db.QueryRowContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return APIKey{}, fmt.Errorf("store: get api key %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return APIKey{}, fmt.Errorf("store: get api key %q: %w", id, err)
	}
	return k, nil
}

// ListAPIKeys implements APIKeys.
func (s *SQLite) ListAPIKeys(ctx context.Context) ([]APIKey, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys ORDER BY name`)
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
func (s *SQLite) RevokeAPIKey(ctx context.Context, idOrName string) (APIKey, error) {
	// Ids are lower case like names, so one lowercased value finds either.
	key := asciiLower(idOrName)
	if key == "" || len(key) > MaxNameLen {
		return APIKey{}, fmt.Errorf("store: revoke api key %q: %w", truncate(idOrName, MaxNameLen), ErrNotFound)
	}
	var out APIKey
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE id = $1 OR name = $1`, key)
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
		now := s.now()
		if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = $2 WHERE id = $1`, out.ID, toMicros(now)); err != nil {
			return err
		}
		out.RevokedAt = fromMicros(toMicros(now))
		return insertAPIKeyChange(ctx, tx, out.ID)
	})
	if err != nil {
		return APIKey{}, fmt.Errorf("store: revoke api key %q: %w", key, err)
	}
	return out, nil
}

// TouchAPIKeys implements APIKeys.
func (s *SQLite) TouchAPIKeys(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for id, t := range used {
			// Two-argument MAX is SQLite's scalar max (GREATEST in Postgres).
			if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET last_used_at = MAX(last_used_at, $2) WHERE id = $1`,
				id, toMicros(t)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: record last use of %d api key(s): %w", len(used), err)
	}
	return nil
}

// APIKeyChangesSince implements APIKeys.
func (s *SQLite) APIKeyChangesSince(ctx context.Context, seq int64) ([]APIKeyChange, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, key_id FROM api_key_changes WHERE seq > $1 ORDER BY seq LIMIT $2`,
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
func (s *SQLite) LatestAPIKeyChange(ctx context.Context) (int64, error) {
	var v sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(seq) FROM api_key_changes`).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: latest api key change: %w", err)
	}
	return v.Int64, nil
}

func insertAPIKeyChange(ctx context.Context, tx *sql.Tx, id string) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO api_key_changes (key_id) VALUES ($1)`, id); err != nil {
		return fmt.Errorf("insert api key change: %w", err)
	}
	return nil
}

func scanAPIKey(r rowScanner) (APIKey, error) {
	var (
		k                                 APIKey
		routes, methods, paths            string
		created, expires, revoked, usedAt int64
	)
	if err := r.Scan(&k.ID, &k.Name, &k.SecretHash, &routes, &methods, &paths, &created, &expires, &revoked, &usedAt); err != nil {
		return APIKey{}, err
	}
	for _, l := range []struct {
		col string
		raw string
		dst *[]string
	}{{"routes_json", routes, &k.Routes}, {"methods_json", methods, &k.Methods}, {"paths_json", paths, &k.PathPrefixes}} {
		if err := json.Unmarshal([]byte(l.raw), l.dst); err != nil {
			return APIKey{}, fmt.Errorf("api key %q: %s column is not a JSON array: %w", k.Name, l.col, err)
		}
		if len(*l.dst) == 0 {
			*l.dst = nil
		}
	}
	k.CreatedAt, k.ExpiresAt, k.RevokedAt, k.LastUsedAt = fromMicros(created), fromMicros(expires), fromMicros(revoked), fromMicros(usedAt)
	return k, nil
}

func encodeList(items []string) (string, error) {
	if items == nil {
		items = []string{}
	}
	b, err := json.Marshal(items)
	if err != nil {
		return "", fmt.Errorf("encode list: %w", err)
	}
	return string(b), nil
}
