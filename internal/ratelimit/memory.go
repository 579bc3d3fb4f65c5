package ratelimit

import (
	"context"
	"fmt"
	"hash/maphash"
	"time"
)

// MemoryOptions configures NewMemory.
type MemoryOptions struct {
	// MaxKeys bounds how many keys are remembered, separately for rate
	// counters and for bans. Default (0): 100000. A client rotating keys
	// (spoofed headers, many addresses) cannot grow memory past it: when a
	// table is full the entry that ends soonest is evicted first — an expired
	// one if there is any. Eviction can only make limits laxer for the evicted
	// key (it starts again with a full burst; an evicted ban ends early),
	// never stricter for anyone. Memory is roughly 100 bytes plus the key
	// (at most 140 bytes, see MaxKeyLen) per entry.
	MaxKeys int
	// Now is the clock. nil: time.Now.
	Now func() time.Time
	// JanitorInterval is how often Run prunes expired entries. Default (0):
	// one minute. Without Run, expired entries are pruned lazily when a
	// table is full.
	JanitorInterval time.Duration
}

// DefaultMaxKeys is MemoryOptions.MaxKeys when it is zero.
const DefaultMaxKeys = 100_000

// maxShards is the number of lock shards of a large table.
const maxShards = 64

// Memory is a Limiter that keeps its counters and bans in this process. Its
// limits and bans are per replica. It is safe for concurrent use.
type Memory struct {
	now    func() time.Time
	base   time.Time // now() at construction; times are nanoseconds since
	seed   maphash.Seed
	rates  []table
	bans   []table
	mask   uint64
	janInt time.Duration
}

var _ Limiter = (*Memory)(nil)

// NewMemory returns an in-memory Limiter.
func NewMemory(opts MemoryOptions) (*Memory, error) {
	if opts.MaxKeys < 0 {
		return nil, fmt.Errorf("ratelimit: max_keys %d is negative", opts.MaxKeys)
	}
	if opts.JanitorInterval < 0 {
		return nil, fmt.Errorf("ratelimit: janitor interval %s is negative", opts.JanitorInterval)
	}
	if opts.MaxKeys == 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.JanitorInterval == 0 {
		opts.JanitorInterval = time.Minute
	}
	// Shards: a power of two, at most 64, each holding at least 16 keys,
	// so the tables together never exceed MaxKeys.
	n := 1
	for n < maxShards && opts.MaxKeys/(n*2) >= 16 {
		n *= 2
	}
	per := opts.MaxKeys / n
	m := &Memory{
		now:    opts.Now,
		base:   opts.Now(),
		seed:   maphash.MakeSeed(),
		rates:  make([]table, n),
		bans:   make([]table, n),
		mask:   uint64(n - 1),
		janInt: opts.JanitorInterval,
	}
	for i := range n {
		m.rates[i].init(per)
		m.bans[i].init(per)
	}
	return m, nil
}

// clock returns the current time as nanoseconds since m.base; it uses the
// monotonic clock when Now provides one.
func (m *Memory) clock() int64 { return int64(m.now().Sub(m.base)) }

func (m *Memory) shard(key string) uint64 { return maphash.String(m.seed, key) & m.mask }

// Take records one hit on key under rate (GCRA).
func (m *Memory) Take(_ context.Context, key string, rate Rate) (Result, error) {
	if err := rate.Validate(); err != nil {
		return Result{}, fmt.Errorf("ratelimit: key %q: %w", key, err)
	}
	key = storedKey(key)
	interval := int64(rate.interval(time.Nanosecond))
	limit := interval * int64(rate.Count)
	t := &m.rates[m.shard(key)]
	t.mu.Lock()
	defer t.mu.Unlock()
	now := m.clock()
	e := t.m[key]
	tat := now
	if e != nil && e.deadline > now {
		tat = e.deadline
	}
	newTAT := tat + interval
	if allowAt := newTAT - limit; now < allowAt {
		return Result{RetryAfter: time.Duration(allowAt - now)}, nil
	}
	t.set(e, key, newTAT, now)
	return Result{Allowed: true}, nil
}

// Ban bans key for d. A ban that already lasts longer is kept.
func (m *Memory) Ban(_ context.Context, key string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("ratelimit: ban of key %q for %s: the duration must be positive", key, d)
	}
	m.ban(storedKey(key), d)
	return nil
}

func (m *Memory) ban(key string, d time.Duration) {
	t := &m.bans[m.shard(key)]
	t.mu.Lock()
	defer t.mu.Unlock()
	now := m.clock()
	until := now + int64(d)
	if until < now { // overflow: d is absurdly long
		until = int64(^uint64(0) >> 1)
	}
	e := t.m[key]
	if e != nil && e.deadline >= until {
		return
	}
	t.set(e, key, until, now)
}

// Banned returns the remaining ban on key, 0 if none.
func (m *Memory) Banned(_ context.Context, key string) (time.Duration, error) {
	return m.banned(storedKey(key)), nil
}

func (m *Memory) banned(key string) time.Duration {
	t := &m.bans[m.shard(key)]
	t.mu.Lock()
	defer t.mu.Unlock()
	now := m.clock()
	if e := t.m[key]; e != nil && e.deadline > now {
		return time.Duration(e.deadline - now)
	}
	return 0
}

// Len returns how many rate counters and bans are held, expired ones not yet
// pruned included.
func (m *Memory) Len() (rates, bans int) {
	for i := range m.rates {
		rates += m.rates[i].len()
		bans += m.bans[i].len()
	}
	return rates, bans
}

// Prune drops expired counters and bans and returns how many it dropped.
func (m *Memory) Prune() int {
	n := 0
	for i := range m.rates {
		now := m.clock()
		n += m.rates[i].prune(now)
		n += m.bans[i].prune(now)
	}
	return n
}

// Run prunes expired entries every JanitorInterval until ctx ends, then
// returns nil. Running it is optional: full tables prune themselves.
func (m *Memory) Run(ctx context.Context) error {
	tick := time.NewTicker(m.janInt)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			m.Prune()
		}
	}
}
