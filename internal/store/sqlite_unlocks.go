package store

import (
	"context"
	"database/sql"
	"fmt"
)

// UnlockUser implements Unlocks.
func (s *SQLite) UnlockUser(ctx context.Context, name string) error {
	n, err := CanonicalName(name)
	if err != nil {
		return fmt.Errorf("store: unlock user: %w: %w", ErrNotFound, err)
	}
	now := s.now()
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE name = $1`, n).Scan(&one); err == sql.ErrNoRows {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM account_unlocks WHERE at < $1`, toMicros(now.Add(-UnlockKeep))); err != nil {
			return fmt.Errorf("prune unlocks: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO account_unlocks (user_name, at) VALUES ($1, $2)`, n, toMicros(now)); err != nil {
			return fmt.Errorf("insert unlock: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: unlock user %q: %w", n, err)
	}
	return nil
}

// UnlocksSince implements Unlocks.
func (s *SQLite) UnlocksSince(ctx context.Context, seq int64) ([]Unlock, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, user_name, at FROM account_unlocks
		WHERE seq > $1 ORDER BY seq LIMIT $2`, seq, UnlockBatch)
	if err != nil {
		return nil, fmt.Errorf("store: unlocks since seq %d: %w", seq, err)
	}
	defer rows.Close()
	var us []Unlock
	for rows.Next() {
		var (
			u  Unlock
			at int64
		)
		if err := rows.Scan(&u.Seq, &u.User, &at); err != nil {
			return nil, fmt.Errorf("store: unlocks since seq %d: %w", seq, err)
		}
		u.At = fromMicros(at)
		us = append(us, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: unlocks since seq %d: %w", seq, err)
	}
	return us, nil
}

// LatestUnlock implements Unlocks.
func (s *SQLite) LatestUnlock(ctx context.Context) (int64, error) {
	var v sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(seq) FROM account_unlocks`).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: latest unlock: %w", err)
	}
	return v.Int64, nil
}
