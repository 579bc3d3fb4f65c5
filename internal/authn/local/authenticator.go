package local

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/store"
)

// ErrBadCredentials is the one answer for an unknown user, a wrong password,
// a disabled account or a corrupt stored hash, so a login form does not tell
// an attacker which names exist. Errors returned by Login wrap it together
// with an internal cause for the log: show users only this sentinel's text,
// never err.Error().
var ErrBadCredentials = errors.New("invalid user name or password")

// ErrLocked means too many failed logins for the account or the client
// address; Login returns a *LockedError, which errors.Is ErrLocked.
var ErrLocked = errors.New("too many failed sign-in attempts; try again later")

// LockedError is returned by Login while the throttle refuses attempts.
type LockedError struct {
	// RetryAfter is how long until attempts are accepted again, for a
	// Retry-After header: the longer of Account and Address.
	RetryAfter time.Duration
	// Account and Address are how long the account and the client address
	// each stay locked; zero means that one is not locked.
	Account, Address time.Duration
}

// Message is the sentence for the sign-in page: which lock holds and the
// real remaining wait ("... Try again in 14 minutes."). It names no cause
// an attacker could use: every well-formed user name, existing or not, is
// locked the same way.
func (e *LockedError) Message() string {
	var who string
	switch {
	case e.Account > 0 && e.Address > 0:
		who = "for this account and from your network"
	case e.Address > 0:
		who = "from your network"
	default:
		who = "for this account"
	}
	return "Too many failed sign-in attempts " + who + ". Try again in " + waitText(e.RetryAfter) + "."
}

// waitText rounds d up to whole minutes ("14 minutes", "1 minute"), or to
// seconds under a minute ("40 seconds").
func waitText(d time.Duration) string {
	unit, n := "second", int64((d+time.Second-1)/time.Second)
	if d >= time.Minute {
		unit, n = "minute", int64((d+time.Minute-1)/time.Minute)
	}
	if n < 1 {
		n = 1
	}
	if n != 1 {
		unit += "s"
	}
	return strconv.FormatInt(n, 10) + " " + unit
}

// Error returns the user-facing text with the wait rounded up to seconds.
func (e *LockedError) Error() string {
	secs := int64((e.RetryAfter + time.Second - 1) / time.Second)
	return ErrLocked.Error() + " (in " + strconv.FormatInt(secs, 10) + "s)"
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// UserGetter is the part of the store Login needs; *store.SQLite and any
// store.Users satisfy it.
type UserGetter interface {
	// GetUser returns the user or an error wrapping store.ErrNotFound.
	GetUser(ctx context.Context, name string) (store.User, error)
}

// Authenticator checks local user names and passwords.
type Authenticator struct {
	store    UserGetter
	throttle *Throttle
	now      func() time.Time
	// dummy is a hash with DefaultParams that unknown users are verified
	// against, so they cost the same time as known ones.
	dummy string
	// verify is Verify; tests count calls through it.
	verify func(hash, password string) (bool, error)
}

// dummyHash is a fixed argon2id hash with DefaultParams (of a password no
// one uses). Computing it at start-up cost ~100 ms of CPU and left 19 MiB
// of argon2 memory resident; TestDummyHashMatchesDefaultParams keeps it in
// step with DefaultParams.
const dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$MWVRjwyIcrl6VdmHVCDJoA$cs9Tq6map3s5DkCqyEMTJwXkLKvjQ6z4grA9d4Wm3BM"

// NewAuthenticator returns an Authenticator over st. throttle may be nil
// (no throttling; only for tests and tools). now nil means time.Now.
func NewAuthenticator(st UserGetter, throttle *Throttle, now func() time.Time) (*Authenticator, error) {
	if st == nil {
		return nil, errors.New("local authenticator: store is nil")
	}
	if now == nil {
		now = time.Now
	}
	return &Authenticator{store: st, throttle: throttle, now: now, dummy: dummyHash, verify: Verify}, nil
}

// Login checks username and password for a request from clientIP (the
// client address the listener determined, used for throttling) and returns
// the user's Identity (Kind Session, Provider "local", AuthTime now).
//
// Errors: one wrapping ErrBadCredentials for every credential failure, a
// *LockedError while throttled (checked before any hashing, so a locked-out
// attacker costs no CPU), or a store failure, which is neither and should be
// answered as an internal error.
func (a *Authenticator) Login(ctx context.Context, username, password, clientIP string) (identity.Identity, error) {
	name, nameErr := store.CanonicalName(username)
	if nameErr != nil {
		name = "" // not tracked per account: it cannot exist
	}
	if account, address := a.throttle.Locked(name, clientIP); account > 0 || address > 0 {
		return identity.Identity{}, &LockedError{RetryAfter: max(account, address), Account: account, Address: address}
	}
	fail := func(cause error) (identity.Identity, error) {
		a.throttle.Fail(name, clientIP)
		return identity.Identity{}, fmt.Errorf("%w: %w", ErrBadCredentials, cause)
	}
	if nameErr != nil {
		a.spend(password)
		return fail(nameErr)
	}
	if len(password) > MaxPasswordBytes {
		// Not hashed: hashing cost grows with input. Length is no secret.
		return fail(fmt.Errorf("password for %q longer than %d bytes", name, MaxPasswordBytes))
	}
	u, err := a.store.GetUser(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		a.spend(password)
		return fail(fmt.Errorf("no local user %q", name))
	}
	if err != nil {
		return identity.Identity{}, fmt.Errorf("local login for %q: %w", name, err)
	}
	if u.PasswordHash == "" {
		a.spend(password)
		return fail(fmt.Errorf("user %q has no password set", name))
	}
	ok, err := a.verify(u.PasswordHash, password)
	if err != nil {
		return fail(fmt.Errorf("stored hash of user %q: %w", name, err))
	}
	if !ok {
		return fail(fmt.Errorf("wrong password for user %q", name))
	}
	if u.Disabled {
		// Checked after the hash so a disabled account answers no faster.
		return fail(fmt.Errorf("user %q is disabled", name))
	}
	a.throttle.Succeed(name, clientIP)
	return identity.Identity{
		Kind:     identity.Session,
		User:     u.Name,
		Email:    u.Email,
		Groups:   u.Groups,
		Provider: "local",
		AuthTime: a.now(),
	}, nil
}

// spend verifies password against the dummy hash, to take as long as a real
// check.
func (a *Authenticator) spend(password string) {
	if len(password) > MaxPasswordBytes {
		password = password[:MaxPasswordBytes]
	}
	_, _ = a.verify(a.dummy, password)
}
