package ratelimit

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/testclock"
)

// fakeClock is the settable test clock.
type fakeClock = testclock.Clock

func newFakeClock() *fakeClock { return testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

func TestRateValidate(t *testing.T) {
	tests := []struct {
		name string
		rate Rate
		want string // substring of the error; "" for valid
	}{
		{"thirty_per_minute", Rate{30, time.Minute}, ""},
		{"one_per_millisecond", Rate{1, time.Millisecond}, ""},
		{"one_per_microsecond", Rate{1000, time.Millisecond}, ""},
		{"a_year", Rate{1, 366 * 24 * time.Hour}, ""},
		{"zero_count", Rate{0, time.Second}, "rate of zero"},
		{"negative_count", Rate{-3, time.Second}, "count -3 is negative"},
		{"zero_period", Rate{5, 0}, "rate period of zero"},
		{"negative_period", Rate{5, -time.Second}, "period -1s is negative"},
		{"period_below_a_millisecond", Rate{1, time.Microsecond}, "below 1ms"},
		{"period_over_a_year", Rate{1, 367 * 24 * time.Hour}, "longer than 366 days"},
		{"finer_than_a_microsecond", Rate{1001, time.Millisecond}, "finer than one hit per microsecond"},
		{"huge_count_no_overflow", Rate{1 << 62, time.Second}, "finer than one hit per microsecond"},
		{"zero_rate_names_both", Rate{}, "rate period of zero"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.rate.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate(%v) = %v, want nil", tc.rate, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate(%v) = %v, want an error containing %q", tc.rate, err, tc.want)
			}
		})
	}
}

func TestRateInterval(t *testing.T) {
	tests := []struct {
		name string
		rate Rate
		unit time.Duration
		want time.Duration
	}{
		{"exact", Rate{3, 3 * time.Second}, time.Nanosecond, time.Second},
		{"rounded_up_ns", Rate{3, time.Second}, time.Nanosecond, 333333334},
		{"rounded_up_us", Rate{3, time.Second}, time.Microsecond, 333334 * time.Microsecond},
		{"one_us", Rate{1000, time.Millisecond}, time.Microsecond, time.Microsecond},
		{"not_laxer_in_us", Rate{600, time.Millisecond}, time.Microsecond, 2 * time.Microsecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.rate.interval(tc.unit); got != tc.want {
				t.Errorf("%v.interval(%v) = %v, want %v", tc.rate, tc.unit, got, tc.want)
			}
		})
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	tests := []struct {
		name string
		d    time.Duration
		want int64
	}{
		{"zero_is_one", 0, 1},
		{"sub_second_is_one", time.Millisecond, 1},
		{"exact", 2 * time.Second, 2},
		{"rounds_up", 2*time.Second + 1, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := RetryAfterSeconds(tc.d); got != tc.want {
				t.Errorf("RetryAfterSeconds(%v) = %d, want %d", tc.d, got, tc.want)
			}
		})
	}
}

func TestStoredKey(t *testing.T) {
	short := strings.Repeat("a", MaxKeyLen)
	long := strings.Repeat("a", 10000)
	tests := []struct {
		name    string
		key     string
		same    bool
		wantLen int
	}{
		{"empty_kept", "", true, 0},
		{"short_kept", "ip|10.0.0.1", true, 11},
		{"at_limit_kept", short, true, MaxKeyLen},
		{"long_digested", long, false, 140},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := storedKey(tc.key)
			if (got == tc.key) != tc.same || len(got) != tc.wantLen {
				t.Errorf("storedKey(len %d) = len %d (same %v), want len %d (same %v)", len(tc.key), len(got), got == tc.key, tc.wantLen, tc.same)
			}
		})
	}
	t.Run("long_keys_with_shared_prefix_differ", func(t *testing.T) {
		if storedKey(long+"x") == storedKey(long+"y") {
			t.Error("two long keys that differ only at the end share a stored key")
		}
	})
}

// limiterFactory makes a fresh limiter whose keys are not shared with any
// other limiter the factory made, plus a way to let time pass (nil when the
// limiter runs on a real clock).
type limiterFactory func(t *testing.T) (Limiter, func(time.Duration))

func memoryFactory(t *testing.T) (Limiter, func(time.Duration)) {
	clock := newFakeClock()
	m, err := NewMemory(MemoryOptions{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return m, clock.Advance
}

// testLimiterContract runs the behaviour every Limiter shares. Rates are
// long (an hour) so that a real clock refills nothing while it runs.
func testLimiterContract(t *testing.T, newLimiter limiterFactory) {
	ctx := context.Background()
	hourly := func(n int) Rate { return Rate{Count: n, Per: time.Hour} }

	t.Run("burst_of_count_then_refused", func(t *testing.T) {
		l, _ := newLimiter(t)
		rate := hourly(5)
		for i := range 5 {
			res, err := l.Take(ctx, "ip|192.0.2.1", rate)
			if err != nil || !res.Allowed {
				t.Fatalf("hit %d = %+v, %v; want allowed", i+1, res, err)
			}
		}
		res, err := l.Take(ctx, "ip|192.0.2.1", rate)
		if err != nil {
			t.Fatal(err)
		}
		interval := rate.Per / 5
		if res.Allowed || res.RetryAfter <= 0 || res.RetryAfter > interval {
			t.Fatalf("hit 6 = %+v; want refused with 0 < RetryAfter <= %v", res, interval)
		}
	})
	t.Run("keys_are_independent", func(t *testing.T) {
		l, _ := newLimiter(t)
		for _, key := range []string{"a", "b", "a|b", ""} {
			if res, err := l.Take(ctx, key, hourly(1)); err != nil || !res.Allowed {
				t.Fatalf("first hit on %q = %+v, %v; want allowed", key, res, err)
			}
		}
		if res, _ := l.Take(ctx, "a", hourly(1)); res.Allowed {
			t.Fatal("second hit on a allowed")
		}
	})
	t.Run("long_key_padding_attack_does_not_share_a_victims_counter", func(t *testing.T) {
		l, _ := newLimiter(t)
		prefix := "hdr|" + strings.Repeat("x", 4096)
		if res, _ := l.Take(ctx, prefix+"victim", hourly(1)); !res.Allowed {
			t.Fatal("victim's first hit refused")
		}
		if res, _ := l.Take(ctx, prefix+"attacker", hourly(1)); !res.Allowed {
			t.Fatal("a different long key with the same prefix shares the victim's counter")
		}
	})
	t.Run("invalid_rate_is_an_error", func(t *testing.T) {
		l, _ := newLimiter(t)
		res, err := l.Take(ctx, "k", Rate{Count: 0, Per: time.Second})
		if err == nil || res.Allowed || !strings.Contains(err.Error(), "rate of zero") {
			t.Fatalf("Take with a zero rate = %+v, %v; want refused with a 'rate of zero' error", res, err)
		}
	})
	t.Run("unbanned_key", func(t *testing.T) {
		l, _ := newLimiter(t)
		if d, err := l.Banned(ctx, "nobody"); d != 0 || err != nil {
			t.Fatalf("Banned = %v, %v; want 0, nil", d, err)
		}
	})
	t.Run("ban_then_banned", func(t *testing.T) {
		l, _ := newLimiter(t)
		if err := l.Ban(ctx, "user|mallory", time.Hour); err != nil {
			t.Fatal(err)
		}
		d, err := l.Banned(ctx, "user|mallory")
		if err != nil || d <= 59*time.Minute || d > time.Hour {
			t.Fatalf("Banned = %v, %v; want about an hour", d, err)
		}
		if d, _ := l.Banned(ctx, "user|alice"); d != 0 {
			t.Fatalf("another key is banned for %v", d)
		}
	})
	t.Run("shorter_ban_keeps_longer", func(t *testing.T) {
		l, _ := newLimiter(t)
		if err := l.Ban(ctx, "k", time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := l.Ban(ctx, "k", time.Minute); err != nil {
			t.Fatal(err)
		}
		if d, _ := l.Banned(ctx, "k"); d <= 59*time.Minute {
			t.Fatalf("after a shorter ban, Banned = %v; want the hour kept", d)
		}
		if err := l.Ban(ctx, "k", 2*time.Hour); err != nil {
			t.Fatal(err)
		}
		if d, _ := l.Banned(ctx, "k"); d <= time.Hour {
			t.Fatalf("after a longer ban, Banned = %v; want two hours", d)
		}
	})
	t.Run("nonpositive_ban_is_an_error", func(t *testing.T) {
		l, _ := newLimiter(t)
		for _, d := range []time.Duration{0, -time.Second} {
			if err := l.Ban(ctx, "k", d); err == nil {
				t.Errorf("Ban(%v) = nil, want an error", d)
			}
		}
		if d, _ := l.Banned(ctx, "k"); d != 0 {
			t.Errorf("a refused ban left the key banned for %v", d)
		}
	})
	t.Run("bans_expire", func(t *testing.T) {
		l, advance := newLimiter(t)
		if err := l.Ban(ctx, "k", 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if d, _ := l.Banned(ctx, "k"); d <= 0 {
			t.Fatal("not banned right after Ban")
		}
		if advance != nil {
			advance(100 * time.Millisecond)
		}
		pollUntil(t, func() bool { d, _ := l.Banned(ctx, "k"); return d == 0 }, "the ban to end")
	})
	t.Run("refill_after_the_interval", func(t *testing.T) {
		l, advance := newLimiter(t)
		rate := Rate{Count: 2, Per: 200 * time.Millisecond}
		l.Take(ctx, "k", rate)
		l.Take(ctx, "k", rate)
		if res, _ := l.Take(ctx, "k", rate); res.Allowed {
			t.Fatal("third hit allowed")
		}
		if advance != nil {
			advance(100 * time.Millisecond)
		}
		pollUntil(t, func() bool { res, _ := l.Take(ctx, "k", rate); return res.Allowed }, "a hit to be allowed again")
	})
}

// pollUntil waits, with a generous deadline, until ok returns true.
func pollUntil(t *testing.T, ok func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMemoryContract(t *testing.T) { testLimiterContract(t, memoryFactory) }

func FuzzMemoryTake(f *testing.F) {
	f.Add("ip|192.0.2.1", 5, int64(1000))
	f.Add("", 1, int64(1))
	f.Add(strings.Repeat("k", 300), 3, int64(60000))
	f.Add("hdr|\x00\xff", 0, int64(0))
	f.Add("x", -1, int64(-5))
	f.Fuzz(func(t *testing.T, key string, count int, perMs int64) {
		clock := newFakeClock()
		m, err := NewMemory(MemoryOptions{Now: clock.Now, MaxKeys: 64})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if sk := storedKey(key); len(sk) > 140 || (len(key) <= MaxKeyLen) != (sk == key) {
			t.Fatalf("storedKey(len %d) has len %d", len(key), len(sk))
		}
		rate := Rate{Count: count, Per: time.Duration(perMs) * time.Millisecond}
		if perMs > int64(MaxPer/time.Millisecond)+1 || perMs < -int64(MaxPer/time.Millisecond) {
			rate.Per = MaxPer + time.Millisecond
		}
		res, err := m.Take(ctx, key, rate)
		if rate.Validate() != nil {
			if err == nil || res.Allowed {
				t.Fatalf("invalid rate %v: Take = %+v, %v; want refused with an error", rate, res, err)
			}
			return
		}
		if err != nil || !res.Allowed {
			t.Fatalf("first hit under %v = %+v, %v; want allowed", rate, res, err)
		}
		if count > 200 {
			return
		}
		for i := 1; i < count; i++ {
			if res, _ := m.Take(ctx, key, rate); !res.Allowed {
				t.Fatalf("hit %d of a burst of %d refused", i+1, count)
			}
		}
		interval := rate.interval(time.Nanosecond)
		res, _ = m.Take(ctx, key, rate)
		if res.Allowed || res.RetryAfter != interval {
			t.Fatalf("hit %d under %v = %+v; want refused with RetryAfter %v", count+1, rate, res, interval)
		}
		if other, _ := m.Take(ctx, key+"\x00", rate); !other.Allowed {
			t.Fatal("another key shares the spent counter")
		}
		clock.Advance(res.RetryAfter - 1)
		if res, _ := m.Take(ctx, key, rate); res.Allowed || res.RetryAfter != 1 {
			t.Fatalf("a nanosecond early: %+v; want refused with RetryAfter 1ns", res)
		}
		clock.Advance(1)
		if res, _ := m.Take(ctx, key, rate); !res.Allowed {
			t.Fatal("refused after RetryAfter passed")
		}
	})
}
