package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configures NewRedis.
type RedisOptions struct {
	// Client is the Redis connection (a single server, Sentinel or Cluster);
	// required. Build it with ContextTimeoutEnabled: true so that Timeout
	// bounds each network read, and a small MaxRetries (or -1: none) so a
	// dead server fails fast; otherwise go-redis's ReadTimeout applies.
	Client redis.UniversalClient
	// Prefix starts every key sekisho writes. Default (""): "sekisho:rl:".
	// Counters are PREFIX "t:" KEY, bans PREFIX "b:" KEY.
	Prefix string
	// Timeout bounds each call to Redis. Default (0): 50ms.
	Timeout time.Duration
	// FailOpen says what Take does when Redis cannot answer (down, slow,
	// refusing). false (the default, fail closed): Take returns the error
	// with a refusal (Allowed false, RetryAfter 1s), so limited requests are
	// denied until Redis is back. true: Take falls back to an in-memory limit
	// on this replica — the same rate per replica, so across N replicas up
	// to N times the configured rate — and logs the failure (at most every
	// 10s); it returns no error.
	//
	// Bans do not fail open to nothing: every ban this replica sets or sees
	// in Redis is also kept in memory here, and Banned reports it while
	// Redis is down (and while Redis has lost it). With Redis down and no
	// ban known here, Banned returns 0 when FailOpen, else an error; Ban
	// keeps the ban here and returns an error only when not FailOpen.
	FailOpen bool
	// LocalMaxKeys bounds the in-memory fallback (counters and bans, each).
	// Default (0): 10000.
	LocalMaxKeys int
	// Now is the clock of the in-memory fallback and of log throttling.
	// nil: time.Now. Counters and bans in Redis use the Redis server's
	// clock, so replicas with skewed clocks agree.
	Now func() time.Time
	// Logger receives fail-open errors. nil: discarded.
	Logger *slog.Logger
}

// Defaults of RedisOptions.
const (
	DefaultRedisPrefix  = "sekisho:rl:"
	DefaultRedisTimeout = 50 * time.Millisecond
	DefaultLocalMaxKeys = 10_000
)

// failClosedRetry is the RetryAfter of a refusal caused by a Redis failure.
const failClosedRetry = time.Second

// logEvery throttles fail-open error logs.
const logEvery = 10 * time.Second

// takeScript is GCRA in one round trip. KEYS[1] is the counter; ARGV[1] the
// emission interval and ARGV[2] the burst limit (interval*count), both in
// microseconds. The clock is the server's (TIME), never the caller's. It
// returns {1, 0} when allowed, else {0, microseconds until allowed}.
var takeScript = redis.NewScript(`
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '') or now
if tat < now then tat = now end
local newtat = tat + interval
local allow_at = newtat - limit
if now < allow_at then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', newtat), 'PX', math.ceil((newtat - now) / 1000))
return {1, 0}
`)

// banScript sets KEYS[1] to expire in ARGV[1] milliseconds unless it already
// lasts longer. It returns the remaining milliseconds.
var banScript = redis.NewScript(`
local ms = tonumber(ARGV[1])
local left = redis.call('PTTL', KEYS[1])
if left >= ms then return left end
redis.call('SET', KEYS[1], '1', 'PX', ms)
return ms
`)

// Redis is a Limiter whose counters and bans live in Redis, shared by every
// replica that uses the same server and Prefix. Take is one round trip. It is
// safe for concurrent use.
type Redis struct {
	client   redis.UniversalClient
	prefix   string
	timeout  time.Duration
	failOpen bool
	local    *Memory
	now      func() time.Time
	log      *slog.Logger
	lastLog  atomic.Int64 // UnixNano of the last fail-open log line
}

var _ Limiter = (*Redis)(nil)

// NewRedis returns a Limiter on Redis. It does not touch the network: the
// scripts load on first use (EVALSHA, falling back to EVAL, which also caches
// the script in the server).
func NewRedis(opts RedisOptions) (*Redis, error) {
	if opts.Client == nil {
		return nil, errors.New("ratelimit: redis: no client")
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("ratelimit: redis timeout %s is negative", opts.Timeout)
	}
	if opts.LocalMaxKeys < 0 {
		return nil, fmt.Errorf("ratelimit: redis local_max_keys %d is negative", opts.LocalMaxKeys)
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultRedisPrefix
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultRedisTimeout
	}
	if opts.LocalMaxKeys == 0 {
		opts.LocalMaxKeys = DefaultLocalMaxKeys
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	local, err := NewMemory(MemoryOptions{MaxKeys: opts.LocalMaxKeys, Now: opts.Now})
	if err != nil {
		return nil, err
	}
	return &Redis{
		client:   opts.Client,
		prefix:   opts.Prefix,
		timeout:  opts.Timeout,
		failOpen: opts.FailOpen,
		local:    local,
		now:      opts.Now,
		log:      opts.Logger.With("component", "ratelimit"),
	}, nil
}

func (r *Redis) rateKey(key string) string { return r.prefix + "t:" + key }
func (r *Redis) banKey(key string) string  { return r.prefix + "b:" + key }

// Take records one hit on key under rate (GCRA on the Redis server's clock).
func (r *Redis) Take(ctx context.Context, key string, rate Rate) (Result, error) {
	if err := rate.Validate(); err != nil {
		return Result{}, fmt.Errorf("ratelimit: key %q: %w", key, err)
	}
	key = storedKey(key)
	interval := rate.interval(time.Microsecond)
	limit := interval * time.Duration(rate.Count)
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	res, err := takeScript.Run(cctx, r.client, []string{r.rateKey(key)},
		interval.Microseconds(), limit.Microseconds()).Int64Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("the take script returned %d values, want 2", len(res))
	}
	if err != nil {
		err = fmt.Errorf("ratelimit: redis: take on key %q: %w", key, err)
		if r.failOpen {
			r.logFailOpen(err)
			return r.local.Take(ctx, key, rate)
		}
		return Result{RetryAfter: failClosedRetry}, err
	}
	if res[0] == 1 {
		return Result{Allowed: true}, nil
	}
	return Result{RetryAfter: time.Duration(res[1]) * time.Microsecond}, nil
}

// Ban bans key for d on every replica. A ban that already lasts longer is
// kept. The ban is also kept in this replica's memory.
func (r *Redis) Ban(ctx context.Context, key string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("ratelimit: ban of key %q for %s: the duration must be positive", key, d)
	}
	key = storedKey(key)
	r.local.ban(key, d)
	ms := ceilDiv(d, time.Millisecond)
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := banScript.Run(cctx, r.client, []string{r.banKey(key)}, int64(ms)).Err(); err != nil {
		err = fmt.Errorf("ratelimit: redis: ban of key %q: %w", key, err)
		if r.failOpen {
			r.logFailOpen(err)
			return nil
		}
		return err
	}
	return nil
}

// Banned returns the remaining ban on key, the longer of what Redis and this
// replica's memory know; 0 if none.
func (r *Redis) Banned(ctx context.Context, key string) (time.Duration, error) {
	key = storedKey(key)
	local := r.local.banned(key)
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	ms, err := r.client.PTTL(cctx, r.banKey(key)).Result()
	// go-redis turns PTTL's -2 (no key) and -1 (no expiry) into negative
	// durations of -2ns and -1ns.
	if err == nil && ms == -1 {
		err = errors.New("the ban has no expiry")
	}
	if err != nil {
		if local > 0 {
			return local, nil
		}
		err = fmt.Errorf("ratelimit: redis: ban lookup of key %q: %w", key, err)
		if r.failOpen {
			r.logFailOpen(err)
			return 0, nil
		}
		return 0, err
	}
	if ms <= 0 {
		return local, nil
	}
	if ms > local {
		r.local.ban(key, ms)
		return ms, nil
	}
	return local, nil
}

// logFailOpen logs err unless a fail-open error was logged in the last 10s.
func (r *Redis) logFailOpen(err error) {
	now := r.now().UnixNano()
	last := r.lastLog.Load()
	if last != 0 && now-last < int64(logEvery) {
		return
	}
	if r.lastLog.CompareAndSwap(last, now) {
		r.log.Warn("redis unavailable: rate limits fall back to this replica", "err", err)
	}
}
