package ratelimit

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sekisho/sekisho/internal/testenv/redistest"
)

// newRedisClient connects the way the gateway should: context deadlines
// bound reads, no retries.
func newRedisClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c
}

var prefixSeq atomic.Int64

// uniquePrefix keeps subtests sharing one server apart.
func uniquePrefix() string { return fmt.Sprintf("test%d:", prefixSeq.Add(1)) }

func newTestRedis(t testing.TB, addr, prefix string, failOpen bool) *Redis {
	t.Helper()
	r, err := NewRedis(RedisOptions{
		Client:   newRedisClient(t, addr),
		Prefix:   prefix,
		Timeout:  2 * time.Second, // generous: the machine is shared
		FailOpen: failOpen,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRedisContract(t *testing.T) {
	srv := redistest.Start(t)
	testLimiterContract(t, func(t *testing.T) (Limiter, func(time.Duration)) {
		return newTestRedis(t, srv.Addr, uniquePrefix(), false), nil
	})
}

func TestRedisOptions(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	tests := []struct {
		name string
		opts RedisOptions
		err  string
	}{
		{"defaults", RedisOptions{Client: c}, ""},
		{"no_client", RedisOptions{}, "no client"},
		{"negative_timeout", RedisOptions{Client: c, Timeout: -1}, "timeout -1ns is negative"},
		{"negative_local_max_keys", RedisOptions{Client: c, LocalMaxKeys: -1}, "local_max_keys -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewRedis(tc.opts)
			if tc.err == "" {
				if err != nil || r.prefix != DefaultRedisPrefix || r.timeout != DefaultRedisTimeout {
					t.Fatalf("NewRedis = %+v, %v; want the defaults", r, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("NewRedis error = %v, want one containing %q", err, tc.err)
			}
		})
	}
}

func TestRedisShared(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	admin := newRedisClient(t, srv.Addr)

	t.Run("two_replicas_share_limit", func(t *testing.T) {
		prefix := uniquePrefix()
		a := newTestRedis(t, srv.Addr, prefix, false)
		b := newTestRedis(t, srv.Addr, prefix, false)
		rate := Rate{Count: 10, Per: time.Hour}
		allowed := 0
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, l := range []*Redis{a, b, a, b} {
			wg.Go(func() {
				for range 10 {
					res, err := l.Take(ctx, "user|alice", rate)
					if err != nil {
						t.Error(err)
						return
					}
					if res.Allowed {
						mu.Lock()
						allowed++
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		if allowed != rate.Count {
			t.Fatalf("two replicas together allowed %d hits, want exactly %d", allowed, rate.Count)
		}
	})
	t.Run("skewed_replica_clocks_agree", func(t *testing.T) {
		prefix := uniquePrefix()
		var ls []*Redis
		for _, skew := range []time.Duration{-time.Hour, time.Hour} {
			r, err := NewRedis(RedisOptions{Client: newRedisClient(t, srv.Addr), Prefix: prefix,
				Timeout: 2 * time.Second, Now: func() time.Time { return time.Now().Add(skew) }})
			if err != nil {
				t.Fatal(err)
			}
			ls = append(ls, r)
		}
		rate := Rate{Count: 1, Per: time.Hour}
		if res, _ := ls[0].Take(ctx, "k", rate); !res.Allowed {
			t.Fatal("first hit refused")
		}
		if res, _ := ls[1].Take(ctx, "k", rate); res.Allowed {
			t.Fatal("a replica whose clock runs two hours ahead got a fresh burst")
		}
	})
	t.Run("ban_visible_to_other_replica", func(t *testing.T) {
		prefix := uniquePrefix()
		a := newTestRedis(t, srv.Addr, prefix, false)
		b := newTestRedis(t, srv.Addr, prefix, false)
		if err := a.Ban(ctx, "ip|198.51.100.1", time.Hour); err != nil {
			t.Fatal(err)
		}
		if d, err := b.Banned(ctx, "ip|198.51.100.1"); err != nil || d <= 59*time.Minute {
			t.Fatalf("other replica: Banned = %v, %v; want about an hour", d, err)
		}
	})
	t.Run("shorter_ban_from_another_replica_keeps_longer", func(t *testing.T) {
		prefix := uniquePrefix()
		a := newTestRedis(t, srv.Addr, prefix, false)
		b := newTestRedis(t, srv.Addr, prefix, false)
		if err := a.Ban(ctx, "k", time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := b.Ban(ctx, "k", time.Minute); err != nil {
			t.Fatal(err)
		}
		fresh := newTestRedis(t, srv.Addr, prefix, false)
		if d, err := fresh.Banned(ctx, "k"); err != nil || d <= 59*time.Minute {
			t.Fatalf("third replica: Banned = %v, %v; want the hour kept", d, err)
		}
	})
	t.Run("keys_expire", func(t *testing.T) {
		prefix := uniquePrefix()
		l := newTestRedis(t, srv.Addr, prefix, false)
		if _, err := l.Take(ctx, "k", Rate{Count: 2, Per: 10 * time.Second}); err != nil {
			t.Fatal(err)
		}
		if err := l.Ban(ctx, "k", time.Minute); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			key      string
			min, max time.Duration
		}{
			{prefix + "t:k", 4 * time.Second, 5 * time.Second}, // one hit of 2 per 10s: TAT now+5s
			{prefix + "b:k", 50 * time.Second, time.Minute},
		} {
			ttl, err := admin.PTTL(ctx, tc.key).Result()
			if err != nil || ttl < tc.min || ttl > tc.max {
				t.Errorf("PTTL %s = %v, %v; want in [%v, %v]", tc.key, ttl, err, tc.min, tc.max)
			}
		}
		l.Take(ctx, "short", Rate{Count: 1, Per: 50 * time.Millisecond})
		pollUntil(t, func() bool { return admin.Exists(ctx, prefix+"t:short").Val() == 0 }, "the counter key to expire")
	})
	t.Run("script_reload_after_script_flush", func(t *testing.T) {
		l := newTestRedis(t, srv.Addr, uniquePrefix(), false)
		rate := Rate{Count: 3, Per: time.Hour}
		var got []bool
		for i := range 4 {
			if i == 1 {
				if err := admin.ScriptFlush(ctx).Err(); err != nil {
					t.Fatal(err)
				}
			}
			res, err := l.Take(ctx, "k", rate)
			if err != nil {
				t.Fatalf("hit %d: %v", i+1, err)
			}
			got = append(got, res.Allowed)
		}
		if want := []bool{true, true, true, false}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("allowed = %v, want %v (the count survives the flush)", got, want)
		}
		if ok, err := admin.ScriptExists(ctx, takeScript.Hash()).Result(); err != nil || !ok[0] {
			t.Fatalf("SCRIPT EXISTS after reload = %v, %v; want loaded", ok, err)
		}
	})
	t.Run("retry_after_from_server_time", func(t *testing.T) {
		l := newTestRedis(t, srv.Addr, uniquePrefix(), false)
		rate := Rate{Count: 1, Per: time.Minute}
		l.Take(ctx, "k", rate)
		res, err := l.Take(ctx, "k", rate)
		if err != nil || res.Allowed || res.RetryAfter < 50*time.Second || res.RetryAfter > time.Minute {
			t.Fatalf("second hit = %+v, %v; want refused with RetryAfter just under a minute", res, err)
		}
	})
}

// TestRedisDown stops the server mid-test and checks both failure modes.
func TestRedisDown(t *testing.T) {
	ctx := context.Background()
	rate := Rate{Count: 2, Per: time.Hour}
	tests := []struct {
		name     string
		failOpen bool
	}{
		{"redis_down_fail_closed", false},
		{"redis_down_fail_open", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			prefix := uniquePrefix()
			setter := newTestRedis(t, srv.Addr, prefix, tc.failOpen)
			seer := newTestRedis(t, srv.Addr, prefix, tc.failOpen)
			if err := setter.Ban(ctx, "ip|192.0.2.66", time.Hour); err != nil {
				t.Fatal(err)
			}
			if d, err := seer.Banned(ctx, "ip|192.0.2.66"); err != nil || d <= 0 {
				t.Fatalf("before the outage: Banned = %v, %v", d, err)
			}
			srv.Stop()

			// Bans known on this replica hold whatever FailOpen says.
			for name, l := range map[string]*Redis{"setter": setter, "seer": seer} {
				if d, err := l.Banned(ctx, "ip|192.0.2.66"); err != nil || d <= 59*time.Minute {
					t.Errorf("%s during the outage: Banned = %v, %v; want the known ban", name, d, err)
				}
			}
			d, err := seer.Banned(ctx, "ip|192.0.2.99")
			if tc.failOpen {
				if err != nil || d != 0 {
					t.Errorf("unknown key: Banned = %v, %v; want 0, nil", d, err)
				}
			} else if err == nil {
				t.Errorf("unknown key: Banned = %v, nil; want an error", d)
			}
			err = seer.Ban(ctx, "ip|192.0.2.77", time.Hour)
			if (err == nil) != tc.failOpen {
				t.Errorf("Ban during the outage = %v; want error %v", err, !tc.failOpen)
			}
			if d, _ := seer.Banned(ctx, "ip|192.0.2.77"); d <= 0 {
				t.Errorf("a ban set during the outage is not kept on this replica")
			}

			var got []Result
			for range 3 {
				res, err := seer.Take(ctx, "ip|192.0.2.1", rate)
				if (err == nil) != tc.failOpen {
					t.Errorf("Take during the outage error = %v; want error %v", err, !tc.failOpen)
				}
				got = append(got, Result{Allowed: res.Allowed, RetryAfter: min(res.RetryAfter, time.Second)})
			}
			want := []Result{{RetryAfter: time.Second}, {RetryAfter: time.Second}, {RetryAfter: time.Second}}
			if tc.failOpen { // the local fallback limit
				want = []Result{{Allowed: true}, {Allowed: true}, {RetryAfter: time.Second}}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("Take during the outage = %+v, want %+v", got, want)
			}
		})
	}
}

// TestRedisSlowServerTimesOut points the limiter at a listener that accepts
// and never answers: Take must give up after Timeout, not hang.
func TestRedisSlowServerTimesOut(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	defer func() {
		l.Close()
		<-accepted
		for _, c := range conns {
			c.Close()
		}
	}()
	c := redis.NewClient(&redis.Options{Addr: l.Addr().String(), ContextTimeoutEnabled: true,
		MaxRetries: -1, Protocol: 2, DisableIdentity: true})
	defer c.Close()
	r, err := NewRedis(RedisOptions{Client: c, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		res, err := r.Take(context.Background(), "k", Rate{Count: 1, Per: time.Second})
		if res.Allowed {
			err = fmt.Errorf("allowed: %w", err)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || strings.HasPrefix(err.Error(), "allowed") {
			t.Fatalf("Take on a silent server = %v; want a refusal with an error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Take on a silent server never returned")
	}
}

func BenchmarkRedisTake(b *testing.B) {
	srv := redistest.Start(b)
	r := newTestRedis(b, srv.Addr, uniquePrefix(), false)
	ctx := context.Background()
	rate := Rate{Count: 1000, Per: time.Second}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := r.Take(ctx, "ip|10.0.0."+strconv.Itoa(i%256), rate); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
