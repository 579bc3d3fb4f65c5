package store

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/testenv/pgtest"
)

// TestPostgresConcurrentOpensMigrateOnce: replicas starting at the same
// moment against a fresh database all open it, and the schema is applied
// once.
func TestPostgresConcurrentOpensMigrateOnce(t *testing.T) {
	url := pgtest.Start(t)
	want, err := loadMigrations(migrationFiles, "migrations/postgres")
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	stores := make([]*Postgres, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			stores[i], errs[i] = OpenPostgres(context.Background(), url, Options{})
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("open #%d: %v", i, err)
			continue
		}
		defer stores[i].Close()
	}
	if t.Failed() {
		return
	}
	ctx := context.Background()
	var rows int
	if err := stores[0].pool.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	v, err := stores[n-1].SchemaVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rows != len(want) || v != len(want) {
		t.Errorf("after %d concurrent opens: %d migration rows, version %d; want %d and %d", n, rows, v, len(want), len(want))
	}
}

// TestPostgresRefusesNewerSchema: a binary older than the database (a
// rolled-back deploy next to upgraded replicas) refuses to run on it,
// naming both versions.
func TestPostgresRefusesNewerSchema(t *testing.T) {
	url := pgtest.Start(t)
	s := openPGTest(t, url, nil)
	if _, err := s.pool.Exec(context.Background(), `INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, '0999_future.sql', 0)`); err != nil {
		t.Fatal(err)
	}
	ms, err := loadMigrations(migrationFiles, "migrations/postgres")
	if err != nil {
		t.Fatal(err)
	}
	_, err = OpenPostgres(context.Background(), url, Options{})
	if err == nil || !strings.Contains(err.Error(), "schema version 999 is newer than this sekisho binary supports ("+fmt.Sprint(len(ms))+")") {
		t.Fatalf("OpenPostgres on a newer schema = %v, want a 'version 999 is newer than this sekisho binary supports (%d)' error", err, len(ms))
	}
}

// TestPostgresLogsSeenOnceUnderConcurrentWriters: pollers reading "seq >
// cursor" while several replicas write see every row of every log exactly
// once. Writers hold their transaction open for a random moment after
// inserting, so without the table lock a higher seq would commit first and
// the poller's cursor would step past the lower one (the missed
// revocation attack: a logout or password change that one replica never
// applies).
func TestPostgresLogsSeenOnceUnderConcurrentWriters(t *testing.T) {
	url := pgtest.Start(t)
	const writers, each = 4, 15
	setup := openPGTest(t, url, nil)
	ctx := context.Background()
	for w := range writers {
		if err := setup.CreateUser(ctx, User{Name: fmt.Sprintf("user%d", w)}); err != nil {
			t.Fatal(err)
		}
	}
	type log struct {
		name  string
		write func(s *Postgres, w, i int) error
		since func(s *Postgres, seq int64) ([]int64, error)
	}
	logs := []log{
		{"revocations", func(s *Postgres, w, i int) error {
			if i%2 == 0 { // the log is written by SetPassword too
				return s.SetPassword(ctx, fmt.Sprintf("user%d", w), "h")
			}
			return s.AddRevocation(ctx, session.Revocation{SessionID: fmt.Sprintf("s-%d-%d", w, i)})
		}, func(s *Postgres, seq int64) ([]int64, error) {
			rs, err := s.RevocationsSince(ctx, seq)
			var out []int64
			for _, r := range rs {
				out = append(out, r.Seq)
			}
			return out, err
		}},
		{"api_key_changes", func(s *Postgres, w, i int) error {
			id := fmt.Sprintf("k%dx%d", w, i)
			if err := s.CreateAPIKey(ctx, APIKey{ID: id, Name: id, SecretHash: bytes.Repeat([]byte{1}, 32), Routes: []string{"r"}}); err != nil {
				return err
			}
			_, err := s.RevokeAPIKey(ctx, id)
			return err
		}, func(s *Postgres, seq int64) ([]int64, error) {
			cs, err := s.APIKeyChangesSince(ctx, seq)
			var out []int64
			for _, c := range cs {
				out = append(out, c.Seq)
			}
			return out, err
		}},
		{"account_unlocks", func(s *Postgres, w, i int) error {
			return s.UnlockUser(ctx, fmt.Sprintf("user%d", w))
		}, func(s *Postgres, seq int64) ([]int64, error) {
			us, err := s.UnlocksSince(ctx, seq)
			var out []int64
			for _, u := range us {
				out = append(out, u.Seq)
			}
			return out, err
		}},
	}
	for _, l := range logs {
		t.Run(l.name, func(t *testing.T) {
			var wg sync.WaitGroup
			errs := make(chan error, writers*each)
			for w := range writers {
				s := openPGTest(t, url, nil) // one replica per writer
				s.testHookLogged = func(string) { time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond) }
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						if err := l.write(s, w, i); err != nil {
							errs <- err
						}
					}
				}()
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()

			poller := openPGTest(t, url, nil)
			seen := map[int64]int{}
			var cursor int64
			poll := func() {
				t.Helper()
				for {
					seqs, err := l.since(poller, cursor)
					if err != nil {
						t.Fatal(err)
					}
					for _, s := range seqs {
						seen[s]++
						cursor = s
					}
					if len(seqs) == 0 {
						return
					}
				}
			}
			for running := true; running; {
				select {
				case <-done:
					running = false
				default:
					poll()
				}
			}
			close(errs)
			for err := range errs {
				t.Errorf("writer: %v", err)
			}
			poll() // after the last commit
			all, err := l.since(poller, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(all) == 0 {
				t.Fatal("no rows written")
			}
			var missed []int64
			for _, s := range all {
				if seen[s] != 1 {
					missed = append(missed, s)
				}
			}
			if len(missed) > 0 {
				t.Errorf("%d of %d rows not seen exactly once by the poller (seqs %v): a row committed after a higher seq was read", len(missed), len(all), missed)
			}
		})
	}
}

// TestPostgresConcurrentRevokeOneChange: two replicas revoking the same
// key at once record one revocation time and one change row, as SQLite's
// single writer does.
func TestPostgresConcurrentRevokeOneChange(t *testing.T) {
	url := pgtest.Start(t)
	ctx := context.Background()
	first, second := openPGTest(t, url, nil), openPGTest(t, url, nil)
	if err := first.CreateAPIKey(ctx, testKey("aaaaaaaaaaaa", "ci-bot")); err != nil {
		t.Fatal(err)
	}
	before, err := first.LatestAPIKeyChange(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inTx, release := make(chan struct{}), make(chan struct{})
	first.testHookLogged = func(string) { close(inTx); <-release }
	firstDone := make(chan error, 1)
	go func() { _, err := first.RevokeAPIKey(ctx, "ci-bot"); firstDone <- err }()
	<-inTx // the first revoke has written and not committed
	secondDone := make(chan error, 1)
	go func() { _, err := second.RevokeAPIKey(ctx, "aaaaaaaaaaaa"); secondDone <- err }()
	time.Sleep(200 * time.Millisecond) // let the second reach the key's row
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	if err := <-secondDone; err != nil {
		t.Fatal(err)
	}
	cs, err := first.APIKeyChangesSince(ctx, before)
	if err != nil || len(cs) != 1 {
		t.Errorf("change rows after two concurrent revokes = %+v, %v; want one", cs, err)
	}
}

// TestPostgresConcurrentTouchesDoNotDeadlock: replicas flush last-use
// times of overlapping key sets at once; Postgres would abort one of two
// transactions that lock rows in opposite orders.
func TestPostgresConcurrentTouchesDoNotDeadlock(t *testing.T) {
	url := pgtest.Start(t)
	ctx := context.Background()
	setup := openPGTest(t, url, nil)
	used := map[string]time.Time{}
	for i := range 20 {
		id := fmt.Sprintf("key%02d", i)
		if err := setup.CreateAPIKey(ctx, testKey(id, id)); err != nil {
			t.Fatal(err)
		}
		used[id] = t0.Add(time.Duration(i) * time.Second)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*25)
	for range 4 {
		s := openPGTest(t, url, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				if err := s.TouchAPIKeys(ctx, used); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent TouchAPIKeys: %v", err)
	}
}

// TestPostgresURLPasswordNotShown: the password in the URL appears in no
// message, neither Location nor a parse error.
func TestPostgresURLPasswordNotShown(t *testing.T) {
	url := pgtest.Start(t) // trust auth: any password is accepted
	withPW := strings.Replace(url, "postgres://sekisho@", "postgres://sekisho:hunter2@", 1)
	s, err := OpenPostgres(context.Background(), withPW, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if loc := s.Location(); strings.Contains(loc, "hunter2") || !strings.HasPrefix(loc, "postgres://sekisho@127.0.0.1:") {
		t.Errorf("Location() = %q, want postgres://sekisho@127.0.0.1:PORT/DB without the password", loc)
	}
	for _, bad := range []string{"postgres://sekisho:hunter2@127.0.0.1:notaport/db", "postgres://sekisho:hunter2@127.0.0.1/db?pool_max_conns=many"} {
		_, err := OpenPostgres(context.Background(), bad, Options{})
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("OpenPostgres(bad url) = %v, want an error without the password", err)
		}
	}
	if _, err := OpenPostgres(context.Background(), "", Options{}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("OpenPostgres(\"\") = %v, want an 'empty' error", err)
	}
}

func TestPostgresCallsAfterCloseFail(t *testing.T) {
	s := openPGTest(t, pgtest.Start(t), nil)
	s.Close()
	if _, err := s.CountUsers(context.Background()); err == nil {
		t.Error("CountUsers after Close = nil error")
	}
}

// The attack: a database on another machine reached with libpq's default
// sslmode "prefer", which takes a plain-text connection when offered one
// (an attacker on the path offers it) and never checks the certificate.
// Without an sslmode of its own, a remote URL gets verify-full; a
// loopback or socket one is left alone.
func TestRemotePostgresGetsVerifiedTLSByDefault(t *testing.T) {
	for _, tc := range []struct {
		url      string
		wantTLS  bool
		fallback bool
	}{
		{"postgres://u@db.internal:5432/sekisho", true, false},
		{"host=10.0.0.5 user=u dbname=sekisho", true, false},
		{"postgres://u@db.internal:5432/sekisho?pool_max_conns=4", true, false},
		{"postgres://u@db.internal:5432/sekisho?sslmode=disable", false, false}, // the operator's explicit choice
		{"postgres://u@127.0.0.1:5432/sekisho", true, true},                     // local: libpq's default stays
		{"host=/var/run/postgresql user=u dbname=sekisho", false, false},
	} {
		t.Run(tc.url, func(t *testing.T) {
			cfg, err := pgConfig(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			c := cfg.ConnConfig
			if (c.TLSConfig != nil) != tc.wantTLS {
				t.Fatalf("TLS = %v, want %v", c.TLSConfig != nil, tc.wantTLS)
			}
			if tc.wantTLS && !tc.fallback && (c.TLSConfig.InsecureSkipVerify || len(c.Fallbacks) != 0) {
				t.Errorf("remote database: InsecureSkipVerify %v, %d plain-text fallbacks; want verified TLS only", c.TLSConfig.InsecureSkipVerify, len(c.Fallbacks))
			}
		})
	}
}
