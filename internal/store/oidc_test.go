package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/testclock"
)

func TestOIDCTokens(t *testing.T) {
	forBackends(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		clk := testclock.New(t0)
		s := open(t, clk)
		rec := OIDCTokenRecord{SessionID: "sess-1", Provider: "corp", Subject: "u1", Sealed: []byte{1, 2, 3}, ExpiresAt: t0.Add(12 * time.Hour)}

		t.Run("put then get", func(t *testing.T) {
			if err := s.PutOIDCTokens(ctx, rec); err != nil {
				t.Fatal(err)
			}
			got, err := s.GetOIDCTokens(ctx, "sess-1")
			if err != nil {
				t.Fatal(err)
			}
			want := rec
			want.UpdatedAt = t0
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})

		t.Run("put replaces the row (refresh token rotation)", func(t *testing.T) {
			clk.Advance(time.Minute)
			r2 := rec
			r2.Sealed = []byte{9}
			if err := s.PutOIDCTokens(ctx, r2); err != nil {
				t.Fatal(err)
			}
			got, err := s.GetOIDCTokens(ctx, "sess-1")
			if err != nil || !cmp.Equal(got.Sealed, []byte{9}) || !got.UpdatedAt.Equal(t0.Add(time.Minute)) {
				t.Errorf("after replace: %+v, %v", got, err)
			}
		})

		t.Run("unknown session is ErrNotFound", func(t *testing.T) {
			if _, err := s.GetOIDCTokens(ctx, "nope"); !errors.Is(err, ErrNotFound) {
				t.Errorf("err = %v, want ErrNotFound", err)
			}
		})

		t.Run("bad rows are refused", func(t *testing.T) {
			for _, tc := range []struct {
				name string
				mod  func(*OIDCTokenRecord)
			}{
				{"no session id", func(r *OIDCTokenRecord) { r.SessionID = "" }},
				{"no provider", func(r *OIDCTokenRecord) { r.Provider = "" }},
				{"empty blob", func(r *OIDCTokenRecord) { r.Sealed = nil }},
				{"oversized blob", func(r *OIDCTokenRecord) { r.Sealed = make([]byte, MaxOIDCSealedBytes+1) }},
				{"no expiry", func(r *OIDCTokenRecord) { r.ExpiresAt = time.Time{} }},
				{"NUL byte in subject", func(r *OIDCTokenRecord) { r.Subject = "u\x001" }},
				{"invalid UTF-8 in provider", func(r *OIDCTokenRecord) { r.Provider = "c\xfforp" }},
			} {
				t.Run(tc.name, func(t *testing.T) {
					r := rec
					r.SessionID = "bad"
					tc.mod(&r)
					if err := s.PutOIDCTokens(ctx, r); err == nil {
						t.Error("accepted")
					}
				})
			}
		})

		t.Run("expired rows are not returned and are pruned", func(t *testing.T) {
			clk.Advance(13 * time.Hour)
			if _, err := s.GetOIDCTokens(ctx, "sess-1"); !errors.Is(err, ErrNotFound) {
				t.Errorf("expired row: err = %v, want ErrNotFound", err)
			}
			n, err := s.PruneOIDCTokens(ctx, clk.Now())
			if err != nil || n != 1 {
				t.Errorf("PruneOIDCTokens = %d, %v; want 1", n, err)
			}
		})

		t.Run("delete", func(t *testing.T) {
			r := rec
			r.SessionID, r.ExpiresAt = "sess-2", clk.Now().Add(time.Hour)
			if err := s.PutOIDCTokens(ctx, r); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteOIDCTokens(ctx, "sess-2"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.GetOIDCTokens(ctx, "sess-2"); !errors.Is(err, ErrNotFound) {
				t.Errorf("after delete: err = %v, want ErrNotFound", err)
			}
		})
	})
}
