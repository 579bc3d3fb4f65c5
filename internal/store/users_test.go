package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/testclock"
)

func TestCanonicalName(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{"lowercased", "Alice", "alice", ""},
		{"all allowed characters", "a.b_c@d-e9", "a.b_c@d-e9", ""},
		{"max length", strings.Repeat("a", 64), strings.Repeat("a", 64), ""},
		{"empty", "", "", "empty"},
		{"too long", strings.Repeat("a", 65), "", "longer than 64"},
		{"space", "al ice", "", `"al ice"`},
		{"path traversal", "../etc", "", `'/'`},
		{"NUL byte", "alice\x00", "", `"alice\x00"`},
		{"unicode lookalike", "аlice", "", "not allowed"}, // Cyrillic a
		{"kelvin sign look-alike of k", "\u212aaren", "", "not allowed"},
		{"newline log injection", "alice\nadmin", "", "not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CanonicalName(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("CanonicalName(%q) = %q, %v; want error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("CanonicalName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestCreateGetListUsers(t *testing.T) {
	forBackends(t, func(t *testing.T, open opener) {
		clk := testclock.New(t0)
		s := open(t, clk)
		ctx := context.Background()
		if err := s.CreateUser(ctx, User{Name: "Carol", Email: "carol@example.com", Groups: []string{"admins", "dev"}, PasswordHash: "$h"}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Minute)
		if err := s.CreateUser(ctx, User{Name: "bob"}); err != nil {
			t.Fatal(err)
		}
		want := []User{
			{Name: "bob", CreatedAt: t0.Add(time.Minute), UpdatedAt: t0.Add(time.Minute)},
			{Name: "carol", Email: "carol@example.com", Groups: []string{"admins", "dev"}, PasswordHash: "$h",
				CreatedAt: t0, UpdatedAt: t0, PasswordChangedAt: t0},
		}
		got, err := s.ListUsers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ListUsers (-want +got):\n%s", diff)
		}
		u, err := s.GetUser(ctx, "CAROL")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want[1], u); diff != "" {
			t.Errorf("GetUser (-want +got):\n%s", diff)
		}
		n, err := s.CountUsers(ctx)
		if err != nil || n != 2 {
			t.Errorf("CountUsers = %d, %v; want 2", n, err)
		}
	})
}

func TestCreateUserErrors(t *testing.T) {
	forBackends(t, func(t *testing.T, open opener) {
		s := open(t, nil)
		ctx := context.Background()
		if err := s.CreateUser(ctx, User{Name: "dave"}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name    string
			u       User
			wantIs  error
			wantMsg string
		}{
			{"duplicate", User{Name: "dave"}, ErrExists, `"dave"`},
			{"duplicate differing in case", User{Name: "DAVE"}, ErrExists, `"dave"`},
			{"bad name", User{Name: "da ve"}, nil, `"da ve"`},
			{"bad email", User{Name: "erin", Email: "Erin <erin@example.com>"}, nil, "email"},
			{"header injection in email", User{Name: "erin", Email: "erin@example.com\r\nBcc: x@y"}, nil, "email"},
			{"empty group", User{Name: "erin", Groups: []string{""}}, nil, "group"},
			{"NUL byte in password hash", User{Name: "erin", PasswordHash: "$h\x00"}, nil, "password hash"},
			{"invalid UTF-8 in email", User{Name: "erin", Email: "erin@ex\xffample.com"}, nil, "email"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := s.CreateUser(ctx, tc.u)
				if err == nil {
					t.Fatalf("CreateUser(%+v) = nil, want error", tc.u)
				}
				if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
					t.Errorf("err = %v, want errors.Is %v", err, tc.wantIs)
				}
				if !strings.Contains(err.Error(), tc.wantMsg) {
					t.Errorf("err = %v, want it to contain %q", err, tc.wantMsg)
				}
			})
		}
	})
}

func TestUserNotFound(t *testing.T) {
	forBackends(t, func(t *testing.T, open opener) {
		s := open(t, nil)
		ctx := context.Background()
		for _, tc := range []struct {
			name string
			op   func() error
		}{
			{"GetUser", func() error { _, err := s.GetUser(ctx, "ghost"); return err }},
			{"GetUser invalid name", func() error { _, err := s.GetUser(ctx, "gh ost"); return err }},
			{"SetPassword", func() error { return s.SetPassword(ctx, "ghost", "h") }},
			{"SetDisabled", func() error { return s.SetDisabled(ctx, "ghost", true) }},
			{"SetGroups", func() error { return s.SetGroups(ctx, "ghost", nil) }},
			{"SetEmail", func() error { return s.SetEmail(ctx, "ghost", "") }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if err := tc.op(); !errors.Is(err, ErrNotFound) {
					t.Errorf("err = %v, want ErrNotFound", err)
				}
			})
		}
		// A failed update must not leave a revocation behind.
		revs, err := s.RevocationsSince(ctx, 0)
		if err != nil || len(revs) != 0 {
			t.Errorf("revocations after failed updates = %v, %v; want none", revs, err)
		}
	})
}

func TestSetters(t *testing.T) {
	forBackends(t, func(t *testing.T, open opener) {
		clk := testclock.New(t0)
		s := open(t, clk)
		ctx := context.Background()
		if err := s.CreateUser(ctx, User{Name: "frank", Groups: []string{"a"}}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Hour)
		t1 := clk.Now()
		if err := s.SetEmail(ctx, "Frank", "frank@example.com"); err != nil {
			t.Fatal(err)
		}
		if err := s.SetGroups(ctx, "frank", nil); err != nil {
			t.Fatal(err)
		}
		if err := s.SetPassword(ctx, "frank", "$argon2id$new"); err != nil {
			t.Fatal(err)
		}
		if err := s.SetDisabled(ctx, "frank", true); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetUser(ctx, "frank")
		if err != nil {
			t.Fatal(err)
		}
		want := User{Name: "frank", Email: "frank@example.com", PasswordHash: "$argon2id$new", Disabled: true,
			CreatedAt: t0, UpdatedAt: t1, PasswordChangedAt: t1}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("user after setters (-want +got):\n%s", diff)
		}
		if err := s.SetEmail(ctx, "frank", "not an email"); err == nil {
			t.Error("SetEmail with a bad address = nil, want error")
		}
	})
}

// TestPasswordChangeAndDisableRevokeSessions pins that SetPassword and
// SetDisabled(true) write a user-before revocation in the same transaction,
// and that enabling or other edits do not.
func TestPasswordChangeAndDisableRevokeSessions(t *testing.T) {
	forBackends(t, func(t *testing.T, open opener) {
		clk := testclock.New(t0)
		s := open(t, clk) // MaxSessionLifetime 12h
		ctx := context.Background()
		if err := s.CreateUser(ctx, User{Name: "gina"}); err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			name string
			op   func() error
		}{
			{"set password", func() error { return s.SetPassword(ctx, "gina", "h") }},
			{"disable", func() error { return s.SetDisabled(ctx, "GINA", true) }},
			{"enable", func() error { return s.SetDisabled(ctx, "gina", false) }},
			{"set groups", func() error { return s.SetGroups(ctx, "gina", []string{"x"}) }},
			{"set email", func() error { return s.SetEmail(ctx, "gina", "g@example.com") }},
		}
		for _, st := range steps {
			clk.Advance(time.Minute)
			if err := st.op(); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		got, err := s.RevocationsSince(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := []session.Revocation{
			{Seq: 1, User: "gina", Before: t0.Add(1 * time.Minute), Until: t0.Add(1*time.Minute + 12*time.Hour)},
			{Seq: 2, User: "gina", Before: t0.Add(2 * time.Minute), Until: t0.Add(2*time.Minute + 12*time.Hour)},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("revocations (-want +got):\n%s", diff)
		}

		// End to end with the session package's in-memory set.
		set := session.NewRevocations()
		if err := set.Sync(ctx, s); err != nil {
			t.Fatal(err)
		}
		old := session.Session{User: "gina", IssuedAt: t0}
		fresh := session.Session{User: "gina", IssuedAt: t0.Add(time.Hour)}
		if !set.IsRevoked(old) || set.IsRevoked(fresh) {
			t.Errorf("IsRevoked(old)=%v IsRevoked(fresh)=%v; want true, false", set.IsRevoked(old), set.IsRevoked(fresh))
		}
	})
}

func TestRevocationsSinceOrderingAndBatch(t *testing.T) {
	forBackends(t, func(t *testing.T, open opener) {
		s := open(t, nil)
		ctx := context.Background()
		const total = RevocationBatch + 5
		for i := range total {
			r := session.Revocation{SessionID: "s" + time.Duration(i).String(), Until: t0.Add(time.Duration(i) * time.Second)}
			if err := s.AddRevocation(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			name      string
			since     int64
			wantLen   int
			wantFirst int64
		}{
			{"from start is one full batch", 0, RevocationBatch, 1},
			{"next batch is the rest", RevocationBatch, 5, RevocationBatch + 1},
			{"mid", 10, total - 10, 11},
			{"caught up", total, 0, 0},
			{"cursor past end", total + 100, 0, 0},
			{"negative cursor", -5, RevocationBatch, 1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := s.RevocationsSince(ctx, tc.since)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != tc.wantLen {
					t.Fatalf("len = %d, want %d", len(got), tc.wantLen)
				}
				for i, r := range got {
					if r.Seq != tc.wantFirst+int64(i) {
						t.Fatalf("row %d has seq %d, want %d (ascending, no gaps)", i, r.Seq, tc.wantFirst+int64(i))
					}
				}
			})
		}
	})
}

// TestPruneNeverReusesSeq pins that a poller whose cursor sits at the
// highest seq still sees a row added after that row was pruned.
func TestPruneNeverReusesSeq(t *testing.T) {
	forBackends(t, func(t *testing.T, open opener) {
		s := open(t, nil)
		ctx := context.Background()
		add := func(r session.Revocation) {
			t.Helper()
			if err := s.AddRevocation(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		add(session.Revocation{SessionID: "keep-forever"})                         // seq 1, zero Until
		add(session.Revocation{SessionID: "expired", Until: t0.Add(-time.Second)}) // seq 2
		add(session.Revocation{User: "h", Before: t0, Until: t0.Add(time.Hour)})   // seq 3
		n, err := s.PruneRevocations(ctx, t0)
		if err != nil || n != 1 {
			t.Fatalf("PruneRevocations = %d, %v; want 1", n, err)
		}
		n, err = s.PruneRevocations(ctx, t0.Add(2*time.Hour))
		if err != nil || n != 1 {
			t.Fatalf("second PruneRevocations = %d, %v; want 1", n, err)
		}
		add(session.Revocation{SessionID: "after-prune"})
		got, err := s.RevocationsSince(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		want := []session.Revocation{{Seq: 4, SessionID: "after-prune"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("RevocationsSince(3) (-want +got):\n%s", diff)
		}
		all, err := s.RevocationsSince(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 2 || all[0].SessionID != "keep-forever" {
			t.Errorf("after prune = %+v, want keep-forever and after-prune", all)
		}
	})
}
