package local

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/store"
)

var _ UnlockSource = (*store.SQLite)(nil)

// twoProcesses opens one database twice: the server's handle and the CLI's.
func twoProcesses(t *testing.T, users ...string) (server, cli *store.SQLite) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sekisho.db")
	var err error
	if server, err = store.OpenSQLite(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	if cli, err = store.OpenSQLite(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	for _, u := range users {
		if err := cli.CreateUser(context.Background(), store.User{Name: u}); err != nil {
			t.Fatal(err)
		}
	}
	return server, cli
}

// lockAccount fails alice's sign-in five times from five addresses.
func lockAccount(t *testing.T, h *harness, user string) {
	t.Helper()
	for i := range 5 {
		if _, err := h.a.Login(context.Background(), user, fmt.Sprintf("guess number %d", i), fmt.Sprintf("192.0.2.%d", i)); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("guess %d: err = %v, want ErrBadCredentials", i, err)
		}
	}
	if _, err := h.a.Login(context.Background(), user, goodPW, "198.51.100.1"); !errors.Is(err, ErrLocked) {
		t.Fatalf("after five failures: err = %v, want ErrLocked", err)
	}
}

func TestUnlockFromAnotherProcessClearsAccountLockout(t *testing.T) {
	h := newHarness(t, ThrottleOptions{})
	server, cli := twoProcesses(t, "alice")
	ctx := context.Background()
	p := &unlockPoller{t: h.a.throttle, src: server}
	if err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	lockAccount(t, h, "alice")
	if err := cli.UnlockUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.a.Login(ctx, "alice", goodPW, "198.51.100.1"); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
}

// TestUnlockDoesNotBypassAttackerIPLockout: an attacker who sprayed from
// one address and locked alice stays locked out at that address after an
// operator unlocks alice; only alice's own lock is lifted.
func TestUnlockDoesNotBypassAttackerIPLockout(t *testing.T) {
	h := newHarness(t, ThrottleOptions{}) // 5 per account, 20 per address
	server, cli := twoProcesses(t, "alice")
	ctx := context.Background()
	p := &unlockPoller{t: h.a.throttle, src: server}
	if err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	const attacker = "203.0.113.9"
	for i := range 20 {
		user := "alice"
		if i >= 5 {
			user = fmt.Sprintf("user%d", i)
		}
		h.a.Login(ctx, user, "Summer2026!!", attacker)
	}
	if err := cli.UnlockUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := h.a.Login(ctx, "alice", goodPW, attacker)
	var le *LockedError
	if !errors.As(err, &le) || le.Address == 0 || le.Account != 0 {
		t.Fatalf("attacker after unlock: err = %v (%+v); want the address still locked and the account not", err, le)
	}
	if _, err := h.a.Login(ctx, "alice", goodPW, "198.51.100.1"); err != nil {
		t.Errorf("alice from her own address after unlock: %v", err)
	}
}

// TestLockoutAfterUnlockOnNewFailures: unlock is no free pass for more
// guesses: five new failures lock the account again.
func TestLockoutAfterUnlockOnNewFailures(t *testing.T) {
	h := newHarness(t, ThrottleOptions{})
	server, cli := twoProcesses(t, "alice")
	ctx := context.Background()
	p := &unlockPoller{t: h.a.throttle, src: server}
	if err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	lockAccount(t, h, "alice")
	if err := cli.UnlockUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	lockAccount(t, h, "alice") // fails the test if the account does not lock again
	// The same unlock row is not applied twice.
	if err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.a.Login(ctx, "alice", goodPW, "198.51.100.1"); !errors.Is(err, ErrLocked) {
		t.Errorf("an old unlock was applied again: err = %v", err)
	}
}

// TestStaleUnlockDoesNotLiftNewLockout: an unlock written before the
// server started (yesterday's) must not clear a lockout an attacker
// causes after the start.
func TestStaleUnlockDoesNotLiftNewLockout(t *testing.T) {
	h := newHarness(t, ThrottleOptions{})
	server, cli := twoProcesses(t, "alice")
	ctx := context.Background()
	if err := cli.UnlockUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	p := &unlockPoller{t: h.a.throttle, src: server}
	if err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	lockAccount(t, h, "alice")
	if err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.a.Login(ctx, "alice", goodPW, "198.51.100.1"); !errors.Is(err, ErrLocked) {
		t.Errorf("a stale unlock lifted a new lockout: err = %v", err)
	}
}

// fakeUnlocks is an UnlockSource that reports when the poller has found
// its start, and can fail.
type fakeUnlocks struct {
	mu      sync.Mutex
	rows    []store.Unlock
	fail    error
	started chan struct{}
	once    sync.Once
}

func (f *fakeUnlocks) LatestUnlock(context.Context) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return 0, f.fail
	}
	defer f.once.Do(func() { close(f.started) })
	return int64(len(f.rows)), nil
}

func (f *fakeUnlocks) UnlocksSince(_ context.Context, seq int64) ([]store.Unlock, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	return append([]store.Unlock(nil), f.rows[seq:]...), nil
}

func (f *fakeUnlocks) add(user string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rows = append(f.rows, store.Unlock{Seq: int64(len(f.rows) + 1), User: user})
}

func TestPollUnlocksAppliesWithinAnInterval(t *testing.T) {
	h := newHarness(t, ThrottleOptions{})
	lockAccount(t, h, "alice")
	src := &fakeUnlocks{started: make(chan struct{})}
	src.add("bob") // before start: skipped
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.a.throttle.PollUnlocks(ctx, src, 10*time.Millisecond, nil, nil); close(done) }()
	defer func() { cancel(); <-done }()
	<-src.started
	src.add("alice")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if acct, _ := h.a.throttle.Locked("alice", "198.51.100.1"); acct == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("alice still locked 10s after the unlock was written")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPollUnlocksStoreFailureUnlocksNothing: a failing store leaves every
// lockout in place, and the poller stops when asked.
func TestPollUnlocksStoreFailureUnlocksNothing(t *testing.T) {
	h := newHarness(t, ThrottleOptions{})
	lockAccount(t, h, "alice")
	src := &fakeUnlocks{started: make(chan struct{}), fail: errors.New("disk I/O error")}
	p := &unlockPoller{t: h.a.throttle, src: src}
	for range 3 {
		if err := p.sync(context.Background()); err == nil {
			t.Fatal("sync with a failing store returned no error")
		}
	}
	if acct, _ := h.a.throttle.Locked("alice", "198.51.100.1"); acct == 0 {
		t.Error("a failing store unlocked alice")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.a.throttle.PollUnlocks(ctx, src, time.Millisecond, nil, nil) // returns: ctx is done
	var nilT *Throttle
	nilT.PollUnlocks(context.Background(), src, time.Millisecond, nil, nil) // returns at once
}

func TestLockedErrorMessageStatesTheRealWait(t *testing.T) {
	for _, tc := range []struct {
		name             string
		account, address time.Duration
		want             string
	}{
		{"account_14_minutes", 13*time.Minute + 20*time.Second, 0, "Too many failed sign-in attempts for this account. Try again in 14 minutes."},
		{"address_1_minute", 0, time.Minute, "Too many failed sign-in attempts from your network. Try again in 1 minute."},
		{"address_seconds", 0, 40 * time.Second, "Too many failed sign-in attempts from your network. Try again in 40 seconds."},
		{"both_the_longer_wait", 2 * time.Minute, 9 * time.Minute, "Too many failed sign-in attempts for this account and from your network. Try again in 9 minutes."},
		{"under_a_second", 300 * time.Millisecond, 0, "Too many failed sign-in attempts for this account. Try again in 1 second."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &LockedError{RetryAfter: max(tc.account, tc.address), Account: tc.account, Address: tc.address}
			if got := e.Message(); got != tc.want {
				t.Errorf("Message() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLoginLockedErrorNamesWhichLock(t *testing.T) {
	h := newHarness(t, ThrottleOptions{})
	lockAccount(t, h, "alice")
	h.clk.Advance(time.Minute)
	_, err := h.a.Login(context.Background(), "alice", goodPW, "198.51.100.1")
	var le *LockedError
	if !errors.As(err, &le) || le.Account != 14*time.Minute || le.Address != 0 || le.RetryAfter != 14*time.Minute {
		t.Fatalf("err = %v (%+v); want the account locked for 14m, the address not", err, le)
	}
	if want := "Try again in 14 minutes."; !strings.Contains(le.Message(), want) {
		t.Errorf("Message() = %q, want %q", le.Message(), want)
	}
}
