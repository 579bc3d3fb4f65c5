package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the PostgreSQL store, for several replicas sharing one
// database. It is safe for concurrent use by many goroutines, replicas and
// CLI processes.
//
// The logs replicas poll (revocations, API key changes, unlocks) keep the
// promise of [Revocations]: a row with seq s is visible only after every
// row with a smaller seq. Postgres hands out identity numbers when a row is
// inserted but makes rows visible when their transactions commit, in any
// order, so a poller reading "seq > last" could step past a row that
// commits later with a lower seq. Every writer of a log therefore takes an
// EXCLUSIVE lock on the log's table (readers are not blocked) just before
// inserting and holds it to commit: numbers are handed out and committed
// in the same order.
type Postgres struct {
	pool     *pgxpool.Pool
	location string // URL without password, for messages
	now      func() time.Time
	lifetime time.Duration

	// testHookLogged, when set by a test, runs after a log row is
	// inserted and before its transaction commits.
	testHookLogged func(table string)
}

var (
	_ Backend = (*Postgres)(nil)
	_ Backend = (*SQLite)(nil)
)

// OpenPostgres connects to the database at url and applies pending
// migrations; ctx bounds the connection and the migration. url is a libpq
// URL or key=value string (postgres://user:pass@host:5432/db?sslmode=verify-full);
// pool settings such as pool_max_conns may be given in it. Of opts, Now and
// MaxSessionLifetime apply; BusyTimeout is SQLite's and is ignored.
//
// Replicas may start at the same moment: migrations run in one transaction
// under an advisory lock, so each is applied once and the others wait for
// it. It refuses a database whose schema is newer than this binary.
func OpenPostgres(ctx context.Context, url string, opts Options) (*Postgres, error) {
	if url == "" {
		return nil, errors.New("store: postgres url is empty")
	}
	cfg, err := pgConfig(url)
	if err != nil {
		return nil, err
	}
	loc := pgLocation(cfg.ConnConfig)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: open postgres %s: %w", loc, err)
	}
	p := &Postgres{pool: pool, location: loc, now: opts.Now, lifetime: opts.MaxSessionLifetime}
	if p.now == nil {
		p.now = time.Now
	}
	if p.lifetime <= 0 {
		p.lifetime = DefaultMaxSessionLifetime
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: open postgres %s: %w", loc, err)
	}
	if opts.SkipMigrations {
		return p, nil
	}
	if err := migratePostgres(ctx, pool, p.now()); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: postgres %s: %w", loc, err)
	}
	return p, nil
}

// pgConfig parses a connection URL or string. libpq's default sslmode,
// "prefer", tries TLS without checking the certificate and falls back to
// plain text: anyone on the path reads the password hashes and can forge
// revocations. A database on another machine therefore gets verified TLS
// (verify-full) unless the URL names an sslmode itself.
func pgConfig(url string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err == nil && !strings.Contains(url, "sslmode") && !localHost(cfg.ConnConfig.Host) {
		cfg, err = pgxpool.ParseConfig(withSSLMode(url, "verify-full"))
	}
	if err != nil {
		// pgx's parse errors show the URL with its password masked.
		return nil, fmt.Errorf("store: postgres url: %w", err)
	}
	return cfg, nil
}

// localHost reports whether host is this machine: a Unix socket
// directory or a loopback address or name.
func localHost(host string) bool {
	if host == "" || strings.HasPrefix(host, "/") || host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// withSSLMode adds sslmode to a URL or a key=value connection string.
func withSSLMode(conn, mode string) string {
	if strings.HasPrefix(conn, "postgres://") || strings.HasPrefix(conn, "postgresql://") {
		if strings.Contains(conn, "?") {
			return conn + "&sslmode=" + mode
		}
		return conn + "?sslmode=" + mode
	}
	return conn + " sslmode=" + mode
}

// pgLocation names the database for messages: postgres://user@host:port/db,
// never the password.
func pgLocation(c *pgx.ConnConfig) string {
	u := url.URL{Scheme: "postgres", Host: net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))), Path: "/" + c.Database}
	if c.User != "" {
		u.User = url.User(c.User)
	}
	return u.String()
}

// Close closes every connection. Calls after Close fail.
func (p *Postgres) Close() error {
	p.pool.Close()
	return nil
}

// Location returns the database's URL without its password, for messages
// that must say which store a command opened.
func (p *Postgres) Location() string { return p.location }

// SchemaVersion returns the highest migration applied to the database.
func (p *Postgres) SchemaVersion(ctx context.Context) (int, error) {
	var exists bool
	if err := p.pool.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, fmt.Errorf("store: read schema version: %w", err)
	}
	if !exists {
		return 0, nil // a new database
	}
	var v int
	if err := p.pool.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: read schema version: %w", err)
	}
	return v, nil
}

// inTx runs fn in a transaction and commits it, or rolls back on error.
func (p *Postgres) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		// A cancelled ctx must not stop the rollback.
		tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// appendLog inserts one row into a polled log table (revocations,
// api_key_changes, account_unlocks) after taking the table's EXCLUSIVE
// lock, held until the transaction ends, so seq numbers commit in order
// (see [Postgres]). It must be the transaction's last lock: a transaction
// that holds it only inserts into the log and commits, so no two writers
// wait on each other in a cycle.
func (p *Postgres) appendLog(ctx context.Context, tx pgx.Tx, table, insert string, args ...any) error {
	if _, err := tx.Exec(ctx, `LOCK TABLE `+table+` IN EXCLUSIVE MODE`); err != nil {
		return fmt.Errorf("lock %s: %w", table, err)
	}
	if _, err := tx.Exec(ctx, insert, args...); err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	if p.testHookLogged != nil {
		p.testHookLogged(table)
	}
	return nil
}

// migrationLockKey is the pg_advisory_xact_lock key that serialises
// migrations of one database: "sekisho" in ASCII.
const migrationLockKey int64 = 0x73656b6973686f

// migratePostgres applies pending migrations in one transaction that first
// takes an advisory lock, so replicas starting together apply each
// migration once: the others wait for the lock, then find nothing to do.
// Postgres DDL is transactional, so a failed migration leaves no trace. It
// refuses a database newer than the binary.
func migratePostgres(ctx context.Context, pool *pgxpool.Pool, now time.Time) error {
	ms, err := loadMigrations(migrationFiles, "migrations/postgres")
	if err != nil {
		return err
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: begin transaction: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockKey); err != nil {
		return fmt.Errorf("migrate: take the migration lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	name       TEXT    NOT NULL,
	applied_at BIGINT  NOT NULL
)`); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	var have int
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("migrate: read schema version: %w", err)
	}
	if have > len(ms) {
		return fmt.Errorf("database schema version %d is newer than this sekisho binary supports (%d); upgrade sekisho or restore a matching backup", have, len(ms))
	}
	for _, m := range ms[have:] {
		// No arguments: pgx sends the file with the simple protocol, which
		// runs several statements.
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fmt.Errorf("migrate: apply %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
			m.version, m.name, toMicros(now)); err != nil {
			return fmt.Errorf("migrate: record %s: %w", m.name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}
