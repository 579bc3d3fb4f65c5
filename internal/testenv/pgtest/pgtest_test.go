package pgtest

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestStartGivesSeparateEmptyDatabases: a table made in one test's
// database is not in another's, so tests cannot see each other's rows.
func TestStartGivesSeparateEmptyDatabases(t *testing.T) {
	ctx := context.Background()
	connect := func(url string) *pgx.Conn {
		t.Helper()
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	a, b := Start(t), Start(t)
	if a == b {
		t.Fatalf("two Start calls returned the same database %s", a)
	}
	ca, cb := connect(a), connect(b)
	if _, err := ca.Exec(ctx, `CREATE TABLE only_in_a (x int)`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := cb.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("table made in database a is visible in database b")
	}
	var addr string
	if err := ca.QueryRow(ctx, `SELECT host(inet_server_addr())`).Scan(&addr); err != nil {
		t.Fatal(err)
	}
	if addr != "127.0.0.1" {
		t.Errorf("server address %q, want 127.0.0.1 (loopback only)", addr)
	}
}
