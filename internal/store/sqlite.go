package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver (pure Go, no cgo)
)

// Options tunes OpenSQLiteOptions. The zero value is the default.
type Options struct {
	// Now is the clock used for created/updated times and revocations.
	// nil means time.Now.
	Now func() time.Time
	// MaxSessionLifetime is how long the user-before revocations written by
	// SetPassword and SetDisabled are kept (their Until is now plus this).
	// It must be at least the absolute session lifetime. Zero means
	// DefaultMaxSessionLifetime (24h).
	MaxSessionLifetime time.Duration
	// BusyTimeout is how long a statement waits for another connection or
	// process holding the write lock before failing with "database is
	// locked". Zero means 10 seconds.
	BusyTimeout time.Duration
	// SkipMigrations opens the database without applying pending
	// migrations (`sekisho store migrate --dry-run`); see Migrate.
	SkipMigrations bool
}

// SQLite is the embedded SQLite store. It is safe for concurrent use, and
// several processes (the server and the CLI) may open the same file: the
// database runs in WAL mode so readers never block the writer, and writers
// wait up to Options.BusyTimeout for each other.
type SQLite struct {
	db       *sql.DB
	path     string // absolute
	now      func() time.Time
	lifetime time.Duration
}

// OpenSQLite opens (creating if needed) the database file at path with
// default Options and applies pending migrations. See OpenSQLiteOptions.
func OpenSQLite(path string) (*SQLite, error) {
	return OpenSQLiteOptions(path, Options{})
}

// OpenSQLiteOptions opens (creating if needed) the database file at path and
// applies pending migrations in one transaction. A missing parent directory
// is created with mode 0700 and a missing file with mode 0600; an existing
// file keeps its mode. Connections use WAL journaling, a busy timeout and
// foreign keys. It refuses a database whose schema is newer than this binary.
func OpenSQLiteOptions(path string, o Options) (*SQLite, error) {
	if path == "" {
		return nil, errors.New("store: sqlite path is empty")
	}
	if strings.ContainsAny(path, "?#") {
		// The driver splits the DSN at '?'; refuse rather than open another file.
		return nil, fmt.Errorf("store: sqlite path %q must not contain '?' or '#'", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite path %q: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("store: create directory for %q: %w", abs, err)
	}
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open %q: %w", abs, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("store: open %q: %w", abs, err)
	}

	busy := o.BusyTimeout
	if busy <= 0 {
		busy = 10 * time.Second
	}
	// Every pooled connection gets these pragmas. _txlock=immediate takes
	// the write lock at BEGIN, so two processes' transactions queue on the
	// busy timeout instead of failing with SQLITE_BUSY on lock upgrade.
	dsn := abs + fmt.Sprintf("?_pragma=busy_timeout(%d)", busy.Milliseconds()) +
		"&_pragma=foreign_keys(1)" +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(NORMAL)" +
		"&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite %q: %w", abs, err)
	}
	s := &SQLite{db: db, path: abs, now: o.Now, lifetime: o.MaxSessionLifetime}
	if s.now == nil {
		s.now = time.Now
	}
	if s.lifetime <= 0 {
		s.lifetime = DefaultMaxSessionLifetime
	}
	ctx, cancel := context.WithTimeout(context.Background(), busy+30*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open sqlite %q: %w", abs, err)
	}
	if o.SkipMigrations {
		return s, nil
	}
	if err := migrateSQLite(ctx, db, s.now()); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: sqlite %q: %w", abs, err)
	}
	return s, nil
}

// Close closes the database.
func (s *SQLite) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close sqlite: %w", err)
	}
	return nil
}

// Path returns the absolute path of the database file, for messages that
// must say which store a command opened.
func (s *SQLite) Path() string { return s.path }

// Location implements Backend: the absolute path of the database file.
func (s *SQLite) Location() string { return s.path }

// SchemaVersion returns the highest migration applied to the database.
func (s *SQLite) SchemaVersion(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: read schema version: %w", err)
	}
	if n == 0 {
		return 0, nil // a new database
	}
	var v sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: read schema version: %w", err)
	}
	return int(v.Int64), nil
}

// Times are stored as INTEGER Unix microseconds (the precision Postgres
// keeps); 0 stands for the zero time.
func toMicros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// inTx runs fn in a transaction and commits it, or rolls back on error.
func (s *SQLite) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
