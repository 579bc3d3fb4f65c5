package store

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/testclock"
)

func testKey(id, name string) APIKey {
	return APIKey{ID: id, Name: name, SecretHash: bytes.Repeat([]byte{1}, 32), Routes: []string{"flowise-api"}}
}

func TestAPIKeysCreateGetList(t *testing.T) {
	forBackends(t, func(t *testing.T, open opener) {
		clk := testclock.New(t0)
		s := open(t, clk)
		ctx := context.Background()
		b := testKey("bbbbbbbbbbbb", "Zeta-Bot")
		b.Methods, b.PathPrefixes, b.ExpiresAt = []string{"POST"}, []string{"/api/v1"}, t0.Add(90*24*time.Hour)
		if err := s.CreateAPIKey(ctx, b); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Minute)
		if err := s.CreateAPIKey(ctx, testKey("aaaaaaaaaaaa", "alpha")); err != nil {
			t.Fatal(err)
		}
		want := []APIKey{
			{ID: "aaaaaaaaaaaa", Name: "alpha", SecretHash: bytes.Repeat([]byte{1}, 32), Routes: []string{"flowise-api"}, CreatedAt: t0.Add(time.Minute)},
			{ID: "bbbbbbbbbbbb", Name: "zeta-bot", SecretHash: bytes.Repeat([]byte{1}, 32), Routes: []string{"flowise-api"},
				Methods: []string{"POST"}, PathPrefixes: []string{"/api/v1"}, CreatedAt: t0, ExpiresAt: t0.Add(90 * 24 * time.Hour)},
		}
		got, err := s.ListAPIKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ListAPIKeys (-want +got):\n%s", diff)
		}
		one, err := s.GetAPIKey(ctx, "bbbbbbbbbbbb")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want[1], one); diff != "" {
			t.Errorf("GetAPIKey (-want +got):\n%s", diff)
		}
		for _, id := range []string{"cccccccccccc", "", "BAD ID", strings.Repeat("a", 65)} {
			if _, err := s.GetAPIKey(ctx, id); !errors.Is(err, ErrNotFound) {
				t.Errorf("GetAPIKey(%q) = %v, want ErrNotFound", id, err)
			}
		}
		seq, err := s.LatestAPIKeyChange(ctx)
		if err != nil || seq != 2 {
			t.Errorf("LatestAPIKeyChange = %d, %v; want 2 (one row per create)", seq, err)
		}
	})
}

func TestCreateAPIKeyRefuses(t *testing.T) {
	forBackends(t, func(t *testing.T, open opener) {
		s := open(t, nil)
		ctx := context.Background()
		if err := s.CreateAPIKey(ctx, testKey("aaaaaaaaaaaa", "taken")); err != nil {
			t.Fatal(err)
		}
		mod := func(f func(*APIKey)) APIKey { k := testKey("dddddddddddd", "fresh"); f(&k); return k }
		for _, tc := range []struct {
			name    string
			key     APIKey
			wantErr string
			is      error
		}{
			{"duplicate name", testKey("cccccccccccc", "Taken"), "already exists", ErrExists},
			{"duplicate id", testKey("aaaaaaaaaaaa", "other"), "already exists", ErrExists},
			{"no route", mod(func(k *APIKey) { k.Routes = nil }), "names no route", nil},
			{"short hash", mod(func(k *APIKey) { k.SecretHash = []byte{1} }), "1 bytes, want 32", nil},
			{"bad name", mod(func(k *APIKey) { k.Name = "ci bot" }), `"ci bot"`, nil},
			{"bad id", mod(func(k *APIKey) { k.ID = "AB_" }), "not allowed", nil},
			{"lower-case method", mod(func(k *APIKey) { k.Methods = []string{"get"} }), `method "get"`, nil},
			{"relative path", mod(func(k *APIKey) { k.PathPrefixes = []string{"api"} }), `path prefix "api"`, nil},
			{"route with newline", mod(func(k *APIKey) { k.Routes = []string{"a\nb"} }), "route", nil},
			{"route with invalid UTF-8", mod(func(k *APIKey) { k.Routes = []string{"a\xffb"} }), "route", nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := s.CreateAPIKey(ctx, tc.key)
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || (tc.is != nil && !errors.Is(err, tc.is)) {
					t.Fatalf("CreateAPIKey = %v, want error containing %q", err, tc.wantErr)
				}
			})
		}
		if seq, _ := s.LatestAPIKeyChange(ctx); seq != 1 {
			t.Errorf("refused creates wrote change rows: latest seq %d, want 1", seq)
		}
	})
}

func TestRevokeAPIKey(t *testing.T) {
	forBackends(t, func(t *testing.T, open opener) {
		clk := testclock.New(t0)
		s := open(t, clk)
		ctx := context.Background()
		for _, k := range []APIKey{testKey("aaaaaaaaaaaa", "ci-bot"), testKey("bbbbbbbbbbbb", "cccccccccccc"), testKey("cccccccccccc", "third")} {
			if err := s.CreateAPIKey(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
		clk.Advance(time.Hour)
		k, err := s.RevokeAPIKey(ctx, "CI-Bot")
		if err != nil || k.ID != "aaaaaaaaaaaa" || !k.RevokedAt.Equal(t0.Add(time.Hour)) {
			t.Fatalf("RevokeAPIKey by name = %+v, %v", k, err)
		}
		clk.Advance(time.Hour)
		if k, err := s.RevokeAPIKey(ctx, "aaaaaaaaaaaa"); err != nil || !k.RevokedAt.Equal(t0.Add(time.Hour)) {
			t.Fatalf("second revoke by id = %v, %v; want success keeping the first time", k.RevokedAt, err)
		}
		if _, err := s.RevokeAPIKey(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
			t.Errorf("revoke unknown = %v, want ErrNotFound", err)
		}
		if _, err := s.RevokeAPIKey(ctx, "cccccccccccc"); err == nil || !strings.Contains(err.Error(), `is the id of key "third"`) {
			t.Errorf("revoke of a string that is one key's id and another's name = %v, want an ambiguity error", err)
		}
		cs, err := s.APIKeyChangesSince(ctx, 3)
		want := []APIKeyChange{{Seq: 4, KeyID: "aaaaaaaaaaaa"}}
		if err != nil || !cmp.Equal(want, cs) {
			t.Errorf("changes after the creates = %v, %v; want %v (one row for the first revoke only)", cs, err, want)
		}
	})
}

func TestTouchAPIKeys(t *testing.T) {
	forBackends(t, func(t *testing.T, open opener) {
		s := open(t, nil)
		ctx := context.Background()
		if err := s.CreateAPIKey(ctx, testKey("aaaaaaaaaaaa", "ci-bot")); err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			name string
			at   time.Time
			want time.Time
		}{
			{"first use", t0.Add(time.Hour), t0.Add(time.Hour)},
			{"later use moves it", t0.Add(2 * time.Hour), t0.Add(2 * time.Hour)},
			{"older flush never moves it back", t0.Add(time.Minute), t0.Add(2 * time.Hour)},
		}
		for _, st := range steps {
			t.Run(st.name, func(t *testing.T) {
				if err := s.TouchAPIKeys(ctx, map[string]time.Time{"aaaaaaaaaaaa": st.at, "zzzzzzzzzzzz": st.at}); err != nil {
					t.Fatal(err)
				}
				k, err := s.GetAPIKey(ctx, "aaaaaaaaaaaa")
				if err != nil || !k.LastUsedAt.Equal(st.want) {
					t.Fatalf("LastUsedAt = %v, %v; want %v", k.LastUsedAt, err, st.want)
				}
			})
		}
		if seq, _ := s.LatestAPIKeyChange(ctx); seq != 1 {
			t.Errorf("touches wrote change rows: latest seq %d, want 1", seq)
		}
	})
}

// TestAPIKeyChangesSeenByOtherProcess pins that a revoke through one handle
// (the CLI) is in the change log another handle (the server) polls.
func TestAPIKeyChangesSeenByOtherProcess(t *testing.T) {
	forBackends(t, func(t *testing.T, open opener) {
		server, cli := open(t, nil), open(t, nil)
		ctx := context.Background()
		if err := cli.CreateAPIKey(ctx, testKey("aaaaaaaaaaaa", "ci-bot")); err != nil {
			t.Fatal(err)
		}
		seq, err := server.LatestAPIKeyChange(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.RevokeAPIKey(ctx, "ci-bot"); err != nil {
			t.Fatal(err)
		}
		cs, err := server.APIKeyChangesSince(ctx, seq)
		if err != nil || len(cs) != 1 || cs[0].KeyID != "aaaaaaaaaaaa" {
			t.Fatalf("server sees changes %v, %v; want the revoke", cs, err)
		}
	})
}
