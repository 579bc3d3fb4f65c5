package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// UnlockUser implements Unlocks.
func (p *Postgres) UnlockUser(ctx context.Context, name string) error {
	n, err := CanonicalName(name)
	if err != nil {
		return fmt.Errorf("store: unlock user: %w: %w", ErrNotFound, err)
	}
	now := p.now()
	err = p.inTx(ctx, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE name = $1`, n).Scan(&one); errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		return p.appendLog(ctx, tx, "account_unlocks", `WITH pruned AS (DELETE FROM account_unlocks WHERE at < $3)
			INSERT INTO account_unlocks (user_name, at) VALUES ($1, $2)`,
			n, toMicros(now), toMicros(now.Add(-UnlockKeep)))
	})
	if err != nil {
		return fmt.Errorf("store: unlock user %q: %w", n, err)
	}
	return nil
}

// UnlocksSince implements Unlocks.
func (p *Postgres) UnlocksSince(ctx context.Context, seq int64) ([]Unlock, error) {
	rows, err := p.pool.Query(ctx, `SELECT seq, user_name, at FROM account_unlocks
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
func (p *Postgres) LatestUnlock(ctx context.Context) (int64, error) {
	var v int64
	if err := p.pool.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM account_unlocks`).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: latest unlock: %w", err)
	}
	return v, nil
}
