package local

import (
	"container/list"
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// ThrottleOptions configures a Throttle. The zero value gives the defaults.
type ThrottleOptions struct {
	// MaxFailures is how many failed logins an account may have within
	// Window before it is locked for Lockout. Zero means 5.
	MaxFailures int
	// IPMaxFailures is the same for one client address (IPv6: its /64),
	// across all user names; it stops password spraying, where each account
	// sees only one or two guesses. Zero means 20.
	IPMaxFailures int
	// Window is how long failures are remembered. Zero means 15 minutes.
	Window time.Duration
	// Lockout is how long a locked account or address stays locked. Zero
	// means 15 minutes.
	Lockout time.Duration
	// MaxEntries caps how many accounts, and separately how many addresses,
	// are tracked; past it the least recently touched entry is forgotten.
	// Zero means 100,000 of each (a few tens of MB at most).
	MaxEntries int
	// Now is the clock. nil means time.Now.
	Now func() time.Time
	// Shared, when set (Redis), counts failures and holds locks for every
	// replica as well, so N replicas do not give an attacker N times the
	// budget. The in-memory counts are kept too: while Shared fails, each
	// replica still locks on its own, and the failure is logged.
	Shared Shared
	// Logger receives Shared's failures. nil: slog.Default().
	Logger *slog.Logger
}

// Shared is a failure counter every replica sees (ratelimit.Redis).
type Shared interface {
	Fail(ctx context.Context, key string, window, lockout time.Duration, limit int) (time.Duration, error)
	LockedFor(ctx context.Context, key string) (time.Duration, error)
	Clear(ctx context.Context, key string) error
}

// Throttle counts failed logins per account and per client address and
// locks either out for a while after too many. It counts in memory, per
// replica, and with Options.Shared (Redis) for all replicas as well: without
// it, N replicas behind a balancer give an attacker up to N times the
// budget, and a restart forgets every count. An operator lifts an
// account's lockout from another process through the store's unlock log,
// which PollUnlocks applies. It is safe for concurrent use. A nil
// *Throttle allows everything.
//
// Memory is bounded by MaxEntries per kind. Accounts and addresses are kept
// apart so a flood of made-up user names cannot evict an address's count;
// an attacker spraying from very many addresses can still evict old
// entries, which is the price of the bound.
type Throttle struct {
	maxUser, maxIP int
	window         time.Duration
	lockout        time.Duration
	now            func() time.Time

	mu    sync.Mutex
	users *lru
	ips   *lru

	shared Shared
	log    *slog.Logger
}

// NewThrottle returns a Throttle with o's settings (zero fields take their
// defaults).
func NewThrottle(o ThrottleOptions) *Throttle {
	t := &Throttle{
		maxUser: o.MaxFailures, maxIP: o.IPMaxFailures,
		window: o.Window, lockout: o.Lockout, now: o.Now, shared: o.Shared, log: o.Logger,
	}
	if t.log == nil {
		t.log = slog.Default()
	}
	if t.maxUser <= 0 {
		t.maxUser = 5
	}
	if t.maxIP <= 0 {
		t.maxIP = 20
	}
	if t.window <= 0 {
		t.window = 15 * time.Minute
	}
	if t.lockout <= 0 {
		t.lockout = 15 * time.Minute
	}
	if t.now == nil {
		t.now = time.Now
	}
	capacity := o.MaxEntries
	if capacity <= 0 {
		capacity = 100_000
	}
	t.users = newLRU(capacity)
	t.ips = newLRU(capacity)
	return t
}

// Allowed reports whether a login for user from ip may be tried now. When
// either the account or the address is locked it returns false and how long
// until the later of the two locks ends. An empty user is not tracked per
// account. It does not count anything; call Fail or Succeed after checking
// the password.
func (t *Throttle) Allowed(user, ip string) (ok bool, retryAfter time.Duration) {
	account, address := t.Locked(user, ip)
	retryAfter = max(account, address)
	return retryAfter == 0, retryAfter
}

// Locked returns how long the account and, separately, the client address
// stay locked (zero: not locked), so a sign-in page can say which lock
// holds and for how long. An empty user is not tracked per account.
func (t *Throttle) Locked(user, ip string) (account, address time.Duration) {
	if t == nil {
		return 0, 0
	}
	now := t.now()
	t.mu.Lock()
	account, address = t.users.lockedFor(user, now), t.ips.lockedFor(IPKey(ip), now)
	t.mu.Unlock()
	if t.shared != nil {
		if user != "" {
			account = max(account, t.sharedLocked(sharedUser(user)))
		}
		address = max(address, t.sharedLocked(sharedIP(ip)))
	}
	return account, address
}

// The shared counters' keys.
func sharedUser(user string) string { return "signin:u:" + user }
func sharedIP(ip string) string     { return "signin:ip:" + IPKey(ip) }

func (t *Throttle) sharedLocked(key string) time.Duration {
	d, err := t.shared.LockedFor(context.Background(), key)
	if err != nil {
		t.log.Warn("shared sign-in throttle unavailable: this replica's own counts decide", "component", "local", "err", err)
	}
	return d
}

func (t *Throttle) sharedFail(key string, limit int) {
	if _, err := t.shared.Fail(context.Background(), key, t.window, t.lockout, limit); err != nil {
		t.log.Warn("shared sign-in throttle unavailable: this replica's own counts decide", "component", "local", "err", err)
	}
}

func (t *Throttle) sharedClear(key string) {
	if err := t.shared.Clear(context.Background(), key); err != nil {
		t.log.Warn("clear the shared sign-in throttle", "component", "local", "err", err)
	}
}

// Fail records a failed login for user from ip.
func (t *Throttle) Fail(user, ip string) {
	if t == nil {
		return
	}
	now := t.now()
	t.mu.Lock()
	if user != "" {
		t.users.fail(user, now, t.window, t.lockout, t.maxUser)
	}
	t.ips.fail(IPKey(ip), now, t.window, t.lockout, t.maxIP)
	t.mu.Unlock()
	if t.shared != nil {
		if user != "" {
			t.sharedFail(sharedUser(user), t.maxUser)
		}
		t.sharedFail(sharedIP(ip), t.maxIP)
	}
}

// Succeed records a successful login: the account's failure count is
// cleared. The address's count is kept on purpose, or an attacker holding
// one valid account could reset it between guesses at others.
func (t *Throttle) Succeed(user, ip string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.users.remove(user)
	t.mu.Unlock()
	if t.shared != nil {
		t.sharedClear(sharedUser(user))
	}
}

// Unlock clears the account's lockout and failure count (`sekisho user
// unlock`, applied by PollUnlocks). Address counts are untouched on
// purpose: unlocking an account an attacker locked does not lift the
// attacker's address lockout nor reset its count, and new failures lock
// the account again.
func (t *Throttle) Unlock(user string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.users.remove(user)
	t.mu.Unlock()
	if t.shared != nil {
		t.sharedClear(sharedUser(user))
	}
}

// Len returns how many accounts and addresses are tracked, for metrics.
func (t *Throttle) Len() (users, ips int) {
	if t == nil {
		return 0, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.users.l.Len(), t.ips.l.Len()
}

// IPKey is the throttle key for a client address: the address itself for
// IPv4 (and IPv4-mapped IPv6), the /64 for IPv6 since one host usually holds
// a whole /64. A "host:port" is accepted. Anything unparsable shares the key
// "invalid", so malformed input cannot mint fresh keys.
func IPKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		ap, err2 := netip.ParseAddrPort(ip)
		if err2 != nil {
			return "invalid"
		}
		a = ap.Addr()
	}
	a = a.WithZone("").Unmap()
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64) // cannot fail for a 128-bit address
	return p.String()
}

// lru is a map of failure counters with least-recently-touched eviction.
type lru struct {
	cap int
	m   map[string]*list.Element
	l   *list.List // front: most recently touched; values are *counter
}

type counter struct {
	key         string
	failures    int
	windowStart time.Time
	lockedUntil time.Time
}

func newLRU(capacity int) *lru {
	return &lru{cap: capacity, m: make(map[string]*list.Element), l: list.New()}
}

func (c *lru) lockedFor(key string, now time.Time) time.Duration {
	if key == "" {
		return 0
	}
	e, ok := c.m[key]
	if !ok {
		return 0
	}
	if until := e.Value.(*counter).lockedUntil; now.Before(until) {
		return until.Sub(now)
	}
	return 0
}

func (c *lru) fail(key string, now time.Time, window, lockout time.Duration, limit int) {
	e, ok := c.m[key]
	if !ok {
		if c.l.Len() >= c.cap {
			old := c.l.Back()
			c.l.Remove(old)
			delete(c.m, old.Value.(*counter).key)
		}
		e = c.l.PushFront(&counter{key: key, windowStart: now})
		c.m[key] = e
	}
	c.l.MoveToFront(e)
	ct := e.Value.(*counter)
	if now.Sub(ct.windowStart) >= window || now.Before(ct.windowStart) {
		ct.failures, ct.windowStart = 0, now
	}
	ct.failures++
	if ct.failures >= limit {
		ct.lockedUntil = now.Add(lockout)
		ct.failures, ct.windowStart = 0, now
	}
}

func (c *lru) remove(key string) {
	if e, ok := c.m[key]; ok {
		c.l.Remove(e)
		delete(c.m, key)
	}
}
