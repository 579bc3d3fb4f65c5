package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/testclock"
)

// fakeClock is the settable test clock.
type fakeClock = testclock.Clock

func newClock() *fakeClock { return testclock.New(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)) }

func TestThrottleAccountLockoutAndRelease(t *testing.T) {
	clk := newClock()
	th := NewThrottle(ThrottleOptions{Now: clk.Now}) // defaults: 5 / 15m / 15m
	for i := range 4 {
		th.Fail("alice", fmt.Sprintf("192.0.2.%d", i))
		if ok, _ := th.Allowed("alice", "198.51.100.1"); !ok {
			t.Fatalf("locked after %d failures, want 5", i+1)
		}
	}
	th.Fail("alice", "192.0.2.9")
	for _, tc := range []struct {
		name      string
		advance   time.Duration
		user, ip  string
		wantOK    bool
		wantRetry time.Duration
	}{
		{"locked from any address", 0, "alice", "203.0.113.7", false, 15 * time.Minute},
		{"other account unaffected", 0, "bob", "203.0.113.7", true, 0},
		{"still locked a second before release", 15*time.Minute - time.Second, "alice", "203.0.113.7", false, time.Second},
		{"released after lockout", time.Second, "alice", "203.0.113.7", true, 0},
	} {
		clk.Advance(tc.advance)
		t.Run(tc.name, func(t *testing.T) {
			ok, retry := th.Allowed(tc.user, tc.ip)
			if ok != tc.wantOK || retry != tc.wantRetry {
				t.Errorf("Allowed(%q, %q) = %v, %v; want %v, %v", tc.user, tc.ip, ok, retry, tc.wantOK, tc.wantRetry)
			}
		})
	}
	// After release the count starts over: one more failure does not relock.
	th.Fail("alice", "192.0.2.1")
	if ok, _ := th.Allowed("alice", "192.0.2.1"); !ok {
		t.Error("one failure after release relocked the account")
	}
}

func TestThrottleWindowForgetsOldFailures(t *testing.T) {
	clk := newClock()
	th := NewThrottle(ThrottleOptions{Now: clk.Now, MaxFailures: 3, Window: time.Minute})
	th.Fail("alice", "192.0.2.1")
	th.Fail("alice", "192.0.2.1")
	clk.Advance(time.Minute)
	th.Fail("alice", "192.0.2.1")
	th.Fail("alice", "192.0.2.1")
	if ok, _ := th.Allowed("alice", "192.0.2.1"); !ok {
		t.Error("failures from an expired window counted toward the lockout")
	}
	th.Fail("alice", "192.0.2.1")
	if ok, _ := th.Allowed("alice", "192.0.2.1"); ok {
		t.Error("three failures within the window did not lock")
	}
}

func TestThrottleSucceedClearsAccountNotAddress(t *testing.T) {
	clk := newClock()
	th := NewThrottle(ThrottleOptions{Now: clk.Now, MaxFailures: 3, IPMaxFailures: 4})
	th.Fail("alice", "192.0.2.1")
	th.Fail("alice", "192.0.2.1")
	th.Succeed("alice", "192.0.2.1")
	th.Fail("alice", "192.0.2.1")
	th.Fail("alice", "192.0.2.1")
	if ok, _ := th.Allowed("alice", "198.51.100.1"); !ok {
		t.Error("Succeed did not clear the account count")
	}
	// The address has 4 failures despite the success in between: locked.
	if ok, _ := th.Allowed("carol", "192.0.2.1"); ok {
		t.Error("Succeed reset the address count; a valid account would let an attacker keep guessing")
	}
}

// TestThrottlePasswordSprayingLocksAddress: one guess at each of many
// accounts never trips an account lock, but trips the address lock.
func TestThrottlePasswordSprayingLocksAddress(t *testing.T) {
	clk := newClock()
	th := NewThrottle(ThrottleOptions{Now: clk.Now})
	for i := range 20 {
		if ok, _ := th.Allowed(fmt.Sprintf("user%d", i), "2001:db8:1:2::1"); !ok {
			t.Fatalf("address locked after %d failures, want 20", i)
		}
		th.Fail(fmt.Sprintf("user%d", i), "2001:db8:1:2::1")
	}
	for _, tc := range []struct {
		name   string
		ip     string
		wantOK bool
	}{
		{"same address", "2001:db8:1:2::1", false},
		{"rotating within the /64", "2001:db8:1:2:ffff:ffff:ffff:ffff", false},
		{"another /64", "2001:db8:1:3::1", true},
		{"an IPv4 client", "192.0.2.1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ok, _ := th.Allowed("fresh-user", tc.ip); ok != tc.wantOK {
				t.Errorf("Allowed from %s = %v, want %v", tc.ip, ok, tc.wantOK)
			}
		})
	}
}

func TestIPKey(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"ipv4", "192.0.2.1", "192.0.2.1"},
		{"ipv4 with port", "192.0.2.1:443", "192.0.2.1"},
		{"ipv4-mapped ipv6 is the ipv4 address", "::ffff:192.0.2.1", "192.0.2.1"},
		{"ipv6 keyed on /64", "2001:db8:aa:bb:1:2:3:4", "2001:db8:aa:bb::/64"},
		{"ipv6 with port", "[2001:db8:aa:bb::9]:443", "2001:db8:aa:bb::/64"},
		{"ipv6 zone dropped", "fe80::1%eth0", "fe80::/64"},
		{"loopback v6", "::1", "::/64"},
		{"garbage shares one key", "not-an-ip", "invalid"},
		{"empty shares one key", "", "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IPKey(tc.in); got != tc.want {
				t.Errorf("IPKey(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestThrottleMemoryBound: an attacker spraying made-up user names from many
// addresses cannot grow the throttle past MaxEntries, and a user-name flood
// cannot evict an address's lock.
func TestThrottleMemoryBound(t *testing.T) {
	clk := newClock()
	th := NewThrottle(ThrottleOptions{Now: clk.Now, MaxEntries: 100, IPMaxFailures: 3})
	for range 3 {
		th.Fail("", "198.51.100.66")
	}
	for i := range 10_000 {
		th.Fail(fmt.Sprintf("spray-%d", i), fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
	}
	users, ips := th.Len()
	if users > 100 || ips > 100 {
		t.Errorf("Len() = %d users, %d addresses; want at most 100 each", users, ips)
	}
	if users != 100 {
		t.Errorf("Len() users = %d, want the cap of 100 filled", users)
	}
	// The locked address was least recently touched, so address churn evicts
	// it; but a user-name flood from one address must not.
	th2 := NewThrottle(ThrottleOptions{Now: clk.Now, MaxEntries: 100, IPMaxFailures: 3})
	for range 3 {
		th2.Fail("", "198.51.100.66")
	}
	for i := range 10_000 {
		th2.Fail(fmt.Sprintf("spray-%d", i), "203.0.113.1")
	}
	if ok, _ := th2.Allowed("x", "198.51.100.66"); ok {
		t.Error("a flood of user names evicted an address lock")
	}
}

func TestNilThrottleAllowsEverything(t *testing.T) {
	var th *Throttle
	th.Fail("a", "192.0.2.1")
	th.Succeed("a", "192.0.2.1")
	if ok, retry := th.Allowed("a", "192.0.2.1"); !ok || retry != 0 {
		t.Errorf("nil Allowed = %v, %v", ok, retry)
	}
}

type brokenShared struct{}

func (brokenShared) Fail(context.Context, string, time.Duration, time.Duration, int) (time.Duration, error) {
	return 0, errors.New("redis: connection refused")
}
func (brokenShared) LockedFor(context.Context, string) (time.Duration, error) {
	return 0, errors.New("redis: connection refused")
}
func (brokenShared) Clear(context.Context, string) error {
	return errors.New("redis: connection refused")
}

// The attack: knock the shared counter (Redis) over, then guess passwords
// freely. The replica's own counts still lock the account.
func TestThrottleLocksOnItsOwnWhileSharedFails(t *testing.T) {
	th := NewThrottle(ThrottleOptions{MaxFailures: 3, Shared: brokenShared{}, Logger: slog.New(slog.DiscardHandler)})
	for i := 0; i < 3; i++ {
		if ok, _ := th.Allowed("bob", "192.0.2.1"); !ok {
			t.Fatalf("guess %d refused before the limit", i)
		}
		th.Fail("bob", "192.0.2.1")
	}
	if ok, _ := th.Allowed("bob", "192.0.2.1"); ok {
		t.Fatal("with the shared counter down, three failures did not lock the account")
	}
}
