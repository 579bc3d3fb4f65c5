package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/testclock"
)

// fakeClock is the settable test clock.
type fakeClock = testclock.Clock

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func openTest(t *testing.T, path string, clk *fakeClock) *SQLite {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "state", "sekisho.db")
	}
	if clk == nil {
		clk = testclock.New(t0)
	}
	s, err := OpenSQLiteOptions(path, Options{Now: clk.Now, MaxSessionLifetime: 12 * time.Hour})
	if err != nil {
		t.Fatalf("OpenSQLiteOptions(%q): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenSQLiteCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "sekisho.db")
	openTest(t, path, nil)
	for _, tc := range []struct {
		name string
		path string
		want os.FileMode
	}{
		{"parent dir", dir, 0o700 | os.ModeDir},
		{"db file", path, 0o600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fi, err := os.Stat(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode() & (os.ModePerm | os.ModeDir); got != tc.want {
				t.Errorf("mode of %s = %v, want %v", tc.path, got, tc.want)
			}
		})
	}
}

func TestOpenSQLitePragmas(t *testing.T) {
	s := openTest(t, "", nil)
	ctx := context.Background()
	for _, tc := range []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"busy_timeout", "10000"},
	} {
		t.Run(tc.pragma, func(t *testing.T) {
			var got string
			if err := s.db.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("PRAGMA %s = %q, want %q", tc.pragma, got, tc.want)
			}
		})
	}
}

func TestOpenSQLiteBadPath(t *testing.T) {
	for _, tc := range []struct {
		name, path, want string
	}{
		{"empty", "", "empty"},
		{"query smuggled into DSN", filepath.Join(t.TempDir(), "x.db?_pragma=foreign_keys(0)"), "must not contain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenSQLite(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("OpenSQLite(%q) = %v, want error containing %q", tc.path, err, tc.want)
			}
		})
	}
}

func TestMigrationsIdempotentAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sekisho.db")
	ctx := context.Background()
	want, err := loadMigrations(migrationFiles, "migrations/sqlite")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		s, err := OpenSQLite(path)
		if err != nil {
			t.Fatalf("open #%d: %v", i, err)
		}
		if i == 0 {
			if err := s.CreateUser(ctx, User{Name: "alice"}); err != nil {
				t.Fatal(err)
			}
		}
		v, err := s.SchemaVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var rows int
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		n, err := s.CountUsers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if v != len(want) || rows != len(want) || n != 1 {
			t.Errorf("open #%d: version %d, %d migration rows, %d users; want %d, %d, 1", i, v, rows, n, len(want), len(want))
		}
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sekisho.db")
	s := openTest(t, path, nil)
	if _, err := s.db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, '0999_future.sql', 0)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := OpenSQLite(path)
	if err == nil || !strings.Contains(err.Error(), "newer than this sekisho binary") {
		t.Fatalf("OpenSQLite on a newer schema = %v, want a 'newer than this sekisho binary' error", err)
	}
}

func TestLoadMigrations(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   []string
		want    []int
		wantErr string
	}{
		{"ordered", []string{"0001_a.sql", "0002_b.sql", "README"}, []int{1, 2}, ""},
		{"gap", []string{"0001_a.sql", "0003_c.sql"}, nil, "without gaps"},
		{"duplicate", []string{"0001_a.sql", "001_b.sql"}, nil, "without gaps"},
		{"bad name", []string{"init.sql"}, nil, "NNNN_description.sql"},
		{"zero", []string{"0000_a.sql"}, nil, "NNNN_description.sql"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for _, f := range tc.files {
				fsys["m/"+f] = &fstest.MapFile{Data: []byte("SELECT 1;")}
			}
			ms, err := loadMigrations(fsys, "m")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, m := range ms {
				got = append(got, m.version)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("versions (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSecondHandleWritesWhileFirstReads simulates the CLI (a second process
// with its own handle) writing while the server reads the same file.
func TestSecondHandleWritesWhileFirstReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sekisho.db")
	server := openTest(t, path, nil)
	cli := openTest(t, path, nil)
	ctx := context.Background()

	// Hold a read transaction open on the server's handle across the CLI's
	// writes: WAL lets the writer proceed without waiting for the reader.
	rows, err := server.db.QueryContext(ctx, `SELECT name FROM users`)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range n {
			name := "user" + string(rune('a'+i))
			if err := cli.CreateUser(ctx, User{Name: name}); err != nil {
				errs <- err
			}
			if err := cli.SetPassword(ctx, name, "h"); err != nil {
				errs <- err
			}
		}
	}()
	go func() {
		defer wg.Done()
		for range n {
			if _, err := server.ListUsers(ctx); err != nil {
				errs <- err
			}
			if _, err := server.RevocationsSince(ctx, 0); err != nil {
				errs <- err
			}
		}
	}()
	wg.Wait()
	rows.Close()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent access: %v", err)
	}
	got, err := server.CountUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	revs, err := server.RevocationsSince(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got != n || len(revs) != n {
		t.Errorf("server sees %d users and %d revocations, want %d and %d", got, len(revs), n, n)
	}
}

func TestSequentialWritersFromTwoHandles(t *testing.T) {
	forBackends(t, func(t *testing.T, open opener) {
		a := open(t, nil)
		b := open(t, nil)
		ctx := context.Background()
		if err := a.CreateUser(ctx, User{Name: "bob"}); err != nil {
			t.Fatal(err)
		}
		if err := b.CreateUser(ctx, User{Name: "BOB"}); !errors.Is(err, ErrExists) {
			t.Errorf("second handle creating a duplicate: err = %v, want ErrExists", err)
		}
		if err := b.SetDisabled(ctx, "bob", true); err != nil {
			t.Fatal(err)
		}
		u, err := a.GetUser(ctx, "bob")
		if err != nil {
			t.Fatal(err)
		}
		if !u.Disabled {
			t.Error("first handle does not see the second handle's write")
		}
	})
}

// TestRevocationValidation: rows neither backend could store alike are
// refused by both with the same message (Postgres rejects NUL and invalid
// UTF-8 in text, SQLite would keep them).
func TestRevocationValidation(t *testing.T) {
	forBackends(t, func(t *testing.T, open opener) {
		s := open(t, nil)
		ctx := context.Background()
		for _, tc := range []struct {
			name    string
			r       session.Revocation
			wantErr string
		}{
			{"neither", session.Revocation{}, "neither"},
			{"both", session.Revocation{SessionID: "s", User: "u"}, "both"},
			{"huge session id", session.Revocation{SessionID: strings.Repeat("x", 300)}, "longer than 256"},
			{"NUL byte in session id", session.Revocation{SessionID: "s\x00id"}, "NUL byte"},
			{"invalid UTF-8 in user", session.Revocation{User: "al\xffice"}, "not valid UTF-8"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if err := s.AddRevocation(ctx, tc.r); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("AddRevocation(%+v) = %v, want error containing %q", tc.r, err, tc.wantErr)
				}
			})
		}
		if rs, err := s.RevocationsSince(ctx, 0); err != nil || len(rs) != 0 {
			t.Errorf("refused revocations wrote rows: %+v, %v", rs, err)
		}
	})
}
