package server

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/secret"
)

// everyStageBroken has a problem for every stage of CheckKeep. The line
// numbers in TestCheckReportsEveryStageInOneRun point into it.
const everyStageBroken = `version: 1
data_dir: DATA
listen:
  tls: {mode: files, cert_file: /nonexistent/tls.crt, key_file: /nonexistent/tls.key}
  trusted_proxies: ["fe80::1%eth0"]
session:
  keys: ["env:CHECK_UNSET_SESSION_KEY", "env:CHECK_SHORT_KEY"]
assertion:
  keys: ["file:/nonexistent/assertion.pem"]
oidc:
  providers:
    - {name: corp, issuer: "https://id.example.com", client_id: c, client_secret: "env:CHECK_UNSET_OIDC"}
redis: {url: "env:CHECK_NOT_REDIS"}
rules_default: maybe
rules:
  - {priority: 10, description: typo, match: {expr: 'request.pth == "/x"'}, action: deny}
  - {priority: 20, description: waf, match: {waf: true}, action: deny}
waf: {groups: [sqli, nosuch]}
pools: [{name: app, builtin: whoami}]
routes:
  - {name: app, host: "*", pool: missing, policy: {allow_authenticated: true}}
`

func brokenEnv() secret.Resolver {
	env := map[string]string{
		"CHECK_SHORT_KEY": "aHVudGVyMmh1bnRlcjI=", // base64 of "hunter2hunter2": 14 bytes, not 32
		"CHECK_NOT_REDIS": "http://:hunter2@cache.internal:6379",
	}
	return secret.Resolver{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
}

func parseBroken(t *testing.T) *config.Config {
	t.Helper()
	c, err := config.Parse("t.yaml", []byte(strings.Replace(everyStageBroken, "DATA", t.TempDir(), 1)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheckReportsEveryStageInOneRun(t *testing.T) {
	checked, err := CheckKeep(parseBroken(t), brokenEnv(), nil)
	if err == nil {
		t.Fatal("CheckKeep accepted a config with a problem in every stage")
	}
	if checked != nil {
		t.Error("CheckKeep returned a Checked for a config that failed")
	}
	got := err.Error()
	for _, want := range []string{
		// validation
		`t.yaml:14: rules_default "maybe": want allow or deny`,
		`t.yaml:21: route "app": pool "missing" is not defined under pools:`,
		// secrets: unresolvable, and resolved but malformed
		`t.yaml:7: session.keys[0]: secret env:CHECK_UNSET_SESSION_KEY: environment variable CHECK_UNSET_SESSION_KEY is not set`,
		`t.yaml:7: session.keys[1] (env:CHECK_SHORT_KEY): session key decodes to 14 bytes, want 32`,
		`t.yaml:9: assertion.keys[0]: secret file:/nonexistent/assertion.pem: no such file or directory`,
		`t.yaml:12: oidc.providers[0] "corp": client_secret: secret env:CHECK_UNSET_OIDC: environment variable CHECK_UNSET_OIDC is not set`,
		`t.yaml:13: redis.url (env:CHECK_NOT_REDIS): not a redis:// or rediss:// URL`,
		// TLS files
		`t.yaml:4: listen.tls: `, `/nonexistent/tls.crt`,
		// trusted proxies: Validate takes a zoned address, clientip does not
		`t.yaml:5: listen.trusted_proxies[0] "fe80::1%eth0": zones are not allowed`,
		// WAF
		`t.yaml:18: waf: unknown rule group "nosuch"`,
		// rules: a bad CEL expression
		`t.yaml:16: rule 10 "typo": expr 1:8: undeclared reference to 'request.pth'`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the report lacks %q\nreport:\n%s", want, got)
		}
	}
	t.Run("secret_value_never_echoed", func(t *testing.T) {
		for _, leak := range []string{"hunter2", "aHVudGVyMmh1bnRlcjI"} {
			if strings.Contains(got, leak) {
				t.Errorf("the report shows a secret value (%q):\n%s", leak, got)
			}
		}
	})
	t.Run("no_problem_reported_twice", func(t *testing.T) {
		lines := strings.Split(got, "\n")
		seen := map[string]bool{}
		for _, l := range lines {
			if seen[l] {
				t.Errorf("reported twice: %s", l)
			}
			seen[l] = true
		}
		// What Validate found is not found again, without a position, by a
		// later stage that read the same bad input.
		for _, dup := range []string{"default_action", "which is not configured", "tls mode"} {
			if strings.Contains(got, dup) {
				t.Errorf("a later stage reported again what validation found (%q):\n%s", dup, got)
			}
		}
	})
}

// A stage that skips an input validation rejected must not skip the whole
// stage: the other inputs are still checked.
func TestCheckSkipsOnlyWhatValidationRejected(t *testing.T) {
	c := parseBroken(t)
	c.Session.Keys = []secret.Ref{"no-scheme-literal-key", "env:CHECK_UNSET_SESSION_KEY"}
	c.Listen.TLS.CertFile = "" // Validate: cert_file is required
	c.Listen.TrustedProxies = []string{"not-an-ip", "fe80::1%eth0"}
	err := Check(c, brokenEnv())
	if err == nil {
		t.Fatal("Check accepted a broken config")
	}
	got := err.Error()
	for _, want := range []string{
		`session.keys[0]: secret reference "<redacted>" has no scheme`, // by Validate
		`session.keys[1]: secret env:CHECK_UNSET_SESSION_KEY`,          // by the secrets stage
		`listen.tls.cert_file is required`,
		`listen.trusted_proxies[0] "not-an-ip" is not an IP address or CIDR`,
		`listen.trusted_proxies[1] "fe80::1%eth0": zones are not allowed`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the report lacks %q\nreport:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "has no scheme"); n != 1 {
		t.Errorf("the malformed reference is reported %d times, want once:\n%s", n, got)
	}
	if n := strings.Count(got, "trusted_proxies[0]"); n != 1 {
		t.Errorf("the rejected trusted proxy is reported %d times, want once:\n%s", n, got)
	}
	if strings.Contains(got, "cert_file is empty") {
		t.Errorf("the TLS stage loaded a pair validation rejected:\n%s", got)
	}
}

// Every secret.Ref in the config is found by walking its types. When this
// list changes, a reference was added to the config: make sure Validate
// checks its form (secret.Ref.Check) and parseSecret its value, if it has
// a format.
func TestCheckFindsEverySecretRef(t *testing.T) {
	c, err := config.Parse("t.yaml", []byte(`version: 1
session: {keys: ["env:A", "env:B"]}
assertion: {keys: ["file:/k.pem"]}
oidc: {providers: [{name: corp, issuer: "https://id.example.com", client_id: c, client_secret: "env:C"}]}
redis: {url: "env:D"}
store: {driver: postgres, url: "env:E"}
pools: [{name: app, builtin: whoami}]
routes: [{name: app, host: "*", pool: app, policy: {allow_authenticated: true}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range secretRefs(c) {
		got = append(got, f.label+" = "+string(f.ref)+" @ "+c.Pos(f.at...))
	}
	slices.Sort(got)
	want := []string{
		`assertion.keys[0] = file:/k.pem @ t.yaml:3`,
		`oidc.providers[0] "corp": client_secret = env:C @ t.yaml:4`,
		`redis.url = env:D @ t.yaml:5`,
		`session.keys[0] = env:A @ t.yaml:2`,
		`session.keys[1] = env:B @ t.yaml:2`,
		`store.url = env:E @ t.yaml:6`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("secret references found (-want +got):\n%s", diff)
	}
}

func TestCheckStagePanicBecomesError(t *testing.T) {
	err := stage("rules", func() error { panic("index out of range") })
	if err == nil || !strings.Contains(err.Error(), "rules") || !strings.Contains(err.Error(), "index out of range") {
		t.Fatalf("stage error = %v, want one naming the stage and the panic", err)
	}
}

// A config that passes keeps what check compiled, for serve.
func TestCheckValidConfigKeepsCompiled(t *testing.T) {
	c := testConfig(t, "rules: [{priority: 10, description: ok, match: {expr: 'request.path == \"/x\"'}, action: deny}]\n")
	checked, err := CheckKeep(c, secret.Resolver{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if checked == nil || checked.cfg != c || checked.sets["app"] == nil || checked.limiter == nil {
		t.Fatalf("Checked = %+v, want the config, its rule set and the limiter", checked)
	}
}
