package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sekisho/sekisho/internal/session"
)

// AddRevocation implements Revocations.
func (p *Postgres) AddRevocation(ctx context.Context, r session.Revocation) error {
	if err := checkRevocation(r); err != nil {
		return fmt.Errorf("store: add revocation: %w", err)
	}
	if err := p.inTx(ctx, func(tx pgx.Tx) error { return p.insertRevocation(ctx, tx, r) }); err != nil {
		return fmt.Errorf("store: add revocation: %w", err)
	}
	return nil
}

func (p *Postgres) insertRevocation(ctx context.Context, tx pgx.Tx, r session.Revocation) error {
	return p.appendLog(ctx, tx, "revocations", `INSERT INTO revocations (session_id, user_name, before_at, until_at)
		VALUES ($1, $2, $3, $4)`,
		r.SessionID, r.User, toMicros(r.Before), toMicros(r.Until))
}

// RevocationsSince implements Revocations and session.Source.
func (p *Postgres) RevocationsSince(ctx context.Context, seq int64) ([]session.Revocation, error) {
	rows, err := p.pool.Query(ctx, `SELECT seq, session_id, user_name, before_at, until_at
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
func (p *Postgres) PruneRevocations(ctx context.Context, now time.Time) (int64, error) {
	tag, err := p.pool.Exec(ctx, `DELETE FROM revocations WHERE until_at <> 0 AND until_at < $1`, toMicros(now))
	if err != nil {
		return 0, fmt.Errorf("store: prune revocations: %w", err)
	}
	return tag.RowsAffected(), nil
}
