package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/sekisho/sekisho/internal/session"
)

// CreateUser implements Users.
func (p *Postgres) CreateUser(ctx context.Context, u User) error {
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
	now := toMicros(p.now())
	var pwChanged int64
	if u.PasswordHash != "" {
		pwChanged = now
	}
	tag, err := p.pool.Exec(ctx, `INSERT INTO users (`+userColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $6, $7)
		ON CONFLICT (name) DO NOTHING`,
		name, u.Email, groups, u.PasswordHash, u.Disabled, now, pwChanged)
	if err != nil {
		return fmt.Errorf("store: create user %q: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: create user %q: %w", name, ErrExists)
	}
	return nil
}

// GetUser implements Users.
func (p *Postgres) GetUser(ctx context.Context, name string) (User, error) {
	n, err := CanonicalName(name)
	if err != nil {
		// An invalid name cannot exist; callers treat it like any missing user.
		return User{}, fmt.Errorf("store: get user: %w: %w", ErrNotFound, err)
	}
	u, err := scanUser(p.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE name = $1`, n))
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, fmt.Errorf("store: get user %q: %w", n, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("store: get user %q: %w", n, err)
	}
	return u, nil
}

// ListUsers implements Users.
func (p *Postgres) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+userColumns+` FROM users ORDER BY name`)
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
func (p *Postgres) CountUsers(ctx context.Context) (int, error) {
	var n int
	if err := p.pool.QueryRow(ctx, `SELECT COUNT(*) FROM users`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count users: %w", err)
	}
	return n, nil
}

// SetPassword implements Users.
func (p *Postgres) SetPassword(ctx context.Context, name, hash string) error {
	if err := checkHash(hash); err != nil {
		return fmt.Errorf("store: set password of %q: %w", name, err)
	}
	return p.updateUser(ctx, "set password", name, true,
		`UPDATE users SET password_hash = $2, password_changed_at = $3, updated_at = $3 WHERE name = $1`,
		hash)
}

// SetDisabled implements Users.
func (p *Postgres) SetDisabled(ctx context.Context, name string, disabled bool) error {
	return p.updateUser(ctx, "set disabled", name, disabled,
		`UPDATE users SET disabled = $2, updated_at = $3 WHERE name = $1`,
		disabled)
}

// SetGroups implements Users.
func (p *Postgres) SetGroups(ctx context.Context, name string, groups []string) error {
	g, err := encodeGroups(groups)
	if err != nil {
		return fmt.Errorf("store: set groups of %q: %w", name, err)
	}
	return p.updateUser(ctx, "set groups", name, false,
		`UPDATE users SET groups_json = $2, updated_at = $3 WHERE name = $1`,
		g)
}

// SetEmail implements Users.
func (p *Postgres) SetEmail(ctx context.Context, name, email string) error {
	if err := checkEmail(email); err != nil {
		return fmt.Errorf("store: set email of %q: %w", name, err)
	}
	return p.updateUser(ctx, "set email", name, false,
		`UPDATE users SET email = $2, updated_at = $3 WHERE name = $1`,
		email)
}

// updateUser is SQLite.updateUser for Postgres: query runs with $1 the
// canonical name, $2 arg and $3 the store's clock, and with revoke a
// user-before revocation is logged in the same transaction.
func (p *Postgres) updateUser(ctx context.Context, what, name string, revoke bool, query string, arg any) error {
	n, err := CanonicalName(name)
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	now := p.now()
	err = p.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, query, n, arg, toMicros(now))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		if !revoke {
			return nil
		}
		return p.insertRevocation(ctx, tx, session.Revocation{User: n, Before: now, Until: now.Add(p.lifetime)})
	})
	if err != nil {
		return fmt.Errorf("store: %s of user %q: %w", what, n, err)
	}
	return nil
}
