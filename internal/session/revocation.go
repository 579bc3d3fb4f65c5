package session

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Revocation is one row of the revocation log kept by the store. Exactly one of
// SessionID or User is set:
//
//   - SessionID != "": that one session is revoked (logout). Until is when
//     the session would have expired anyway; after Until the entry may be pruned.
//   - User != "": every session of User issued before or in the same
//     second as Before is revoked (user disable, password change). Until is when the newest such
//     session expires anyway (Before + the absolute lifetime); after Until the
//     entry may be pruned. A zero Until means the entry is never pruned.
//
// Seq is the store's strictly increasing sequence number for the row; the
// poller asks for rows with Seq greater than the last one it applied.
type Revocation struct {
	Seq       int64
	SessionID string
	User      string
	Before    time.Time
	Until     time.Time
}

// Source is where revocations come from, typically the store. RevocationsSince
// returns every row with Seq > seq, in any order; an empty slice means nothing new.
type Source interface {
	RevocationsSince(ctx context.Context, seq int64) ([]Revocation, error)
}

// Revocations is an in-memory set of revoked sessions and users, consulted on
// every request without a store round-trip. It is safe for concurrent use.
// The zero value is not usable; call NewRevocations. A nil *Revocations revokes
// nothing.
type Revocations struct {
	mu       sync.RWMutex
	sessions map[string]time.Time  // session id -> until
	users    map[string]userRevoke // user -> revoke before
	seq      int64                 // highest Seq applied from a Source
}

type userRevoke struct {
	before time.Time
	until  time.Time // zero: keep forever
}

// NewRevocations returns an empty set.
func NewRevocations() *Revocations {
	return &Revocations{
		sessions: make(map[string]time.Time),
		users:    make(map[string]userRevoke),
	}
}

// RevokeSession revokes the session with the given id. until is when that
// session would have expired anyway; Prune drops the entry after it. A zero
// until keeps the entry until the process ends. An empty id is ignored.
func (r *Revocations) RevokeSession(id string, until time.Time) {
	if id == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revokeSessionLocked(id, until)
}

func (r *Revocations) revokeSessionLocked(id string, until time.Time) {
	if old, ok := r.sessions[id]; ok && (old.IsZero() || (!until.IsZero() && old.After(until))) {
		return // keep the longer-lived entry
	}
	r.sessions[id] = until
}

// RevokeUserBefore revokes every session of user issued before t (used by
// "sekisho user disable" and password changes). A later call with an earlier t
// does not shorten the revocation. t is truncated to whole seconds, the
// precision of Session.IssuedAt, and a session issued in that same second is
// revoked too (fail closed: a sign-in racing a disable must not survive it;
// after a password change the user may have to sign in once more). The
// entry is never pruned (there is at most
// one per user); rows applied from a Source carry an Until and are pruned.
// An empty user is ignored.
func (r *Revocations) RevokeUserBefore(user string, t time.Time) {
	if user == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revokeUserLocked(user, t, time.Time{})
}

func (r *Revocations) revokeUserLocked(user string, t, until time.Time) {
	t = t.Truncate(time.Second)
	old, ok := r.users[user]
	if !ok {
		r.users[user] = userRevoke{before: t, until: until}
		return
	}
	if t.After(old.before) {
		old.before = t
	}
	if old.until.IsZero() || until.IsZero() {
		old.until = time.Time{}
	} else if until.After(old.until) {
		old.until = until
	}
	r.users[user] = old
}

// IsRevoked reports whether s has been revoked, either by its ID or because its
// user was revoked after s was issued. It takes a read lock and two map
// look-ups. A nil receiver reports false.
func (r *Revocations) IsRevoked(s Session) bool {
	if r == nil {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if _, ok := r.sessions[s.ID]; ok {
		return true
	}
	// Sessions carry whole seconds, so one issued in the same second as the
	// revocation cannot be told apart from one issued just before it: it is
	// revoked too (fail closed; the user simply signs in again). Otherwise a
	// sign-in racing `sekisho user disable` could keep a session alive.
	if u, ok := r.users[s.User]; ok && !s.IssuedAt.After(u.before) {
		return true
	}
	return false
}

// Prune drops entries whose until is before now: the sessions they name have
// expired by their absolute lifetime anyway.
func (r *Revocations) Prune(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, until := range r.sessions {
		if !until.IsZero() && until.Before(now) {
			delete(r.sessions, id)
		}
	}
	for user, u := range r.users {
		if !u.until.IsZero() && u.until.Before(now) {
			delete(r.users, user)
		}
	}
}

// Len returns the number of session and user entries held, for metrics.
func (r *Revocations) Len() (sessions, users int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.sessions), len(r.users)
}

// Seq returns the highest Source sequence number applied so far (0 if none).
func (r *Revocations) Seq() int64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.seq
}

// Apply adds rows from a Source and advances Seq to the highest row applied.
// Rows with neither SessionID nor User set are skipped (but still advance Seq).
func (r *Revocations) Apply(rows []Revocation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, row := range rows {
		switch {
		case row.SessionID != "":
			r.revokeSessionLocked(row.SessionID, row.Until)
		case row.User != "":
			r.revokeUserLocked(row.User, row.Before, row.Until)
		}
		if row.Seq > r.seq {
			r.seq = row.Seq
		}
	}
}

// Sync runs one round: it asks src for rows after Seq and applies them. On
// error the set is left as it was.
func (r *Revocations) Sync(ctx context.Context, src Source) error {
	rows, err := src.RevocationsSince(ctx, r.Seq())
	if err != nil {
		return fmt.Errorf("session: load revocations after seq %d: %w", r.Seq(), err)
	}
	r.Apply(rows)
	return nil
}

// Poll calls Sync every interval until ctx is done. A non-positive every
// means 5 seconds. Errors are logged on logger (nil means slog.Default()) and
// the last good state is kept; a source that fails never clears revocations.
func (r *Revocations) Poll(ctx context.Context, src Source, every time.Duration, logger *slog.Logger) {
	if every <= 0 {
		every = 5 * time.Second
	}
	if logger == nil {
		logger = slog.Default()
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.Sync(ctx, src); err != nil && ctx.Err() == nil {
				logger.Warn("revocation poll failed; keeping last state",
					"component", "session", "err", err)
			}
		}
	}
}
