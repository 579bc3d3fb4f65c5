// Package ratelimit counts requests per key and bans keys, in memory on one
// replica or in Redis shared by every replica.
//
// The rule engine (internal/rules) builds the key strings (client IP, a header,
// a cookie, the path, the user, the API key, or a combination) and calls a
// Limiter: Take for the throttle action, Ban and Banned for rate_based_ban.
//
// Both implementations use GCRA, the generic cell rate algorithm: one
// timestamp per key (the theoretical arrival time, TAT), O(1) per hit, a burst
// of up to Rate.Count hits, then one hit every Rate.Per/Rate.Count, and an exact
// RetryAfter when a hit is refused.
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// Rate is Count events per Per.
//
// A key may spend up to Count hits at once (the burst); after that it earns one
// hit back every Per/Count (the emission interval, rounded up to a whole
// nanosecond in memory and a whole microsecond in Redis, so a limit is never
// laxer than configured).
//
// A key counts hits for one rate: the caller should make the key name the rule
// it belongs to, so two rules with different rates never share a key.
type Rate struct {
	// Count is how many hits are allowed per Per; at least 1.
	Count int
	// Per is the window Count applies to; at least MinPer, at most MaxPer.
	Per time.Duration
}

// MinPer is the smallest Rate.Per that Validate accepts.
const MinPer = time.Millisecond

// MaxPer is the largest Rate.Per that Validate accepts.
const MaxPer = 366 * 24 * time.Hour

// Validate reports what is wrong with r, or nil.
func (r Rate) Validate() error {
	var errs []error
	switch {
	case r.Count == 0:
		errs = append(errs, errors.New("rate of zero: count must be at least 1"))
	case r.Count < 0:
		errs = append(errs, fmt.Errorf("rate count %d is negative: it must be at least 1", r.Count))
	}
	switch {
	case r.Per == 0:
		errs = append(errs, errors.New("rate period of zero: per must be at least 1ms"))
	case r.Per < 0:
		errs = append(errs, fmt.Errorf("rate period %s is negative: per must be at least 1ms", r.Per))
	case r.Per < MinPer:
		errs = append(errs, fmt.Errorf("rate period %s is below 1ms", r.Per))
	case r.Per > MaxPer:
		errs = append(errs, fmt.Errorf("rate period %s is longer than 366 days", r.Per))
	}
	if len(errs) == 0 && int64(r.Count) > int64(r.Per/time.Microsecond) {
		errs = append(errs, fmt.Errorf("rate %d per %s is finer than one hit per microsecond", r.Count, r.Per))
	}
	return errors.Join(errs...)
}

// String returns r as "COUNT/PER", e.g. "30/1m0s".
func (r Rate) String() string { return fmt.Sprintf("%d/%s", r.Count, r.Per) }

// interval is the emission interval, the time one hit costs: Per/Count
// rounded up to a whole unit (time.Nanosecond in memory, time.Microsecond in
// Redis). r must be valid.
func (r Rate) interval(unit time.Duration) time.Duration {
	return ceilDiv(r.Per, time.Duration(r.Count)*unit) * unit
}

// Result is the outcome of one Take.
type Result struct {
	// Allowed is true when the hit fits in the rate.
	Allowed bool
	// RetryAfter is, when Allowed is false, how long until one more hit
	// would be allowed; 0 when Allowed is true.
	RetryAfter time.Duration
}

// Limiter counts hits per key and keeps bans per key. Implementations are safe
// for concurrent use.
type Limiter interface {
	// Take records one hit on key under rate. A hit that is refused is not
	// counted. On an error (an invalid rate; Redis unreachable and not
	// FailOpen) the Result is a refusal: the caller denies and logs.
	Take(ctx context.Context, key string, rate Rate) (Result, error)
	// Ban bans key for d; a ban already longer than d is kept. d <= 0 is an
	// error.
	Ban(ctx context.Context, key string, d time.Duration) error
	// Banned returns the remaining ban on key, 0 if none. On an error the
	// caller should deny: the limiter could not tell.
	Banned(ctx context.Context, key string) (time.Duration, error)
}

// ceilDiv is the ceiling of a/b for positive b, 0 for a <= 0.
func ceilDiv(a, b time.Duration) time.Duration {
	if a <= 0 {
		return 0
	}
	return (a + b - 1) / b
}

// RetryAfterSeconds returns d rounded up to whole seconds, at least 1, for the
// Retry-After header of a 429 response.
func RetryAfterSeconds(d time.Duration) int64 {
	s := int64(ceilDiv(d, time.Second))
	if s < 1 {
		s = 1
	}
	return s
}

// MaxKeyLen is the longest key stored as given. A longer key (a key built from
// a client's header or cookie can be as long as the client likes) is stored
// as its first 96 bytes, "~", and its SHA-256 (140 bytes in all, so it never
// equals a key stored as given), keeping memory per key bounded.
const MaxKeyLen = 128

// storedKey returns the form of key that is stored: key itself up to
// MaxKeyLen bytes, else a bounded digest form.
func storedKey(key string) string {
	if len(key) <= MaxKeyLen {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return key[:96] + "~" + base64.RawURLEncoding.EncodeToString(sum[:])
}
