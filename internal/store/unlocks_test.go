package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/testclock"
)

func TestUnlockUserSeenByOtherProcess(t *testing.T) {
	forBackends(t, func(t *testing.T, open opener) {
		clk := testclock.New(t0)
		server, cli := open(t, clk), open(t, clk)
		ctx := context.Background()
		if err := cli.CreateUser(ctx, User{Name: "alice"}); err != nil {
			t.Fatal(err)
		}
		seq, err := server.LatestUnlock(ctx)
		if err != nil || seq != 0 {
			t.Fatalf("LatestUnlock on a fresh store = %d, %v; want 0", seq, err)
		}
		if err := cli.UnlockUser(ctx, "Alice"); err != nil {
			t.Fatal(err)
		}
		us, err := server.UnlocksSince(ctx, seq)
		if err != nil || len(us) != 1 || us[0].User != "alice" || !us[0].At.Equal(t0) || us[0].Seq <= seq {
			t.Fatalf("server sees unlocks %+v, %v; want one of alice at %v", us, err, t0)
		}
		if latest, err := server.LatestUnlock(ctx); err != nil || latest != us[0].Seq {
			t.Fatalf("LatestUnlock = %d, %v; want %d", latest, err, us[0].Seq)
		}
		if again, err := server.UnlocksSince(ctx, us[0].Seq); err != nil || len(again) != 0 {
			t.Fatalf("UnlocksSince(latest) = %+v, %v; want none", again, err)
		}
	})
}

func TestUnlockUnknownUserIsNotFound(t *testing.T) {
	forBackends(t, func(t *testing.T, open opener) {
		s := open(t, nil)
		ctx := context.Background()
		for _, name := range []string{"nobody", "bad name", ""} {
			if err := s.UnlockUser(ctx, name); !errors.Is(err, ErrNotFound) {
				t.Errorf("UnlockUser(%q) = %v; want ErrNotFound", name, err)
			}
		}
		if n, err := s.LatestUnlock(ctx); err != nil || n != 0 {
			t.Errorf("a refused unlock wrote a row: latest %d, %v", n, err)
		}
	})
}

// TestUnlockPrunesOldRowsNeverReusingSeq: the log stays small, and a
// pruned seq is never handed out again (a poller's cursor would skip it).
func TestUnlockPrunesOldRowsNeverReusingSeq(t *testing.T) {
	forBackends(t, func(t *testing.T, open opener) {
		clk := testclock.New(t0)
		s := open(t, clk)
		ctx := context.Background()
		if err := s.CreateUser(ctx, User{Name: "alice"}); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := s.UnlockUser(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
		}
		clk.Advance(UnlockKeep + time.Minute)
		if err := s.UnlockUser(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		us, err := s.UnlocksSince(ctx, 0)
		if err != nil || len(us) != 1 || us[0].Seq != 4 {
			t.Fatalf("after pruning: %+v, %v; want only the new row with seq 4", us, err)
		}
	})
}
