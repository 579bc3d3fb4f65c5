package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/testenv/pgtest"
)

// A single-box install moves to a fleet: its accounts and keys are copied
// into Postgres, where the fleet's config finds them; a second copy is
// refused. Then `store migrate` on a new database says what it would do
// with --dry-run, and does it without.
func TestStoreCopyAndMigrate(t *testing.T) {
	t.Setenv("SEKISHO_TEST_PG", pgtest.Start(t))
	boxDir, boxCfg := writeConfig(t, goodConfig)
	if r := runCLI(t, "pw-for-ana-123456\n", "user", "add", "ana", "--groups", "eng", "--password-stdin", "--config", boxCfg); r.code != 0 {
		t.Fatalf("user add: %+v", r)
	}
	if r := runCLI(t, "", "apikey", "create", "--name", "ci", "--route", "app", "--config", boxCfg); r.code != 0 {
		t.Fatalf("apikey create: %+v", r)
	}
	_, fleetCfg := writeConfig(t, strings.Replace(goodConfig, "data_dir: {{DATA}}\n", "data_dir: {{DATA}}\nstore: {driver: postgres, url: env:SEKISHO_TEST_PG}\n", 1))

	data := filepath.Join(boxDir, "data")
	r := runCLI(t, "", "store", "copy", "--from", "sqlite:"+data, "--to", "postgres:env:SEKISHO_TEST_PG")
	if r.code != 0 || !strings.Contains(r.stdout, "1 accounts, 1 API keys") {
		t.Fatalf("store copy: %+v", r)
	}
	if r := runCLI(t, "", "user", "list", "--config", fleetCfg); r.code != 0 || !strings.Contains(r.stdout, "ana") || !strings.Contains(r.stdout, "eng") {
		t.Fatalf("the fleet does not list the copied account: %+v", r)
	}
	if r := runCLI(t, "", "apikey", "list", "--config", fleetCfg); r.code != 0 || !strings.Contains(r.stdout, "ci") {
		t.Fatalf("the fleet does not list the copied key: %+v", r)
	}
	// Into the fleet's own store (the default --to), which is no longer empty.
	r = runCLI(t, "", "store", "copy", "--from", "sqlite:"+data, "--config", fleetCfg)
	if r.code != ExitError || !strings.Contains(r.stderr, "not empty") || !strings.Contains(r.stderr, "nothing was copied") {
		t.Fatalf("a second copy: %+v", r)
	}
	for _, tc := range []struct{ args, want string }{
		{"store copy --from /data", `want sqlite:DIR`},
		{"store copy --from sqlite:/nonexistent", `no such file`},
		{"store copy --from sqlite:" + data + " --to mysql:x", `want postgres:URL`},
		{"store copy --from sqlite:" + data + " --config " + boxCfg, `uses the SQLite store`},
		{"store migrate --from sqlite:x", `copy's flags`},
		{"store", `migrate or copy`},
	} {
		if r := runCLI(t, "", strings.Fields(tc.args)...); r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: %+v, want an error with %q", tc.args, r, tc.want)
		}
	}

	t.Setenv("SEKISHO_TEST_PG", pgtest.Start(t)) // a new, empty database
	r = runCLI(t, "", "store", "migrate", "--dry-run", "--config", fleetCfg)
	if r.code != 0 || !strings.Contains(r.stdout, "schema version 0") || !strings.Contains(r.stdout, "would apply 0001_init.sql") || !strings.Contains(r.stdout, "nothing was applied") {
		t.Fatalf("migrate --dry-run: %+v", r)
	}
	if r := runCLI(t, "", "store", "migrate", "--dry-run", "--config", fleetCfg); !strings.Contains(r.stdout, "schema version 0") {
		t.Fatalf("--dry-run applied something: %+v", r)
	}
	if r := runCLI(t, "", "store", "migrate", "--config", fleetCfg); r.code != 0 || !strings.Contains(r.stdout, "applied 2 migration(s)") {
		t.Fatalf("migrate: %+v", r)
	}
	if r := runCLI(t, "", "store", "migrate", "--config", fleetCfg); r.code != 0 || !strings.Contains(r.stdout, "up to date") {
		t.Fatalf("migrate again: %+v", r)
	}
}

// With the database down, a command that writes fails at once with an
// error naming the database (never its password), and writes nothing.
func TestWritesFailClearlyWithPostgresDown(t *testing.T) {
	t.Setenv("SEKISHO_TEST_PG", "postgres://sekisho:hunter2@127.0.0.1:1/sekisho?sslmode=disable&connect_timeout=2")
	_, cfg := writeConfig(t, strings.Replace(goodConfig, "data_dir: {{DATA}}\n", "data_dir: {{DATA}}\nstore: {driver: postgres, url: env:SEKISHO_TEST_PG}\n", 1))
	r := runCLI(t, "pw-for-ana-123456\n", "user", "add", "ana", "--password-stdin", "--config", cfg)
	if r.code != ExitError || !strings.Contains(r.stderr, "store (postgres, env:SEKISHO_TEST_PG)") || !strings.Contains(r.stderr, "127.0.0.1") {
		t.Fatalf("user add with the database down: %+v", r)
	}
	if strings.Contains(r.stderr, "hunter2") {
		t.Fatalf("the error shows the database password: %s", r.stderr)
	}
}
