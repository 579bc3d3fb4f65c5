package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// failScript counts one failure under KEYS[1] in a fixed window of
// ARGV[1] ms from the first; at ARGV[3] failures it locks KEYS[2] for
// ARGV[2] ms and starts the count afresh (as the in-memory throttle does).
// It returns the lock's remaining ms, or a negative number when unlocked.
var failScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n >= tonumber(ARGV[3]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  redis.call('DEL', KEYS[1])
end
return redis.call('PTTL', KEYS[2])
`)

func (r *Redis) failKey(key string) string { return r.prefix + "f:" + key }
func (r *Redis) lockKey(key string) string { return r.prefix + "l:" + key }

// Fail counts a failed sign-in under key, shared by every replica: after
// limit failures within window, key is locked for lockout. It returns how
// long key stays locked (zero: not locked).
func (r *Redis) Fail(ctx context.Context, key string, window, lockout time.Duration, limit int) (time.Duration, error) {
	if window <= 0 || lockout <= 0 || limit <= 0 {
		return 0, fmt.Errorf("ratelimit: failures of %q: window, lockout and limit must be above zero", key)
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	ms, err := failScript.Run(ctx, r.client, []string{r.failKey(key), r.lockKey(key)},
		window.Milliseconds(), lockout.Milliseconds(), limit).Int64()
	if err != nil {
		return 0, fmt.Errorf("ratelimit: redis: count a failure of %q: %w", key, err)
	}
	return max(time.Duration(ms)*time.Millisecond, 0), nil
}

// LockedFor returns how long key stays locked by Fail (zero: not locked).
func (r *Redis) LockedFor(ctx context.Context, key string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	d, err := r.client.PTTL(ctx, r.lockKey(key)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("ratelimit: redis: read the lock of %q: %w", key, err)
	}
	return max(d, 0), nil // -1 and -2 (no expiry, no key) mean unlocked
}

// Clear forgets key's failures and lifts its lock.
func (r *Redis) Clear(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.client.Del(ctx, r.failKey(key), r.lockKey(key)).Err(); err != nil {
		return fmt.Errorf("ratelimit: redis: clear %q: %w", key, err)
	}
	return nil
}
