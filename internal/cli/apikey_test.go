package cli

import (
	"context"
	"errors"
	"flag"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/apikey"
	"github.com/sekisho/sekisho/internal/store"
)

// runAPIKeyCLI runs "sekisho apikey ..." through Main once the command is
// registered, and through runAPIKey with Main's exit-code mapping until then.
func runAPIKeyCLI(t *testing.T, args ...string) run {
	t.Helper()
	for _, c := range commands() {
		if c.name == "apikey" {
			return runCLI(t, "", append([]string{"apikey"}, args...)...)
		}
	}
	var out, errb strings.Builder
	err := runAPIKey(Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}, args)
	code := ExitOK
	var ue usageError
	var ce configError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &ue):
		code = ExitUsage
	case errors.As(err, &ce):
		code = ExitConfig
	default:
		code = ExitError
	}
	if err != nil {
		errb.WriteString(err.Error())
	}
	return run{code, out.String(), errb.String()}
}

const apikeyConfig = `version: 1
data_dir: {{DATA}}
pools: [{name: app, urls: ["http://127.0.0.1:9"]}]
routes:
  - {name: flowise-api, host: "*", path: /api, pool: app, policy: {allow_authenticated: true}}
  - {name: dify-api, host: "*", pool: app, policy: {allow_authenticated: true}}
`

var keyPattern = regexp.MustCompile(`^sekisho_[a-z2-7]{12}_[A-Za-z0-9_-]{43}\n$`)

func TestAPIKeyCommands(t *testing.T) {
	dir, cfg := writeConfig(t, apikeyConfig)
	var created string
	steps := []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"create", []string{"create", "--name", "CI-Bot", "--route", "flowise-api", "--methods", "post,GET", "--paths", "/api/v1", "--config", cfg},
			ExitOK, []string{`created api key "ci-bot"`, "shown only this once", "expires 20"}},
		{"create_two_routes_never_expiring", []string{"create", "--name", "deployer", "--route", "flowise-api,dify-api", "--expires", "never", "--config", cfg},
			ExitOK, []string{"flowise-api, dify-api, never expires"}},
		{"create_duplicate_name", []string{"create", "--name", "ci-bot", "--route", "dify-api", "--config", cfg}, ExitError, []string{`"ci-bot" already exists`}},
		{"create_unknown_route", []string{"create", "--name", "x", "--route", "nope", "--config", cfg}, ExitUsage, []string{`--route "nope": no such route`, "flowise-api, dify-api"}},
		{"create_without_route", []string{"create", "--name", "x", "--config", cfg}, ExitUsage, []string{"--route is required"}},
		{"create_without_name", []string{"create", "--route", "dify-api", "--config", cfg}, ExitUsage, []string{"--name is required"}},
		{"create_bad_expiry", []string{"create", "--name", "x", "--route", "dify-api", "--expires", "0d", "--config", cfg}, ExitUsage, []string{`--expires: lifetime "0d"`}},
		{"create_bad_method", []string{"create", "--name", "x", "--route", "dify-api", "--methods", "FETCH", "--config", cfg}, ExitUsage, []string{`method "FETCH"`}},
		{"create_unnormalised_path", []string{"create", "--name", "x", "--route", "dify-api", "--paths", "/api/./v1", "--config", cfg}, ExitUsage, []string{`use "/api/v1"`}},
		{"list", []string{"list", "--config", cfg}, ExitOK, []string{"NAME", "LAST USED", "ci-bot", "POST,GET  /api/v1", "never", "active", "deployer", "flowise-api,dify-api  any"}},
		{"revoke_by_name", []string{"revoke", "ci-bot", "--config", cfg}, ExitOK, []string{`revoked api key "ci-bot"`}},
		{"revoke_again_is_fine", []string{"revoke", "ci-bot", "--config", cfg}, ExitOK, []string{`revoked api key "ci-bot"`}},
		{"list_shows_revoked", []string{"list", "--config", cfg}, ExitOK, []string{"revoked"}},
		{"revoke_unknown", []string{"revoke", "nobody", "--config", cfg}, ExitError, []string{`no api key with name or id "nobody"`}},
		{"revoke_without_name", []string{"revoke", "--config", cfg}, ExitUsage, []string{"name the key"}},
		{"no_subcommand", nil, ExitUsage, []string{"create, list or revoke"}},
		{"unknown_subcommand", []string{"delete", "x", "--config", cfg}, ExitUsage, []string{"unknown apikey command"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r := runAPIKeyCLI(t, s.args...)
			if r.code != s.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, s.code, r.stdout, r.stderr)
			}
			for _, c := range s.contains {
				if !strings.Contains(r.stdout+r.stderr, c) {
					t.Errorf("output lacks %q:\n%s%s", c, r.stdout, r.stderr)
				}
			}
			if s.name == "create" {
				if !keyPattern.MatchString(r.stdout) {
					t.Fatalf("stdout is not exactly one key line: %q", r.stdout)
				}
				created = strings.TrimSpace(r.stdout)
			}
			if created != "" && s.name != "create" && strings.Contains(r.stdout+r.stderr, created[len(apikey.Prefix)+apikey.IDLen+1:]) {
				t.Fatal("a command after create printed the key's secret")
			}
		})
	}

	// The store holds the hash of the printed key, never the key.
	st, err := store.OpenSQLite(filepath.Join(dir, "data", "sekisho.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tok, err := apikey.ParseToken(created)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := st.GetAPIKey(context.Background(), tok.ID)
	if err != nil {
		t.Fatal(err)
	}
	h := tok.Hash()
	if string(rec.SecretHash) != string(h[:]) || rec.RevokedAt.IsZero() {
		t.Fatalf("stored record %+v does not hold the key's hash or is not revoked", rec)
	}
}
