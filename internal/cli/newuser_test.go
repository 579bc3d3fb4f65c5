package cli

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/apikey"
	"github.com/sekisho/sekisho/internal/store"
)

// relConfig keeps its data next to the file, the way an operator writes it.
const relConfig = `version: 1
data_dir: state
pools: [{name: app, urls: ["http://127.0.0.1:9"]}]
routes: [{name: app, host: "*", pool: app, policy: {allow_authenticated: true}}]
`

// TestCommandsFromAnotherWorkingDirectory: user and apikey run from any
// folder open the database next to the config file, not an empty one in
// the working directory; every "found nothing" names the file it opened.
func TestCommandsFromAnotherWorkingDirectory(t *testing.T) {
	dir, cfg := writeConfig(t, relConfig)
	db := filepath.Join(dir, "state", "sekisho.db")
	t.Chdir(dir)
	if r := runCLI(t, "a long enough password\n", "user", "add", "alice", "--config", "sekisho.yaml"); r.code != ExitOK || !strings.Contains(r.stdout, db) {
		t.Fatalf("add: exit %d, want the store %s named\n%s%s", r.code, db, r.stdout, r.stderr)
	}
	elsewhere := t.TempDir()
	t.Chdir(elsewhere)
	rel, err := filepath.Rel(elsewhere, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		stdin    string
		args     []string
		code     int
		contains string
	}{
		{"list_absolute_config", "", []string{"user", "list", "--config", cfg}, ExitOK, "alice"},
		{"list_relative_config", "", []string{"user", "list", "--config", rel}, ExitOK, "alice"},
		{"passwd_unknown_names_store", "another long password\n", []string{"user", "passwd", "nobody", "--config", rel}, ExitError, `no user "nobody" in ` + db},
		{"disable_unknown_names_store", "", []string{"user", "disable", "nobody", "--config", rel}, ExitError, `no user "nobody" in ` + db},
		{"apikey_list_empty_names_store", "", []string{"apikey", "list", "--config", rel}, ExitOK, "no api keys in " + db},
		{"apikey_revoke_unknown_names_store", "", []string{"apikey", "revoke", "nokey", "--config", rel}, ExitError, "in " + db},
		{"list_data_dir_flag_relative_to_cwd", "", []string{"user", "list", "--config", rel, "--data-dir", "here"}, ExitOK,
			"no accounts in " + filepath.Join(elsewhere, "here", "sekisho.db")},
		{"list_quickstart_in_cwd", "", []string{"user", "list"}, ExitOK, "no accounts in " + filepath.Join(elsewhere, "sekisho-data", "sekisho.db")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.stdin, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stdout+r.stderr, tc.contains) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s%s", r.code, tc.code, tc.contains, r.stdout, r.stderr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(elsewhere, "state")); !os.IsNotExist(err) {
		t.Errorf("a command created %s/state in the working directory (err %v)", elsewhere, err)
	}
}

func TestUserUnlock(t *testing.T) {
	dir, cfg := writeConfig(t, goodConfig)
	if r := runCLI(t, "a long enough password\n", "user", "add", "alice", "--config", cfg); r.code != ExitOK {
		t.Fatalf("add: %s%s", r.stdout, r.stderr)
	}
	r := runCLI(t, "", "user", "unlock", "Alice", "--config", cfg)
	if r.code != ExitOK || !strings.Contains(r.stdout, `unlocked "Alice"`) || !strings.Contains(r.stdout, "within seconds") {
		t.Fatalf("unlock: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The mark the servers poll is in the store.
	st, err := store.OpenSQLite(filepath.Join(dir, "data", "sekisho.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	us, err := st.UnlocksSince(context.Background(), 0)
	if err != nil || len(us) != 1 || us[0].User != "alice" {
		t.Fatalf("unlock log = %+v, %v; want one row for alice", us, err)
	}
	r = runCLI(t, "", "user", "unlock", "nobody", "--config", cfg)
	if r.code != ExitError || !strings.Contains(r.stderr, `no user "nobody" in `) {
		t.Fatalf("unlock unknown: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, "", "user", "unlock", "--config", cfg); r.code != ExitUsage || !strings.Contains(r.stderr, "sekisho user unlock: name the account") {
		t.Fatalf("unlock without a name: exit %d\n%s", r.code, r.stderr)
	}
}

// TestHelpListsConfigFlags: every command that reads a config says so in
// its --help, including the data directory where a store is involved.
func TestHelpListsConfigFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		dataDir bool
	}{
		{[]string{"user", "--help"}, true},
		{[]string{"user", "add", "--help"}, true},
		{[]string{"user", "unlock", "-h"}, true},
		{[]string{"apikey", "--help"}, true},
		{[]string{"apikey", "list", "--help"}, true},
		{[]string{"check", "--help"}, true},
		{[]string{"serve", "--help"}, true},
		{[]string{"policy", "--help"}, false},
		{[]string{"policy", "test", "--help"}, false},
	} {
		t.Run(strings.Join(tc.args, "_"), func(t *testing.T) {
			r := runCLI(t, "", tc.args...)
			if r.code != ExitOK {
				t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			out := r.stdout + r.stderr
			if !strings.Contains(out, "-config") {
				t.Errorf("help lacks --config:\n%s", out)
			}
			if tc.dataDir && !strings.Contains(out, "-data-dir") {
				t.Errorf("help lacks --data-dir:\n%s", out)
			}
		})
	}
}

// TestErrorsPrintOnce: the flag package used to print its error (and the
// whole usage) before Main printed the same error again.
func TestErrorsPrintOnce(t *testing.T) {
	_, bad := writeConfig(t, `version: 1
pools: [{name: app, urls: ["http://127.0.0.1:9"]}]
routes: [{name: app, host: "*", pool: app}]
`)
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"unknown_flag", []string{"check", "--nope"}, ExitUsage, "flag provided but not defined: -nope"},
		{"unknown_flag_subcommand", []string{"user", "add", "bob", "--bogus"}, ExitUsage, "flag provided but not defined: -bogus"},
		{"bad_flag_value", []string{"serve", "--log-level", "loud"}, ExitUsage, "--log-level loud"},
		{"config_problem", []string{"check", "--config", bad}, ExitConfig, `route "app": has no policy`},
		{"config_problem_serve", []string{"serve", "--config", bad}, ExitConfig, `route "app": has no policy`},
		{"config_problem_user", []string{"user", "disable", "nobody", "--config", bad}, ExitConfig, `route "app": has no policy`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, "", tc.args...)
			all := r.stdout + r.stderr
			if r.code != tc.code || strings.Count(all, tc.msg) != 1 {
				t.Fatalf("exit %d (want %d), %q printed %d times (want once):\n%s", r.code, tc.code, tc.msg, strings.Count(all, tc.msg), all)
			}
			if strings.Contains(all, "Flags:") {
				t.Errorf("a mistake printed the whole usage:\n%s", all)
			}
		})
	}
	// A usage error names the subcommand once, not "user: user add:".
	r := runCLI(t, "", "user", "add")
	if !strings.Contains(r.stderr, "sekisho user add: name the account") || strings.Count(r.stderr, "user add") != 2 {
		t.Errorf("usage error: %q", r.stderr)
	}
}

func TestPolicyTestNamesTheConfig(t *testing.T) {
	r := runCLI(t, "", "policy", "test", "../../examples/policy-tests.yaml")
	if !strings.Contains(r.stdout, "against examples/quickstart.yaml (embedded)") {
		t.Errorf("without --config the output does not say which config was tested:\n%s%s", r.stdout, r.stderr)
	}
	r = runCLI(t, "", "policy", "test", "../../examples/policy-tests.yaml", "--config", "../../examples/rules.yaml")
	if r.code != ExitOK || !strings.Contains(r.stdout, "against ../../examples/rules.yaml") {
		t.Errorf("with --config: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestCheckOnPolicyTestTableSaysWhatToRun(t *testing.T) {
	r := runCLI(t, "", "check", "--config", "../../examples/policy-tests.yaml")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "is a policy test table, not a config: run \"sekisho policy test ../../examples/policy-tests.yaml") {
		t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestVersionLine(t *testing.T) {
	settings := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	const rev = "0b2b3290d1c2e3f4a5b6c7d8e9f00112233445566"
	for _, tc := range []struct {
		name   string
		linked string
		bi     *debug.BuildInfo
		want   string
	}{
		{"no_build_info", "dev", nil, "sekisho dev"},
		{"checkout_build", "dev", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: settings("vcs.revision", rev, "vcs.modified", "false")}, "sekisho dev (commit 0b2b3290d1c2, go1.26.8)"},
		{"dirty_tree", "dev", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: settings("vcs.revision", rev, "vcs.modified", "true")}, "sekisho dev (commit 0b2b3290d1c2+dirty, go1.26.8)"},
		{"go_install_at_version", "dev", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"}}, "sekisho v1.4.0 (go1.26.8)"},
		{"linked_version_wins", "v1.5.0-rc1", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"},
			Settings: settings("vcs.revision", rev)}, "sekisho v1.5.0-rc1 (commit 0b2b3290d1c2, go1.26.8)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := versionLine(tc.linked, tc.bi); got != tc.want {
				t.Errorf("versionLine = %q, want %q", got, tc.want)
			}
		})
	}
	if r := runCLI(t, "", "version"); r.code != ExitOK || !strings.HasPrefix(r.stdout, "sekisho ") || !strings.Contains(r.stdout, "go1.") {
		t.Errorf("version: exit %d %q", r.code, r.stdout)
	}
}

// TestAPIKeyListShowsLastUseToTheMinute: servers write last use every
// minute; list must show it to the minute, not only the day.
func TestAPIKeyListShowsLastUseToTheMinute(t *testing.T) {
	dir, cfg := writeConfig(t, apikeyConfig)
	r := runCLI(t, "", "apikey", "create", "--name", "ci", "--route", "dify-api", "--config", cfg)
	if r.code != ExitOK {
		t.Fatalf("create: %s%s", r.stdout, r.stderr)
	}
	tok, err := apikey.ParseToken(strings.TrimSpace(r.stdout))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenSQLite(filepath.Join(dir, "data", "sekisho.db"))
	if err != nil {
		t.Fatal(err)
	}
	used := time.Now().UTC().Add(-30 * time.Second).Truncate(time.Second)
	if err := st.TouchAPIKeys(context.Background(), map[string]time.Time{tok.ID: used}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	r = runCLI(t, "", "apikey", "list", "--config", cfg)
	want := used.Format("2006-01-02 15:04")
	if r.code != ExitOK || !regexp.MustCompile(`\bci\b.*`+regexp.QuoteMeta(want)).MatchString(r.stdout) {
		t.Fatalf("list does not show the last use %s:\n%s%s", want, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "every 1m0s") {
		t.Errorf("list does not say how often last use is written:\n%s", r.stderr)
	}
}
