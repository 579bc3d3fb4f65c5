package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/testclock"
	"github.com/sekisho/sekisho/internal/testenv/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// opener opens a new handle to the test's database on every call, as
// another process (the CLI, another replica) would have. A nil clk is a
// fresh clock at t0.
type opener func(t *testing.T, clk *fakeClock) Backend

// forBackends runs test once per backend (subtests "sqlite" and
// "postgres"), each with a fresh, empty database, so the backends cannot
// drift: a behaviour test belongs here unless it is about one backend's
// mechanics. Postgres is skipped where its binaries are missing, and fails
// then under CI=true (see pgtest).
func forBackends(t *testing.T, test func(t *testing.T, open opener)) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state", "sekisho.db")
		test(t, func(t *testing.T, clk *fakeClock) Backend { return openTest(t, path, clk) })
	})
	t.Run("postgres", func(t *testing.T) {
		url := pgtest.Start(t)
		test(t, func(t *testing.T, clk *fakeClock) Backend { return openPGTest(t, url, clk) })
	})
}

func openPGTest(t *testing.T, url string, clk *fakeClock) *Postgres {
	t.Helper()
	if clk == nil {
		clk = testclock.New(t0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := OpenPostgres(ctx, url, Options{Now: clk.Now, MaxSessionLifetime: 12 * time.Hour})
	if err != nil {
		t.Fatalf("OpenPostgres(%q): %v", url, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}
