package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/sekisho/sekisho/internal/session"
)

// AddRevocation implements Revocations.
func (s *SQLite) AddRevocation(ctx context.Context, r session.Revocation) error {
	if err := checkRevocation(r); err != nil {
		return fmt.Errorf("store: add revocation: %w", err)
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error { return insertRevocation(ctx, tx, r) })
	if err != nil {
		return fmt.Errorf("store: add revocation: %w", err)
	}
	return nil
}

func insertRevocation(ctx context.Context, tx *sql.Tx, r session.Revocation) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO revocations (session_id, user_name, before_at, until_at)
		VALUES ($1, $2, $3, $4)`,
		r.SessionID, r.User, toMicros(r.Before), toMicros(r.Until))
	if err != nil {
		return fmt.Errorf("insert revocation: %w", err)
	}
	return nil
}

// RevocationsSince implements Revocations and session.Source.
func (s *SQLite) RevocationsSince(ctx context.Context, seq int64) ([]session.Revocation, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, session_id, user_name, before_at, until_at
		FROM revocations WHERE seq > $1 ORDER BY seq LIMIT $2`, seq, RevocationBatch)
	if err != nil {
		return nil, fmt.Errorf("store: revocations since seq %d: %w", seq, err)
	}
	defer rows.Close()
	var rs []session.Revocation
	for rows.Next() {
		var (
			r             session.Revocation
			before, until int64
		)
		if err := rows.Scan(&r.Seq, &r.SessionID, &r.User, &before, &until); err != nil {
			return nil, fmt.Errorf("store: revocations since seq %d: %w", seq, err)
		}
		r.Before, r.Until = fromMicros(before), fromMicros(until)
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: revocations since seq %d: %w", seq, err)
	}
	return rs, nil
}

// PruneRevocations implements Revocations.
func (s *SQLite) PruneRevocations(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM revocations WHERE until_at <> 0 AND until_at < $1`, toMicros(now))
	if err != nil {
		return 0, fmt.Errorf("store: prune revocations: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: prune revocations: %w", err)
	}
	return n, nil
}
