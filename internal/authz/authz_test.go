package authz

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

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

// A session signed in long ago must not pass a route that demands a recent
// sign-in: the stale-session attack (a laptop left signed in for a day
// reaching the admin app whose max_age is an hour). API keys and bearer
// tokens have no sign-in to renew and are not sent to sign in.
func TestDecideAtRefusesStaleSessionOnMaxAgeRoute(t *testing.T) {
	now := time.Date(2026, 12, 8, 12, 0, 0, 0, time.UTC)
	p := CompileRoute(&config.Policy{AllowAuthenticated: true}, time.Hour)
	for _, tc := range []struct {
		name      string
		id        identity.Identity
		wantAllow bool
	}{
		{"fresh_session", identity.Identity{Kind: identity.Session, User: "ana", AuthTime: now.Add(-59 * time.Minute)}, true},
		{"stale_session_is_sent_to_sign_in", identity.Identity{Kind: identity.Session, User: "ana", AuthTime: now.Add(-25 * time.Hour)}, false},
		{"api_key_has_no_sign_in_age", identity.Identity{Kind: identity.APIKey, User: "apikey:bot", AuthTime: now.Add(-48 * time.Hour)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := p.DecideAt(tc.id, now)
			if d.Allow != tc.wantAllow {
				t.Fatalf("DecideAt = %+v, want allow %v", d, tc.wantAllow)
			}
			if !d.Allow && (!d.NeedsLogin || !strings.Contains(d.Reason, "within 1h0m0s")) {
				t.Errorf("refusal %+v: want a sign-in naming the max_age", d)
			}
		})
	}
	if p.MaxAge() != time.Hour || Compile(nil).MaxAge() != 0 {
		t.Error("MaxAge does not report the route's max_age")
	}
}
