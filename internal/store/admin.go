package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Migrations lists the schema migrations b has and those this binary
// would apply (their file names), for `sekisho store migrate`. It fails on
// a database newer than the binary.
func Migrations(ctx context.Context, b Backend) (have int, pending []string, err error) {
	dir := "migrations/sqlite"
	if _, ok := b.(*Postgres); ok {
		dir = "migrations/postgres"
	}
	ms, err := loadMigrations(migrationFiles, dir)
	if err != nil {
		return 0, nil, err
	}
	if have, err = b.SchemaVersion(ctx); err != nil {
		return 0, nil, err
	}
	if have > len(ms) {
		return have, nil, fmt.Errorf("database schema version %d is newer than this sekisho binary supports (%d); upgrade sekisho or restore a matching backup", have, len(ms))
	}
	for _, m := range ms[have:] {
		pending = append(pending, m.name)
	}
	return have, pending, nil
}

// Migrate applies b's pending migrations (a store opened with
// SkipMigrations); as at open, replicas and commands running it together
// apply each once.
func Migrate(ctx context.Context, b Backend, now time.Time) error {
	switch s := b.(type) {
	case *Postgres:
		return migratePostgres(ctx, s.pool, now)
	case *SQLite:
		return migrateSQLite(ctx, s.db, now)
	}
	return fmt.Errorf("store: cannot migrate a %T", b)
}

// Copied counts what CopyToPostgres copied.
type Copied struct {
	Users, APIKeys, Revocations, OIDCTokens int
}

// ErrNotEmpty means the destination of a copy already holds accounts or
// keys.
var ErrNotEmpty = errors.New("the destination store is not empty")

// CopyToPostgres copies everything a single-box install keeps in SQLite
// into Postgres, to move it to a fleet: accounts (password hashes,
// groups, disabled, every time), API keys (hashes, scopes, expiry,
// revocation, last use), the revocations still in force and the OIDC
// sessions' sealed provider tokens. Account unlocks are not copied: they
// concern sign-in throttles in memory, which start afresh. The copy runs
// in one Postgres transaction: all of it lands, or nothing does. It
// refuses a destination that already holds an account or a key. Sessions
// keep working after the move when the replicas use the same session keys
// (session.keys, or the data directory's session.key).
func CopyToPostgres(ctx context.Context, from *SQLite, to *Postgres, now time.Time) (Copied, error) {
	var c Copied
	err := to.inTx(ctx, func(tx pgx.Tx) error {
		// Replicas and commands cannot add accounts or keys while we check and copy.
		if _, err := tx.Exec(ctx, `LOCK TABLE users, api_keys IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		var users, keys int
		if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM api_keys)`).Scan(&users, &keys); err != nil {
			return err
		}
		if users > 0 || keys > 0 {
			return fmt.Errorf("%w: it holds %d accounts and %d API keys; copy into a new, empty database", ErrNotEmpty, users, keys)
		}
		var err error
		if c.Users, err = copyRows(ctx, from.db, tx, "users",
			`SELECT name, email, groups_json, password_hash, disabled, created_at, updated_at, password_changed_at FROM users`,
			`INSERT INTO users (name, email, groups_json, password_hash, disabled, created_at, updated_at, password_changed_at) VALUES ($1, $2, $3, $4, $5 <> 0, $6, $7, $8)`,
			8); err != nil {
			return err
		}
		if c.APIKeys, err = copyRows(ctx, from.db, tx, "api_keys",
			`SELECT `+apiKeyColumns+` FROM api_keys`,
			`INSERT INTO api_keys (`+apiKeyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			10); err != nil {
			return err
		}
		// Every key gets a change row, as if just created, so caches that
		// follow the log from an earlier point see them.
		if _, err := tx.Exec(ctx, `LOCK TABLE api_key_changes IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO api_key_changes (key_id) SELECT id FROM api_keys ORDER BY id`); err != nil {
			return fmt.Errorf("api_key_changes: %w", err)
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE revocations IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		// In seq order, so the log keeps its order; expired ones are left.
		if c.Revocations, err = copyRows(ctx, from.db, tx, "revocations",
			fmt.Sprintf(`SELECT session_id, user_name, before_at, until_at FROM revocations WHERE until_at = 0 OR until_at >= %d ORDER BY seq`, toMicros(now)),
			`INSERT INTO revocations (session_id, user_name, before_at, until_at) VALUES ($1, $2, $3, $4)`,
			4); err != nil {
			return err
		}
		c.OIDCTokens, err = copyRows(ctx, from.db, tx, "oidc_tokens",
			fmt.Sprintf(`SELECT session_id, provider, subject, sealed, expires_at, updated_at FROM oidc_tokens WHERE expires_at >= %d`, toMicros(now)),
			`INSERT INTO oidc_tokens (session_id, provider, subject, sealed, expires_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			6)
		return err
	})
	if err != nil {
		return Copied{}, fmt.Errorf("store copy to %s (nothing was copied): %w", to.Location(), err)
	}
	return c, nil
}

// copyRows runs query on src and insert, with each row's n columns, in tx.
func copyRows(ctx context.Context, src *sql.DB, tx pgx.Tx, table, query, insert string, n int) (int, error) {
	rows, err := src.QueryContext(ctx, query)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", table, err)
	}
	defer rows.Close()
	count := 0
	vals := make([]any, n)
	ptrs := make([]any, n)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return count, fmt.Errorf("read %s: %w", table, err)
		}
		if _, err := tx.Exec(ctx, insert, vals...); err != nil {
			return count, fmt.Errorf("write %s row %d: %w", table, count+1, err)
		}
		count++
	}
	if err := rows.Err(); err != nil {
		return count, fmt.Errorf("read %s: %w", table, err)
	}
	return count, nil
}
