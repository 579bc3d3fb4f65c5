package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sekisho/sekisho/internal/session"
)

const userColumns = `name, email, groups_json, password_hash, disabled, created_at, updated_at, password_changed_at`

// CreateUser implements Users.
func (s *SQLite) CreateUser(ctx context.Context, u User) error {
	name, err := CanonicalName(u.Name)
	if err != nil {
		return fmt.Errorf("store: create user: %w", err)
	}
	if err := checkEmail(u.Email); err != nil {
		return fmt.Errorf("store: create user %q: %w", name, err)
	}
	if err := checkHash(u.PasswordHash); err != nil {
		return fmt.Errorf("store: create user %q: %w", name, err)
	}
	groups, err := encodeGroups(u.Groups)
	if err != nil {
		return fmt.Errorf("store: create user %q: %w", name, err)
	}
	now := toMicros(s.now())
	var pwChanged int64
	if u.PasswordHash != "" {
		pwChanged = now
	}
	// ON CONFLICT DO NOTHING is understood by SQLite and Postgres alike and
	// tells a duplicate apart without parsing driver error codes.
	res, err := s.db.ExecContext(ctx, `INSERT INTO users (`+userColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $6, $7)
		ON CONFLICT (name) DO NOTHING`,
		name, u.Email, groups, u.PasswordHash, u.Disabled, now, pwChanged)
	if err != nil {
		return fmt.Errorf("store: create user %q: %w", name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: create user %q: %w", name, err)
	} else if n == 0 {
		return fmt.Errorf("store: create user %q: %w", name, ErrExists)
	}
	return nil
}

// GetUser implements Users.
func (s *SQLite) GetUser(ctx context.Context, name string) (User, error) {
	n, err := CanonicalName(name)
	if err != nil {
		// An invalid name cannot exist; callers treat it like any missing user.
		return User{}, fmt.Errorf("store: get user: %w: %w", ErrNotFound, err)
	}
	row := s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE name = $1`, n)
	u, err := scanUser(row)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("store: get user %q: %w", n, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("store: get user %q: %w", n, err)
	}
	return u, nil
}

// ListUsers implements Users.
func (s *SQLite) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: list users: %w", err)
	}
	defer rows.Close()
	var us []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list users: %w", err)
		}
		us = append(us, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list users: %w", err)
	}
	return us, nil
}

// CountUsers implements Users.
func (s *SQLite) CountUsers(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count users: %w", err)
	}
	return n, nil
}

// SetPassword implements Users.
func (s *SQLite) SetPassword(ctx context.Context, name, hash string) error {
	if err := checkHash(hash); err != nil {
		return fmt.Errorf("store: set password of %q: %w", name, err)
	}
	return s.updateUser(ctx, "set password", name, true,
		`UPDATE users SET password_hash = $2, password_changed_at = $3, updated_at = $3 WHERE name = $1`,
		hash)
}

// SetDisabled implements Users.
func (s *SQLite) SetDisabled(ctx context.Context, name string, disabled bool) error {
	return s.updateUser(ctx, "set disabled", name, disabled,
		`UPDATE users SET disabled = $2, updated_at = $3 WHERE name = $1`,
		disabled)
}

// SetGroups implements Users.
func (s *SQLite) SetGroups(ctx context.Context, name string, groups []string) error {
	g, err := encodeGroups(groups)
	if err != nil {
		return fmt.Errorf("store: set groups of %q: %w", name, err)
	}
	return s.updateUser(ctx, "set groups", name, false,
		`UPDATE users SET groups_json = $2, updated_at = $3 WHERE name = $1`,
		g)
}

// SetEmail implements Users.
func (s *SQLite) SetEmail(ctx context.Context, name, email string) error {
	if err := checkEmail(email); err != nil {
		return fmt.Errorf("store: set email of %q: %w", name, err)
	}
	return s.updateUser(ctx, "set email", name, false,
		`UPDATE users SET email = $2, updated_at = $3 WHERE name = $1`,
		email)
}

// updateUser runs query in a transaction with $1 the canonical name, $2 arg
// and $3 the store's clock. It fails with ErrNotFound if no row matched, and
// with revoke adds a user-before revocation so the user's existing sessions
// end.
func (s *SQLite) updateUser(ctx context.Context, what, name string, revoke bool, query string, arg any) error {
	n, err := CanonicalName(name)
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	now := s.now()
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, n, arg, toMicros(now))
		if err != nil {
			return err
		}
		if c, err := res.RowsAffected(); err != nil {
			return err
		} else if c == 0 {
			return ErrNotFound
		}
		if !revoke {
			return nil
		}
		return insertRevocation(ctx, tx, session.Revocation{
			User:   n,
			Before: now,
			Until:  now.Add(s.lifetime),
		})
	})
	if err != nil {
		return fmt.Errorf("store: %s of user %q: %w", what, n, err)
	}
	return nil
}

type rowScanner interface{ Scan(dest ...any) error }

func scanUser(r rowScanner) (User, error) {
	var (
		u                       User
		groups                  string
		created, updated, pwchg int64
	)
	if err := r.Scan(&u.Name, &u.Email, &groups, &u.PasswordHash, &u.Disabled, &created, &updated, &pwchg); err != nil {
		return User{}, err
	}
	if err := json.Unmarshal([]byte(groups), &u.Groups); err != nil {
		return User{}, fmt.Errorf("user %q: groups column is not a JSON array: %w", u.Name, err)
	}
	if len(u.Groups) == 0 {
		u.Groups = nil
	}
	u.CreatedAt, u.UpdatedAt, u.PasswordChangedAt = fromMicros(created), fromMicros(updated), fromMicros(pwchg)
	return u, nil
}

func encodeGroups(groups []string) (string, error) {
	if err := checkGroups(groups); err != nil {
		return "", err
	}
	if groups == nil {
		groups = []string{}
	}
	b, err := json.Marshal(groups)
	if err != nil {
		return "", fmt.Errorf("encode groups: %w", err)
	}
	return string(b), nil
}
