package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type run struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, stdin string, args ...string) run {
	t.Helper()
	var out, errb strings.Builder
	code := Main(append([]string{"sekisho"}, args...), Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb})
	return run{code, out.String(), errb.String()}
}

func writeConfig(t *testing.T, body string) (dir, path string) {
	dir = t.TempDir()
	path = filepath.Join(dir, "sekisho.yaml")
	body = strings.ReplaceAll(body, "{{DATA}}", filepath.Join(dir, "data"))
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

const goodConfig = `version: 1
data_dir: {{DATA}}
pools: [{name: app, urls: ["http://127.0.0.1:9"]}]
routes: [{name: app, host: "*", pool: app, policy: {allow_authenticated: true}}]
`

func TestCheck(t *testing.T) {
	_, good := writeConfig(t, goodConfig)
	_, bad := writeConfig(t, `version: 1
pools: [{name: app, urls: ["http://127.0.0.1:9"]}]
routes:
  - {name: dify-console, host: "*", pool: app}
  - {name: dify-api, host: "*", path: /api, pool: missing, policy: {public: true}}
`)
	_, risky := writeConfig(t, `version: 1
pools: [{name: app, urls: ["http://127.0.0.1:9"]}]
routes: [{name: app, host: "*", pool: app, policy: {public: true}}]
`)
	_, badTLS := writeConfig(t, `version: 1
listen: {tls: {mode: files, cert_file: /nonexistent/tls.crt, key_file: /nonexistent/tls.key}}
session: {keys: ["env:SEKISHO_TEST_UNSET_KEY"]}
pools: [{name: app, urls: ["http://127.0.0.1:9"]}]
routes: [{name: app, host: "*", pool: app, policy: {public: true}}]
`)
	_, badRules := writeConfig(t, `version: 1
rules:
  - {priority: 10, description: a, match: {ip_ranges: ["10.0.0.1/8"]}, action: deny}
  - {priority: 10, description: b, match: {expr: 'request.pth == "/x"'}, action: deny}
  - {priority: 20, description: c, match: {expr: 'request.path'}, action: deny}
  - {priority: 30, description: d, match: {expr: 'true'}, action: throttle, rate: {count: 0, per: 1m}}
  - {priority: 40, description: e, match: {expr: 'identity.user == "x"'}, action: deny}
waf: {groups: [sqli, nosuch]}
pools: [{name: app, urls: ["http://127.0.0.1:9"]}]
routes: [{name: app, host: "*", pool: app, policy: {public: true}}]
`)
	tests := []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"every_rule_problem_named_with_file_line", []string{"check", "--config", badRules}, ExitConfig, []string{
			badRules + `:8: waf: unknown rule group "nosuch"`,
			badRules + `:4: rule 10 "b": priority 10 is also the priority of rule "a"`,
			badRules + `:3: rule 10 "a": ip_ranges: "10.0.0.1/8" has host bits set`,
			badRules + `:4: rule 10 "b": expr 1:8: undeclared reference to 'request.pth'`,
			badRules + `:5: rule 20 "c": expr returns string, not bool`,
			badRules + `:6: rule 30 "d": rate: rate of zero`,
			badRules + `:7: rule 40 "e": expr uses identity.user`}},
		{"embedded_quickstart", []string{"check"}, ExitOK, []string{"ok: examples/quickstart.yaml (embedded): 1 route(s), 1 pool(s)"}},
		{"good_file", []string{"check", "--config", good}, ExitOK, []string{"ok: ", "1 route(s)"}},
		{"every_problem_with_file_line_and_name", []string{"check", "--config", bad}, ExitConfig, []string{
			bad + `:4: route "dify-console": has no policy`, bad + `:5: route "dify-api": pool "missing" is not defined`}},
		{"risky_warns", []string{"check", "--config", risky}, ExitOK, []string{`warning: `, `route "app" is public`}},
		{"risky_strict_fails", []string{"check", "--strict", "--config", risky}, ExitConfig, []string{"--strict"}},
		{"missing_file", []string{"check", "--config", "/nonexistent/sekisho.yaml"}, ExitConfig, []string{"no such file"}},
		{"tls_files_and_secret_all_listed", []string{"check", "--config", badTLS}, ExitConfig, []string{"/nonexistent/tls.crt", "/nonexistent/tls.key", "SEKISHO_TEST_UNSET_KEY is not set"}},
		{"unknown_flag", []string{"check", "--nope"}, ExitUsage, []string{"flag provided but not defined"}},
		{"unknown_command", []string{"frobnicate"}, ExitUsage, []string{`unknown command "frobnicate"`}},
		{"no_command", nil, ExitUsage, []string{"Usage: sekisho <command>"}},
		{"help", []string{"--help"}, ExitOK, []string{"serve", "check", "user", "version"}},
		{"serve_help", []string{"serve", "--help"}, ExitOK, []string{"-config"}},
		{"version", []string{"version"}, ExitOK, []string{"sekisho dev"}},
		{"completion_bash", []string{"completion", "bash"}, ExitOK, []string{"complete -F _sekisho sekisho"}},
		{"completion_unknown_shell", []string{"completion", "tcsh"}, ExitUsage, []string{"bash or zsh"}},
		{"serve_refuses_bad_config", []string{"serve", "--config", bad}, ExitConfig, []string{"has no policy"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, "", tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tc.code, r.stdout, r.stderr)
			}
			all := r.stdout + r.stderr
			for _, c := range tc.contains {
				if !strings.Contains(all, c) {
					t.Errorf("output lacks %q:\n%s", c, all)
				}
			}
		})
	}
}

func TestUserCommands(t *testing.T) {
	_, cfg := writeConfig(t, goodConfig)
	steps := []struct {
		name     string
		stdin    string
		args     []string
		code     int
		contains string
	}{
		{"add", "a long enough password\n", []string{"user", "add", "Alice", "--email", "alice@example.com", "--groups", "admins, staff", "--config", cfg}, ExitOK, `added user "alice"`},
		{"add_duplicate", "a long enough password\n", []string{"user", "add", "alice", "--config", cfg}, ExitError, "already exists"},
		{"add_short_password", "short\n", []string{"user", "add", "bob", "--config", cfg}, ExitError, "at least 12"},
		{"add_bad_name", "a long enough password\n", []string{"user", "add", "bob smith", "--config", cfg}, ExitUsage, "bob smith"},
		{"add_no_password", "", []string{"user", "add", "carol", "--config", cfg}, ExitError, "no password"},
		{"list", "", []string{"user", "list", "--config", cfg}, ExitOK, "alice  alice@example.com  admins,staff  active"},
		{"passwd", "another long password\n", []string{"user", "passwd", "alice", "--config", cfg}, ExitOK, "password changed"},
		{"passwd_unknown", "another long password\n", []string{"user", "passwd", "nobody", "--config", cfg}, ExitError, `no user "nobody"`},
		{"disable", "", []string{"user", "disable", "alice", "--config", cfg}, ExitOK, "disabled"},
		{"list_disabled", "", []string{"user", "list", "--config", cfg}, ExitOK, "disabled"},
		{"enable", "", []string{"user", "enable", "alice", "--config", cfg}, ExitOK, "enabled"},
		{"no_subcommand", "", []string{"user"}, ExitUsage, "add, passwd"},
		{"unknown_subcommand", "", []string{"user", "delete", "alice", "--config", cfg}, ExitUsage, "unknown user command"},
		{"missing_name", "", []string{"user", "disable", "--config", cfg}, ExitUsage, "name the account"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r := runCLI(t, s.stdin, s.args...)
			if r.code != s.code || !strings.Contains(r.stdout+r.stderr, s.contains) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s%s", r.code, s.code, s.contains, r.stdout, r.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, "long enough password") {
				t.Fatal("a command echoed the password")
			}
		})
	}
}

func TestPolicyTest(t *testing.T) {
	r := runCLI(t, "", "policy", "test", "../../examples/policy-tests.yaml", "--config", "../../examples/rules.yaml")
	if r.code != ExitOK || !strings.Contains(r.stdout, "8 passed, 0 failed") {
		t.Fatalf("shipped policy tests: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A rule change that lets the office rule go is caught by the cases.
	src, err := os.ReadFile("../../examples/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	weakened := strings.Replace(string(src), `not_ip_ranges: ["10.0.0.0/8"]`, `not_ip_ranges: ["0.0.0.0/0"]`, 1)
	_, cfg := writeConfig(t, weakened)
	r = runCLI(t, "", "policy", "test", "../../examples/policy-tests.yaml", "--config", cfg)
	if r.code != ExitError || !strings.Contains(r.stdout, "FAIL") || !strings.Contains(r.stdout, "members page from home") {
		t.Fatalf("weakened rule not caught: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "policy", "test")
	if r.code != ExitUsage {
		t.Fatalf("no cases file: exit %d", r.code)
	}
}
