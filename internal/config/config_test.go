package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/golden"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestGoldenErrors reads testdata/errors/*.txt: a config, a line "----", and
// the exact problems Load+Validate must report (one per line, in order).
func TestGoldenErrors(t *testing.T) {
	golden.Run(t, "testdata/errors/*.txt", *update, func(t *testing.T, name, input string) string {
		return problemsOf(name+".yaml", []byte(input))
	})
}

func problemsOf(name string, data []byte) string {
	c, err := Parse(name, data)
	if err == nil {
		err = c.Validate()
	}
	if err == nil {
		return "ok\n"
	}
	return err.Error() + "\n"
}

// TestExamplesValid loads every shipped example: they must stay valid.
func TestExamplesValid(t *testing.T) {
	files := exampleConfigs()
	if len(files) < 3 {
		t.Fatalf("found %d examples, want at least 3", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("t.yaml", []byte("version: 1\npools: [{name: p, urls: ['http://127.0.0.1:1'], health_check: {path: /h}}]\nroutes: [{name: r, host: '*', pool: p, policy: {allow_authenticated: true}}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	got := []any{c.Listen.Address, c.Listen.TLS.Mode, c.Routes[0].Path, c.Routes[0].Timeout.D(), c.Routes[0].StreamIdleTimeout.D(),
		c.Pools[0].Balance, c.Pools[0].HealthCheck.Interval.D(), c.Pools[0].HealthCheck.UnhealthyThreshold, c.Session.Lifetime.D(), c.LocalEnabled(), c.SecureCookies()}
	want := []any{DefaultAddress, "off", "/", DefaultRouteTimeout, DefaultStreamIdle, "round_robin", DefaultHCInterval, DefaultUnhealthyThresh, DefaultSessionLifetime, true, false}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults differ (-want +got):\n%s", diff)
	}
}

func TestRisks(t *testing.T) {
	c, err := Parse("r.yaml", []byte(`version: 1
listen: {address: "0.0.0.0:80", insecure_plain_http: true, trusted_proxies: ["0.0.0.0/0"]}
pools: [{name: p, urls: ['http://127.0.0.1:1']}, {name: unused, urls: ['http://127.0.0.1:2']}]
routes: [{name: r, host: '*', pool: p, policy: {public: true}, upgrades: [websocket, spdy/3]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(c.Risks(), "\n")
	for _, w := range []string{"r.yaml:2: listen.insecure_plain_http", "trusts every address", `route "r" is public`, `pool "unused" is not used`,
		`route "r" is public on the wildcard host "*": a DNS-rebinding page`, `allows the upgrade "spdy/3"`} {
		if !strings.Contains(got, w) {
			t.Errorf("risks missing %q:\n%s", w, got)
		}
	}
}

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/errors/*.txt")
	for _, s := range seeds {
		b, _ := os.ReadFile(s)
		in, _, _ := strings.Cut(string(b), "\n----\n")
		f.Add([]byte(in))
	}
	q, _ := os.ReadFile("../../examples/quickstart.yaml")
	f.Add(q)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			if c != nil {
				t.Fatal("Parse returned a config with an error")
			}
			return
		}
		// A config that validates must be complete enough to serve.
		if c.Validate() == nil {
			if len(c.Routes) == 0 || c.Version != 1 {
				t.Fatalf("valid config without routes or version: %+v", c)
			}
			for _, r := range c.Routes {
				if r.Policy == nil {
					t.Fatalf("route %q validated without a policy", r.Name)
				}
			}
		}
	})
}

// exampleConfigs lists the shipped configs (examples/*-tests.yaml are
// `sekisho policy test` case tables, not configs).
func exampleConfigs() []string {
	all, _ := filepath.Glob("../../examples/*.yaml")
	var out []string
	for _, f := range all {
		if !strings.HasSuffix(f, "-tests.yaml") {
			out = append(out, f)
		}
	}
	return out
}
