package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func newTestMemory(t testing.TB, opts MemoryOptions) (*Memory, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	m, err := NewMemory(opts)
	if err != nil {
		t.Fatal(err)
	}
	return m, clock
}

// TestMemoryGCRAExact follows one key through a scripted timeline on a fake
// clock and compares every result with what GCRA prescribes.
func TestMemoryGCRAExact(t *testing.T) {
	ctx := context.Background()
	ok := Result{Allowed: true}
	no := func(d time.Duration) Result { return Result{RetryAfter: d} }
	type step struct {
		advance time.Duration // before the hit
		want    Result
	}
	tests := []struct {
		name  string
		rate  Rate
		steps []step
	}{
		{
			name: "three_per_three_seconds",
			rate: Rate{Count: 3, Per: 3 * time.Second},
			steps: []step{
				{0, ok}, {0, ok}, {0, ok}, // the burst
				{0, no(time.Second)}, // refused: one interval to wait
				{400 * time.Millisecond, no(600 * time.Millisecond)}, // the remainder
				{600 * time.Millisecond, ok},                         // exactly one earned back
				{0, no(time.Second)},
				{3 * time.Second, ok}, {0, ok}, {0, ok}, // a full refill
				{0, no(time.Second)},
			},
		},
		{
			name: "one_per_minute",
			rate: Rate{Count: 1, Per: time.Minute},
			steps: []step{
				{0, ok},
				{time.Second, no(59 * time.Second)},
				{59*time.Second - 1, no(1)},
				{1, ok},
			},
		},
		{
			name: "refused_hits_are_not_counted",
			rate: Rate{Count: 2, Per: 2 * time.Second},
			steps: []step{
				{0, ok}, {0, ok},
				{0, no(time.Second)}, {0, no(time.Second)}, {0, no(time.Second)},
				{time.Second, ok},
			},
		},
		{
			name: "idle_time_does_not_bank_more_than_a_burst",
			rate: Rate{Count: 2, Per: 2 * time.Second},
			steps: []step{
				{time.Hour, ok}, {0, ok},
				{0, no(time.Second)},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, clock := newTestMemory(t, MemoryOptions{})
			var got, want []Result
			for _, s := range tc.steps {
				clock.Advance(s.advance)
				res, err := m.Take(ctx, "k", tc.rate)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, res)
				want = append(want, s.want)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMemoryBansExpire(t *testing.T) {
	ctx := context.Background()
	m, clock := newTestMemory(t, MemoryOptions{})
	if err := m.Ban(ctx, "ip|198.51.100.7", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	var got []time.Duration
	for _, adv := range []time.Duration{0, 9 * time.Second, time.Second, time.Hour} {
		clock.Advance(adv)
		d, err := m.Banned(ctx, "ip|198.51.100.7")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, d)
	}
	want := []time.Duration{10 * time.Second, time.Second, 0, 0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("remaining ban (-want +got):\n%s", diff)
	}
	if n := m.Prune(); n != 1 {
		t.Errorf("Prune dropped %d entries, want the 1 expired ban", n)
	}
}

func TestMemoryOptions(t *testing.T) {
	tests := []struct {
		name string
		opts MemoryOptions
		err  bool
	}{
		{"defaults", MemoryOptions{}, false},
		{"tiny", MemoryOptions{MaxKeys: 1}, false},
		{"negative_max_keys", MemoryOptions{MaxKeys: -1}, true},
		{"negative_janitor", MemoryOptions{JanitorInterval: -time.Second}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewMemory(tc.opts)
			if (err != nil) != tc.err {
				t.Fatalf("NewMemory(%+v) error = %v, want error %v", tc.opts, err, tc.err)
			}
		})
	}
}

// TestMemoryBoundedUnderKeySpraying pins that a client inventing a new key
// per request (rotating spoofed header values, addresses, long junk) cannot
// grow memory past MaxKeys, and that bans outlive the spraying.
func TestMemoryBoundedUnderKeySpraying(t *testing.T) {
	ctx := context.Background()
	const maxKeys = 1000
	hourly := Rate{Count: 10, Per: time.Hour}

	t.Run("key_rotation_attack_bounded_memory", func(t *testing.T) {
		m, _ := newTestMemory(t, MemoryOptions{MaxKeys: maxKeys})
		for i := range 100 * maxKeys {
			m.Take(ctx, "hdr|x-api-key|"+strconv.Itoa(i), hourly)
		}
		if rates, _ := m.Len(); rates > maxKeys || rates < maxKeys/2 {
			t.Fatalf("after spraying %d keys, %d counters are held; want at most %d (and most of them)", 100*maxKeys, rates, maxKeys)
		}
	})
	t.Run("ban_rotation_attack_bounded_memory", func(t *testing.T) {
		m, _ := newTestMemory(t, MemoryOptions{MaxKeys: maxKeys})
		for i := range 100 * maxKeys {
			m.Ban(ctx, "ip|"+strconv.Itoa(i), time.Minute)
		}
		if _, bans := m.Len(); bans > maxKeys {
			t.Fatalf("%d bans held, want at most %d", bans, maxKeys)
		}
	})
	t.Run("counter_spraying_cannot_evict_a_ban", func(t *testing.T) {
		m, _ := newTestMemory(t, MemoryOptions{MaxKeys: maxKeys})
		m.Ban(ctx, "ip|203.0.113.9", time.Hour)
		for i := range 100 * maxKeys {
			m.Take(ctx, "ip|"+strconv.Itoa(i), hourly)
		}
		if d, _ := m.Banned(ctx, "ip|203.0.113.9"); d != time.Hour {
			t.Fatalf("ban after spraying counters = %v, want 1h", d)
		}
	})
	t.Run("short_ban_spraying_evicts_soonest_ending_not_the_long_ban", func(t *testing.T) {
		m, _ := newTestMemory(t, MemoryOptions{MaxKeys: maxKeys})
		m.Ban(ctx, "ip|203.0.113.9", time.Hour)
		for i := range 100 * maxKeys {
			m.Ban(ctx, "ip|"+strconv.Itoa(i), time.Second)
		}
		if d, _ := m.Banned(ctx, "ip|203.0.113.9"); d != time.Hour {
			t.Fatalf("long ban after spraying short bans = %v, want 1h", d)
		}
	})
	t.Run("spraying_evicts_expired_before_live", func(t *testing.T) {
		m, clock := newTestMemory(t, MemoryOptions{MaxKeys: 16}) // one shard
		m.Take(ctx, "live", Rate{Count: 1, Per: time.Hour})
		for i := range 15 {
			m.Take(ctx, "old"+strconv.Itoa(i), Rate{Count: 1, Per: time.Second})
		}
		clock.Advance(time.Minute)
		for i := range 15 {
			m.Take(ctx, "new"+strconv.Itoa(i), Rate{Count: 1, Per: time.Second})
		}
		if res, _ := m.Take(ctx, "live", Rate{Count: 1, Per: time.Hour}); res.Allowed {
			t.Fatal("a live counter was evicted while expired ones were held")
		}
	})
	t.Run("long_keys_stored_bounded", func(t *testing.T) {
		m, _ := newTestMemory(t, MemoryOptions{MaxKeys: 16})
		big := string(make([]byte, 1<<16))
		for i := range 100 {
			m.Take(ctx, big+strconv.Itoa(i), hourly)
		}
		for i := range m.rates {
			for k := range m.rates[i].m {
				if len(k) > 140 {
					t.Fatalf("a stored key is %d bytes", len(k))
				}
			}
		}
	})
}

func TestMemoryPruneAndRun(t *testing.T) {
	ctx := context.Background()
	m, clock := newTestMemory(t, MemoryOptions{JanitorInterval: time.Millisecond})
	for i := range 500 {
		m.Take(ctx, fmt.Sprint("k", i), Rate{Count: 1, Per: time.Second})
		m.Ban(ctx, fmt.Sprint("k", i), time.Second)
	}
	m.Take(ctx, "live", Rate{Count: 1, Per: time.Hour})
	if r, b := m.Len(); r != 501 || b != 500 {
		t.Fatalf("Len = %d, %d; want 501, 500", r, b)
	}
	clock.Advance(time.Second)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	pollUntil(t, func() bool { r, b := m.Len(); return r == 1 && b == 0 }, "the janitor to prune expired entries")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if res, _ := m.Take(ctx, "live", Rate{Count: 1, Per: time.Hour}); res.Allowed {
		t.Fatal("the janitor dropped a live counter")
	}
}

// TestMemoryConcurrent hammers one key and many keys from many goroutines;
// with the clock frozen exactly Count hits per key get through. Run with -race.
func TestMemoryConcurrent(t *testing.T) {
	ctx := context.Background()
	m, _ := newTestMemory(t, MemoryOptions{})
	rate := Rate{Count: 100, Per: time.Minute}
	const workers, hits, keys = 8, 500, 4
	var allowed [keys]atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range hits {
				k := (w + i) % keys
				res, err := m.Take(ctx, "k"+strconv.Itoa(k), rate)
				if err != nil {
					t.Error(err)
					return
				}
				if res.Allowed {
					allowed[k].Add(1)
				}
				m.Banned(ctx, "k"+strconv.Itoa(k))
				if i%50 == 0 {
					m.Ban(ctx, "b"+strconv.Itoa(w), time.Minute)
					m.Prune()
				}
			}
		})
	}
	wg.Wait()
	for k := range keys {
		if got := allowed[k].Load(); got != int64(rate.Count) {
			t.Errorf("key %d: %d hits allowed, want exactly %d", k, got, rate.Count)
		}
	}
}

func BenchmarkMemoryTake(b *testing.B) {
	ctx := context.Background()
	m, err := NewMemory(MemoryOptions{})
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = "ip|10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256)
	}
	rate := Rate{Count: 1000, Per: time.Second}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := m.Take(ctx, keys[i%len(keys)], rate); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
