package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/testclock"
	"github.com/sekisho/sekisho/internal/testenv/pgtest"
)

// Moving a single box to a fleet loses nothing a user relies on: every
// account (a disabled one stays disabled, hashes and times kept), every
// API key (a revoked one stays revoked), the revocations still in force
// and the OIDC tokens. A second copy into the now non-empty database is
// refused and changes nothing.
func TestCopyToPostgresKeepsEverything(t *testing.T) {
	clk := testclock.New(t0)
	src := openTest(t, filepath.Join(t.TempDir(), "sekisho.db"), clk)
	ctx := context.Background()
	for _, u := range []User{
		{Name: "alice", Email: "alice@example.com", Groups: []string{"eng"}, PasswordHash: "$h"},
		{Name: "bob", PasswordHash: "$h"},
	} {
		if err := src.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Minute)
	}
	if err := src.SetDisabled(ctx, "bob", true); err != nil {
		t.Fatal(err)
	}
	for _, k := range []APIKey{
		{ID: "aaaaaaaaaaaa", Name: "ci", SecretHash: make([]byte, 32), Routes: []string{"app"}, Methods: []string{"GET"}, ExpiresAt: t0.Add(48 * time.Hour)},
		{ID: "bbbbbbbbbbbb", Name: "old", SecretHash: make([]byte, 32), Routes: []string{"app"}},
	} {
		if err := src.CreateAPIKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.RevokeAPIKey(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	if err := src.AddRevocation(ctx, session.Revocation{SessionID: "s-live", Until: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := src.AddRevocation(ctx, session.Revocation{SessionID: "s-expired", Until: t0.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := src.PutOIDCTokens(ctx, OIDCTokenRecord{SessionID: "s-oidc", Provider: "google", Subject: "123", Sealed: []byte("sealed"), ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	dst := openPGTest(t, pgtest.Start(t), clk)
	got, err := CopyToPostgres(ctx, src, dst, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if want := (Copied{Users: 2, APIKeys: 2, Revocations: 2, OIDCTokens: 1}); got != want {
		// 2 revocations: s-live and bob's user revocation from SetDisabled.
		t.Errorf("copied %+v, want %+v", got, want)
	}
	wantUsers, _ := src.ListUsers(ctx)
	gotUsers, err := dst.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantUsers, gotUsers); diff != "" {
		t.Errorf("users (-sqlite +postgres):\n%s", diff)
	}
	wantKeys, _ := src.ListAPIKeys(ctx)
	gotKeys, err := dst.ListAPIKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantKeys, gotKeys); diff != "" {
		t.Errorf("API keys (-sqlite +postgres):\n%s", diff)
	}
	changes, err := dst.APIKeyChangesSince(ctx, 0)
	if err != nil || len(changes) != 2 {
		t.Errorf("key change log after the copy: %v %v, want a row per key", changes, err)
	}
	revs, err := dst.RevocationsSince(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, r := range revs {
		ids[r.SessionID+r.User] = true
	}
	if !ids["s-live"] || !ids["bob"] || ids["s-expired"] {
		t.Errorf("revocations after the copy: %+v, want s-live and bob's, not the expired one", revs)
	}
	if tok, err := dst.GetOIDCTokens(ctx, "s-oidc"); err != nil || string(tok.Sealed) != "sealed" {
		t.Errorf("OIDC tokens after the copy: %+v %v", tok, err)
	}

	if _, err := CopyToPostgres(ctx, src, dst, clk.Now()); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("a second copy: %v, want ErrNotEmpty", err)
	}
	if n, _ := dst.CountUsers(ctx); n != 2 {
		t.Errorf("the refused copy changed the destination: %d users", n)
	}
}

// `store migrate --dry-run` needs to see what a new database lacks
// without applying it; Migrate then applies it.
func TestMigrationsPlanAndApply(t *testing.T) {
	forBackends(t, func(t *testing.T, open opener) {
		// open applies migrations; a second store opened with
		// SkipMigrations on a new database shows them pending.
		ctx := context.Background()
		var b Backend
		switch open(t, nil).(type) {
		case *SQLite:
			fresh, err := OpenSQLiteOptions(filepath.Join(t.TempDir(), "new.db"), Options{SkipMigrations: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { fresh.Close() })
			b = fresh
		case *Postgres:
			url := pgtest.Start(t)
			fresh, err := OpenPostgres(ctx, url, Options{SkipMigrations: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { fresh.Close() })
			b = fresh
		}
		have, pending, err := Migrations(ctx, b)
		if err != nil || have != 0 || len(pending) == 0 {
			t.Fatalf("a new database: version %d, pending %v, %v; want 0 and every migration", have, pending, err)
		}
		if err := Migrate(ctx, b, t0); err != nil {
			t.Fatal(err)
		}
		have2, pending2, err := Migrations(ctx, b)
		if err != nil || have2 != len(pending) || len(pending2) != 0 {
			t.Fatalf("after Migrate: version %d, pending %v, %v", have2, pending2, err)
		}
	})
}
