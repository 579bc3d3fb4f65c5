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

	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/store"
)

var _ UserGetter = (*store.SQLite)(nil)

// memStore is a UserGetter over a map that counts lookups.
type memStore struct {
	mu    sync.Mutex
	users map[string]store.User
	err   error
	calls int
}

func (m *memStore) GetUser(_ context.Context, name string) (store.User, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.err != nil {
		return store.User{}, m.err
	}
	u, ok := m.users[name]
	if !ok {
		return store.User{}, fmt.Errorf("get user %q: %w", name, store.ErrNotFound)
	}
	return u, nil
}

const goodPW = "correct horse battery staple"

type harness struct {
	a        *Authenticator
	st       *memStore
	clk      *fakeClock
	verifies []string // hashes passed to verify
}

func newHarness(t *testing.T, opts ThrottleOptions) *harness {
	t.Helper()
	h := &harness{clk: newClock()}
	h.st = &memStore{users: map[string]store.User{
		"alice": {Name: "alice", Email: "alice@example.com", Groups: []string{"admins"}, PasswordHash: mustHashWith(t, goodPW, cheap)},
		"dis":   {Name: "dis", PasswordHash: mustHashWith(t, goodPW, cheap), Disabled: true},
		"nopw":  {Name: "nopw"},
		"tamp":  {Name: "tamp", PasswordHash: "$argon2id$v=19$m=4194304,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA"},
	}}
	for i := range 30 {
		n := fmt.Sprintf("user%d", i)
		h.st.users[n] = store.User{Name: n, PasswordHash: mustHashWith(t, goodPW, cheap)}
	}
	opts.Now = h.clk.Now
	a, err := NewAuthenticator(h.st, NewThrottle(opts), h.clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	a.verify = func(hash, pw string) (bool, error) {
		h.verifies = append(h.verifies, hash)
		return Verify(hash, pw)
	}
	h.a = a
	return h
}

func TestLogin(t *testing.T) {
	h := newHarness(t, ThrottleOptions{MaxFailures: 100, IPMaxFailures: 100})
	ctx := context.Background()
	t.Run("success", func(t *testing.T) {
		got, err := h.a.Login(ctx, "Alice", goodPW, "192.0.2.1")
		if err != nil {
			t.Fatal(err)
		}
		want := identity.Identity{Kind: identity.Session, User: "alice", Email: "alice@example.com",
			Groups: []string{"admins"}, Provider: "local", AuthTime: h.clk.Now()}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("identity (-want +got):\n%s", diff)
		}
	})
	for _, tc := range []struct {
		name         string
		user, pw     string
		wantCause    string
		wantVerifies int // argon2 verifications spent, to keep timing uniform
		wantDummy    bool
	}{
		{"wrong password", "alice", "wrong password!!", "wrong password", 1, false},
		{"unknown user (enumeration)", "mallory", goodPW, "no local user", 1, true},
		{"disabled user with right password", "dis", goodPW, "disabled", 1, false},
		{"user without password", "nopw", "", "no password set", 1, true},
		{"invalid user name", "al ice", goodPW, "not allowed", 1, true},
		{"oversize user name", strings.Repeat("a", 10_000), goodPW, "longer than 64", 1, true},
		{"oversize password (hashing DoS)", "alice", strings.Repeat("a", 1<<20), "longer than 256", 0, false},
		{"tampered hash params", "tamp", goodPW, "above the limits", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.verifies = nil
			id, err := h.a.Login(ctx, tc.user, tc.pw, "192.0.2.1")
			if !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("err = %v, want ErrBadCredentials", err)
			}
			if errors.Is(err, ErrLocked) {
				t.Errorf("err = %v is also ErrLocked", err)
			}
			if !strings.Contains(err.Error(), tc.wantCause) {
				t.Errorf("err = %q, want the internal cause %q for the log", err, tc.wantCause)
			}
			if id.Authenticated() {
				t.Errorf("identity %+v returned with an error", id)
			}
			if len(h.verifies) != tc.wantVerifies {
				t.Errorf("%d argon2 verifications, want %d", len(h.verifies), tc.wantVerifies)
			}
			if tc.wantDummy && (len(h.verifies) != 1 || h.verifies[0] != h.a.dummy) {
				t.Errorf("did not spend a verification on the dummy hash")
			}
		})
	}
}

func TestLoginStoreFailureIsNotBadCredentials(t *testing.T) {
	h := newHarness(t, ThrottleOptions{})
	h.st.err = errors.New("disk I/O error")
	_, err := h.a.Login(context.Background(), "alice", goodPW, "192.0.2.1")
	if err == nil || errors.Is(err, ErrBadCredentials) || !strings.Contains(err.Error(), "disk I/O error") {
		t.Errorf("err = %v, want the store error and not ErrBadCredentials", err)
	}
	if ok, _ := h.a.throttle.Allowed("alice", "192.0.2.1"); !ok {
		t.Error("store failure counted as a failed login")
	}
}

// TestLoginBruteForceLockoutAndRelease: after MaxFailures wrong guesses the
// account refuses even the right password, without touching the store or
// hashing, until Lockout has passed.
func TestLoginBruteForceLockoutAndRelease(t *testing.T) {
	h := newHarness(t, ThrottleOptions{}) // 5 failures, 15m lockout
	ctx := context.Background()
	for i := range 5 {
		if _, err := h.a.Login(ctx, "alice", fmt.Sprintf("guess number %d", i), fmt.Sprintf("192.0.2.%d", i)); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("guess %d: err = %v, want ErrBadCredentials", i, err)
		}
	}
	calls, verifies := h.st.calls, len(h.verifies)
	_, err := h.a.Login(ctx, "ALICE", goodPW, "198.51.100.1")
	var le *LockedError
	if !errors.Is(err, ErrLocked) || !errors.As(err, &le) {
		t.Fatalf("err = %v, want *LockedError", err)
	}
	if errors.Is(err, ErrBadCredentials) {
		t.Error("locked error also matches ErrBadCredentials")
	}
	if le.RetryAfter != 15*time.Minute {
		t.Errorf("RetryAfter = %v, want 15m", le.RetryAfter)
	}
	if h.st.calls != calls || len(h.verifies) != verifies {
		t.Errorf("locked login touched the store (%d calls) or hashed (%d verifies)", h.st.calls-calls, len(h.verifies)-verifies)
	}
	if !strings.Contains(err.Error(), "900s") {
		t.Errorf("Error() = %q, want the wait in seconds", err)
	}
	h.clk.Advance(15 * time.Minute)
	if _, err := h.a.Login(ctx, "alice", goodPW, "198.51.100.1"); err != nil {
		t.Errorf("after the lockout: %v", err)
	}
}

// TestLoginPasswordSprayingLocksAddress: one guess at each of many accounts
// from one address locks that address, even for a right password.
func TestLoginPasswordSprayingLocksAddress(t *testing.T) {
	h := newHarness(t, ThrottleOptions{}) // 20 per address
	ctx := context.Background()
	for i := range 20 {
		_, err := h.a.Login(ctx, fmt.Sprintf("user%d", i), "Summer2026!!", "203.0.113.9")
		if !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("spray %d: err = %v, want ErrBadCredentials", i, err)
		}
	}
	for _, tc := range []struct {
		name   string
		ip     string
		wantIs error
	}{
		{"sprayer locked even with a right password", "203.0.113.9", ErrLocked},
		{"other client unaffected", "198.51.100.1", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.a.Login(ctx, "user25", goodPW, tc.ip)
			if tc.wantIs == nil && err != nil || tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("err = %v, want %v", err, tc.wantIs)
			}
		})
	}
}

// TestLoginUnknownUsersAreThrottledToo: guessing names that do not exist
// counts toward the address limit like any other failure.
func TestLoginUnknownUsersAreThrottledToo(t *testing.T) {
	h := newHarness(t, ThrottleOptions{IPMaxFailures: 3})
	ctx := context.Background()
	for _, u := range []string{"ghost1", "gh ost", "ghost3"} {
		h.a.Login(ctx, u, "whatever-password", "192.0.2.7")
	}
	if _, err := h.a.Login(ctx, "alice", goodPW, "192.0.2.7"); !errors.Is(err, ErrLocked) {
		t.Errorf("err = %v, want ErrLocked", err)
	}
}

func TestLoginWithSQLiteStore(t *testing.T) {
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if err := st.CreateUser(ctx, store.User{Name: "zoe", PasswordHash: mustHashWith(t, goodPW, cheap)}); err != nil {
		t.Fatal(err)
	}
	a, err := NewAuthenticator(st, NewThrottle(ThrottleOptions{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := a.Login(ctx, "Zoe", goodPW, "127.0.0.1"); err != nil || id.User != "zoe" {
		t.Errorf("Login = %+v, %v; want zoe", id, err)
	}
	if err := st.SetDisabled(ctx, "zoe", true); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Login(ctx, "zoe", goodPW, "127.0.0.1"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("disabled: err = %v, want ErrBadCredentials", err)
	}
	if _, err := a.Login(ctx, "nobody", goodPW, "127.0.0.1"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("unknown: err = %v, want ErrBadCredentials", err)
	}
}

func TestNewAuthenticatorNilStore(t *testing.T) {
	if _, err := NewAuthenticator(nil, nil, nil); err == nil {
		t.Error("NewAuthenticator(nil store) = nil error")
	}
}

// The dummy hash unknown users are checked against must cost what a real
// hash costs: same parameters as DefaultParams, and a well-formed hash.
func TestDummyHashMatchesDefaultParams(t *testing.T) {
	if NeedsRehash(dummyHash) {
		t.Fatal("dummyHash parameters differ from DefaultParams: regenerate it with Hash")
	}
	if ok, err := Verify(dummyHash, "sekisho-dummy-password-for-unknown-users"); err != nil || !ok {
		t.Fatalf("dummyHash does not verify its own password: %v %v", ok, err)
	}
}
