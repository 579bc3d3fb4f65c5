package examples_test

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/cli"
)

// exampleEnv holds placeholder values for the env: secrets each example
// names; its header must tell the reader to set them.
var exampleEnv = map[string]map[string]string{
	"google-oidc.yaml": {
		"GOOGLE_CLIENT_SECRET":    "placeholder-google-client-secret",
		"CORP_OIDC_CLIENT_SECRET": "placeholder-corp-client-secret",
	},
}

// casesFiles are policy test tables rather than configs: each is run with
// `sekisho policy test` against the config it was written for.
var casesFiles = map[string]string{"policy-tests.yaml": "rules.yaml"}

var envRefRE = regexp.MustCompile(`\benv:([A-Za-z_][A-Za-z0-9_]*)`)

// TestEveryExamplePassesCheck runs the real `sekisho check` (or `policy
// test`) on every shipped example, as a new user would after a clone.
func TestEveryExamplePassesCheck(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) < 5 {
		t.Fatalf("found examples %v (%v), want at least 5", files, err)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			header := headerComment(string(data))
			for _, m := range envRefRE.FindAllStringSubmatch(string(data), -1) {
				name := m[1]
				if _, ok := exampleEnv[f][name]; !ok {
					t.Errorf("%s reads env:%s: add a placeholder to exampleEnv", f, name)
				}
				if !strings.Contains(header, name) {
					t.Errorf("%s reads env:%s but its header comment does not say to set it", f, name)
				}
			}
			for k, v := range exampleEnv[f] {
				t.Setenv(k, v)
			}
			args := []string{"sekisho", "check", "--config", f}
			if cfg, ok := casesFiles[f]; ok {
				args = []string{"sekisho", "policy", "test", f, "--config", cfg}
			}
			var out, errb strings.Builder
			code := cli.Main(args, cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb})
			if code != cli.ExitOK {
				t.Fatalf("%s: exit %d\n%s%s", strings.Join(args[1:], " "), code, out.String(), errb.String())
			}
		})
	}
	// check reads; it never leaves state next to the examples.
	if _, err := os.Stat(filepath.Join(".", "sekisho-data")); !os.IsNotExist(err) {
		t.Errorf("checking the examples created examples/sekisho-data (%v)", err)
	}
}

// TestUnsetExampleSecretFailsCheck: an example's env secret, unset, makes
// check fail by name, so the test above proves the variables are needed.
func TestUnsetExampleSecretFailsCheck(t *testing.T) {
	for f, env := range exampleEnv {
		names := make([]string, 0, len(env))
		for k := range env {
			names = append(names, k)
		}
		slices.Sort(names)
		t.Run(f, func(t *testing.T) {
			for _, k := range names[1:] {
				t.Setenv(k, env[k])
			}
			t.Setenv(names[0], "")
			os.Unsetenv(names[0])
			var out, errb strings.Builder
			code := cli.Main([]string{"sekisho", "check", "--config", f}, cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb})
			if code != cli.ExitConfig || !strings.Contains(errb.String(), names[0]) {
				t.Fatalf("check with %s unset: exit %d\n%s%s", names[0], code, out.String(), errb.String())
			}
		})
	}
}

// headerComment returns the leading comment lines of a YAML file.
func headerComment(s string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "#") {
			break
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}
