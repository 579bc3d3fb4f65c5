package authz

import (
	"flag"
	"fmt"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/golden"
	"github.com/sekisho/sekisho/internal/identity"
)

var update = flag.Bool("update", false, "rewrite golden files")

// goldenCase is the input half of a testdata/*.txt file.
type goldenCase struct {
	Policy     *config.Policy `yaml:"policy"`
	Identities []struct {
		Name   string   `yaml:"name"`
		Kind   string   `yaml:"kind"`
		User   string   `yaml:"user"`
		Email  string   `yaml:"email"`
		Groups []string `yaml:"groups"`
	} `yaml:"identities"`
}

// TestGoldenDecisions: each testdata file is a policy and identities, "----",
// then one decision line per identity.
func TestGoldenDecisions(t *testing.T) {
	golden.Run(t, "testdata/*.txt", *update, func(t *testing.T, _, in string) string {
		var gc goldenCase
		dec := yaml.NewDecoder(strings.NewReader(in))
		dec.KnownFields(true)
		if err := dec.Decode(&gc); err != nil {
			t.Fatal(err)
		}
		p := Compile(gc.Policy)
		var b strings.Builder
		for _, id := range gc.Identities {
			d := p.Decide(identity.Identity{Kind: identity.Kind(id.Kind), User: id.User, Email: id.Email, Groups: id.Groups})
			verdict := "deny"
			switch {
			case d.Allow:
				verdict = "allow"
			case d.NeedsLogin:
				verdict = "login"
			}
			fmt.Fprintf(&b, "%s: %s (%s)\n", id.Name, verdict, d.Reason)
		}
		return b.String()
	})
}

func TestNilPolicyDeniesEveryone(t *testing.T) {
	d := Compile(nil).Decide(identity.Identity{Kind: identity.Session, User: "root", Groups: []string{"admins"}})
	if d.Allow {
		t.Fatal("a route without a policy let a user in")
	}
}

func BenchmarkDecide(b *testing.B) {
	p := Compile(&config.Policy{Groups: []string{"a", "b", "c"}, Domains: []string{"example.com"}})
	id := identity.Identity{Kind: identity.Session, User: "alice", Email: "alice@other.org", Groups: []string{"x", "y", "c"}}
	for b.Loop() {
		if !p.Decide(id).Allow {
			b.Fatal("denied")
		}
	}
}
