package authz

import (
	"errors"
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
	p := CompileRoute("admin", &config.Policy{AllowAuthenticated: true}, time.Hour)
	for _, tc := range []struct {
		name      string
		id        identity.Identity
		wantAllow bool
	}{
		{"fresh_session", identity.Identity{Kind: identity.Session, User: "ana", AuthTime: now.Add(-59 * time.Minute)}, true},
		{"stale_session_is_sent_to_sign_in", identity.Identity{Kind: identity.Session, User: "ana", AuthTime: now.Add(-25 * time.Hour)}, false},
		{"api_key_has_no_sign_in_age", identity.Identity{Kind: identity.APIKey, User: "apikey:bot", AuthTime: now.Add(-48 * time.Hour), Scope: &identity.Scope{Name: "bot", Routes: []string{"admin"}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := p.DecideRequest(tc.id, Request{Method: "GET", Path: "/", Now: now})
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

// An API key reaches only what it was issued for; authz checks it with the
// route's policy. Each case is an attack the scope stops: a key for one app
// used on another, a read-only key writing, a key for /api used on /admin
// (also through a sibling segment such as /api2), and requests whose route
// or path is not known (fail closed).
func TestAPIKeyScopeRefusesWhatTheKeyWasNotIssuedFor(t *testing.T) {
	now := time.Date(2026, 12, 8, 12, 0, 0, 0, time.UTC)
	key := func(routes, methods, paths []string) identity.Identity {
		return identity.Identity{Kind: identity.APIKey, User: "apikey:ci", Provider: "apikey", SessionID: "abcdefabcdef",
			Scope: &identity.Scope{Name: "ci", Routes: routes, Methods: methods, PathPrefixes: paths}}
	}
	flowise := CompileRoute("flowise-api", &config.Policy{Groups: []string{"eng"}}, 0)
	for _, tc := range []struct {
		name         string
		p            *Policy
		id           identity.Identity
		method, path string
		wantErr      string // "" : allowed
	}{
		{"key_on_its_route", flowise, key([]string{"flowise-api"}, nil, nil), "POST", "/api/v1/x", ""},
		{"key_for_another_app", flowise, key([]string{"dify-api"}, nil, nil), "GET", "/", `is for route(s) ["dify-api"], not route "flowise-api"`},
		{"read_only_key_writing", flowise, key([]string{"flowise-api"}, []string{"GET"}, nil), "DELETE", "/api/v1/x", `allows methods GET, not "DELETE"`},
		{"head_is_not_get", flowise, key([]string{"flowise-api"}, []string{"GET"}, nil), "HEAD", "/api/v1/x", `not "HEAD"`},
		{"path_outside_its_prefix", flowise, key([]string{"flowise-api"}, nil, []string{"/api/v1"}), "GET", "/admin", `allows paths under ["/api/v1"], not "/admin"`},
		{"sibling_segment_is_outside", flowise, key([]string{"flowise-api"}, nil, []string{"/api/v1"}), "GET", "/api/v10/x", "not"},
		{"path_inside_its_prefix", flowise, key([]string{"flowise-api"}, nil, []string{"/api/v1"}), "GET", "/api/v1/x", ""},
		{"unknown_path_fails_closed", flowise, key([]string{"flowise-api"}, nil, []string{"/api/v1"}), "GET", "", "not"},
		{"route_without_a_name_fails_closed", Compile(&config.Policy{AllowAuthenticated: true}), key([]string{""}, nil, nil), "GET", "/", "not route"},
		{"key_identity_without_scope_fails_closed", flowise, identity.Identity{Kind: identity.APIKey, User: "apikey:x", SessionID: "x"}, "GET", "/", "no scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.p.DecideRequest(tc.id, Request{Method: tc.method, Path: tc.path, Now: now})
			if tc.wantErr == "" {
				if !d.Allow || d.Refused != nil {
					t.Fatalf("decision %+v, want allow", d)
				}
				return
			}
			if d.Allow || !errors.Is(d.Refused, ErrOutOfScope) || !strings.Contains(d.Refused.Error(), tc.wantErr) {
				t.Fatalf("decision %+v, want refused out of scope with %q", d, tc.wantErr)
			}
		})
	}
}
