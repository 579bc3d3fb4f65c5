// Package store keeps sekisho's state — local users and the session
// revocation log — behind one interface, [Store].
//
// [SQLite] is the embedded default (pure Go, no cgo) and suits one replica
// plus the CLI writing to the same file from another process. [Postgres] is
// for several replicas sharing one database. Both satisfy [Backend]; callers
// depend on it (or the narrower [Store], [Users], [Revocations]...) and never
// on the backend. Each backend keeps its SQL and its numbered migrations in
// its own files (sqlite*.go, migrations/sqlite/; postgres*.go,
// migrations/postgres/), and one conformance suite runs against both.
package store

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sekisho/sekisho/internal/session"
)

// ErrNotFound is returned (wrapped) when the named row does not exist.
var ErrNotFound = errors.New("not found")

// ErrExists is returned (wrapped) when creating a row whose key is taken.
var ErrExists = errors.New("already exists")

// Store is all state sekisho keeps. Implementations are safe for concurrent
// use by many goroutines and by other processes sharing the same database.
type Store interface {
	Users
	Revocations
	APIKeys
	Unlocks
	// Close releases the database. Calls after Close fail.
	Close() error
}

// Backend is everything the server and the CLI use of a store: the state in
// [Store] and [OIDCTokens], plus what start-up and messages need. *SQLite
// and *Postgres satisfy it.
type Backend interface {
	Store
	OIDCTokens
	// SchemaVersion returns the highest migration applied to the database.
	SchemaVersion(ctx context.Context) (int, error)
	// Location names the database for messages: the SQLite file's absolute
	// path, or the Postgres URL without its password.
	Location() string
}

// Users holds local accounts. Names are canonicalised with [CanonicalName]
// by every method, so "Alice" and "alice" are the same account.
type Users interface {
	// CreateUser adds u. CreatedAt and UpdatedAt are set to the store's
	// clock; PasswordChangedAt too when PasswordHash is not empty. It fails
	// with ErrExists if the name is taken.
	CreateUser(ctx context.Context, u User) error
	// GetUser returns the named user or an error wrapping ErrNotFound.
	GetUser(ctx context.Context, name string) (User, error)
	// ListUsers returns every user ordered by name.
	ListUsers(ctx context.Context) ([]User, error)
	// CountUsers returns how many users exist (0 on a fresh database, which
	// is when the first admin is created).
	CountUsers(ctx context.Context) (int, error)
	// SetPassword replaces the user's password hash and, in the same
	// transaction, revokes every session the user had (a user-before
	// revocation at the store's clock).
	SetPassword(ctx context.Context, name, hash string) error
	// SetDisabled enables or disables the user. Disabling also revokes
	// every session the user had, in the same transaction.
	SetDisabled(ctx context.Context, name string, disabled bool) error
	// SetGroups replaces the user's groups; nil means none.
	SetGroups(ctx context.Context, name string, groups []string) error
	// SetEmail replaces the user's email; "" clears it.
	SetEmail(ctx context.Context, name, email string) error
}

// Revocations is the shared log of revoked sessions that every replica polls
// (see session.Revocations.Poll). It satisfies session.Source.
//
// Implementations must make a row with sequence number s visible only after
// every row with a smaller sequence number is visible, so a poller that has
// seen s never misses a lower one. SQLite gets this for free (one writer at a
// time); a Postgres backend must serialise inserts (e.g. a table lock) because
// its sequences may commit out of order.
type Revocations interface {
	// AddRevocation appends r to the log; r.Seq is ignored and assigned by
	// the store. Exactly one of r.SessionID and r.User must be set.
	AddRevocation(ctx context.Context, r session.Revocation) error
	// RevocationsSince returns up to [RevocationBatch] rows with Seq > seq,
	// in ascending Seq order. Callers loop until a short batch to catch up.
	RevocationsSince(ctx context.Context, seq int64) ([]session.Revocation, error)
	// PruneRevocations deletes rows whose Until is before now (rows with a
	// zero Until are kept) and returns how many it deleted. Sequence numbers
	// are never reused after pruning.
	PruneRevocations(ctx context.Context, now time.Time) (int64, error)
}

// Unlocks is the log of account unlocks (`sekisho user unlock`) that every
// replica's sign-in throttle polls (local.Throttle.PollUnlocks) to clear an
// account's lockout, since the throttle itself lives in each replica's
// memory. The same ordering rule as for Revocations holds: a row is visible
// only after every row with a smaller Seq.
type Unlocks interface {
	// UnlockUser appends an unlock of the named user at the store's clock.
	// It fails with an error wrapping ErrNotFound if there is no such
	// user. Rows older than UnlockKeep are pruned in the same transaction.
	UnlockUser(ctx context.Context, name string) error
	// UnlocksSince returns up to UnlockBatch rows with Seq > seq, in
	// ascending Seq order. Callers loop until a short batch.
	UnlocksSince(ctx context.Context, seq int64) ([]Unlock, error)
	// LatestUnlock returns the highest Seq written so far (0 if none): a
	// poller starts after it, so unlocks from before it started are not
	// applied to lockouts that began later.
	LatestUnlock(ctx context.Context) (int64, error)
}

// Unlock is one row of the unlock log.
type Unlock struct {
	Seq  int64
	User string    // canonical account name
	At   time.Time // the writer's clock, for logs only
}

// UnlockBatch bounds how many rows one UnlocksSince call returns.
const UnlockBatch = 1000

// UnlockKeep is how long an unlock row is kept: pollers read new rows
// within seconds, so a day leaves room for a replica that was stalled.
const UnlockKeep = 24 * time.Hour

// RevocationBatch bounds how many rows one RevocationsSince call returns.
const RevocationBatch = 1000

// DefaultMaxSessionLifetime is how long a user-before revocation written by
// SetPassword or SetDisabled is kept when Options.MaxSessionLifetime is zero.
// It must be at least the absolute session lifetime, or a pruned revocation
// would let an old session live again.
const DefaultMaxSessionLifetime = 24 * time.Hour

var (
	_ Store          = (*SQLite)(nil)
	_ session.Source = (*SQLite)(nil)
)

// User is a local account.
type User struct {
	// Name is the canonical account name: 1-64 characters of [a-z0-9._@-].
	Name string
	// Email is the user's address, or "" if none.
	Email string
	// Groups the user belongs to; nil or empty means none.
	Groups []string
	// PasswordHash is the PHC-format hash (see internal/authn/local); ""
	// means the user cannot sign in with a password.
	PasswordHash string
	// Disabled users cannot sign in and their sessions are revoked.
	Disabled bool
	// CreatedAt, UpdatedAt are set by the store.
	CreatedAt time.Time
	UpdatedAt time.Time
	// PasswordChangedAt is when the hash was last set; zero if never.
	PasswordChangedAt time.Time
}

// MaxNameLen is the longest account name accepted.
const MaxNameLen = 64

// CanonicalName lowercases name and checks it is 1-64 characters of
// [a-z0-9._@-]. The error names the bad name (quoted, truncated). Only ASCII
// letters are folded: Unicode case folding maps some non-ASCII runes onto
// ASCII ones (the Kelvin sign onto "k"), which would let a look-alike name
// reach an existing account; every non-ASCII byte is rejected instead.
func CanonicalName(name string) (string, error) {
	n := asciiLower(name)
	if n == "" {
		return "", errors.New("user name is empty")
	}
	if len(n) > MaxNameLen {
		return "", fmt.Errorf("user name %q is longer than %d characters", truncate(name, MaxNameLen), MaxNameLen)
	}
	for _, c := range n {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '_', c == '@', c == '-':
		default:
			return "", fmt.Errorf("user name %q: character %q not allowed (use a-z 0-9 . _ @ -)", truncate(name, MaxNameLen), c)
		}
	}
	return n, nil
}

// MaxGroups and MaxGroupLen bound a user's groups.
const (
	MaxGroups   = 256
	MaxGroupLen = 256
)

func checkGroups(groups []string) error {
	if len(groups) > MaxGroups {
		return fmt.Errorf("%d groups, more than the %d allowed", len(groups), MaxGroups)
	}
	for _, g := range groups {
		if g == "" || len(g) > MaxGroupLen || strings.TrimSpace(g) != g {
			return fmt.Errorf("group %q: must be 1-%d characters without surrounding spaces", truncate(g, MaxGroupLen), MaxGroupLen)
		}
	}
	return nil
}

func checkEmail(email string) error {
	if email == "" {
		return nil
	}
	if err := checkText("email", email); err != nil {
		return err
	}
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || a.Name != "" || len(email) > 254 {
		return fmt.Errorf("email %q is not a bare address like user@example.com", truncate(email, 254))
	}
	return nil
}

// checkText refuses a string that one of the backends could not store as
// text: Postgres rejects NUL bytes and invalid UTF-8, SQLite takes both, so
// both refuse them here and behave alike.
func checkText(what, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %q is not valid UTF-8", what, truncate(s, 64))
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%s %q contains a NUL byte", what, truncate(s, 64))
	}
	return nil
}

// checkHash is checkText for a password hash, whose value stays out of
// the message.
func checkHash(h string) error {
	if !utf8.ValidString(h) || strings.IndexByte(h, 0) >= 0 {
		return errors.New("password hash is not valid UTF-8 text without NUL bytes")
	}
	return nil
}

func checkRevocation(r session.Revocation) error {
	if err := checkText("revocation session id", r.SessionID); err != nil {
		return err
	}
	if err := checkText("revocation user", r.User); err != nil {
		return err
	}
	switch {
	case r.SessionID == "" && r.User == "":
		return errors.New("revocation names neither a session nor a user")
	case r.SessionID != "" && r.User != "":
		return errors.New("revocation names both a session and a user")
	case len(r.SessionID) > 256:
		return errors.New("revocation session id longer than 256 bytes")
	}
	return nil
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
