package policytest

import (
	"context"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/pathnorm"
	"github.com/sekisho/sekisho/internal/ratelimit"
	"github.com/sekisho/sekisho/internal/rules"
)

// exampleRules are the rules the comment block of
// examples/policy-tests.yaml describes.
func exampleRules() []rules.Rule {
	return []rules.Rule{
		{Priority: 10, Description: "known scanner network", Match: rules.Match{IPRanges: []string{"203.0.113.0/24"}}, Action: rules.ActionDeny, Status: 404},
		{Priority: 100, Description: "workspace members only from the office", Match: rules.Match{
			Expr: `request.path.startsWith("/console/api/workspaces/current/members")`, NotIPRanges: []string{"10.0.0.0/8"}}, Action: rules.ActionDeny},
		{Priority: 200, Description: "chat budget per user", Phase: rules.PhaseIdentity, Match: rules.Match{Expr: `request.path.startsWith("/v1/chat-messages")`},
			Action: rules.ActionThrottle, Rate: ratelimit.Rate{Count: 60, Per: time.Minute}, Key: []string{"user"}},
		{Priority: 300, Description: "API keys only from the CI network", Phase: rules.PhaseIdentity,
			Match: rules.Match{Expr: `identity.kind == "apikey" && !inIpRange(origin.ip, "192.0.2.0/24")`}, Action: rules.ActionDeny},
	}
}

// evaluator stands in for the CLI's: one route "dify" with
// allow_authenticated, the real rules, the real path normaliser.
func evaluator(t *testing.T, rs []rules.Rule) func(Case) Outcome {
	lim, err := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.Compile(rs, nil, rules.Options{Limiter: lim, RouteName: "dify"})
	if err != nil {
		t.Fatal(err)
	}
	return func(c Case) Outcome {
		r, err := c.HTTPRequest()
		if err != nil {
			return Outcome{Err: err}
		}
		clean, _, err := pathnorm.Normalize(r.URL.EscapedPath())
		if err != nil {
			return Outcome{Action: "deny", Status: 400, Reason: err.Error()}
		}
		id := c.Identity()
		in := &rules.Input{IP: netip.MustParseAddr(c.Request.SourceIP), Method: r.Method, Path: clean, Host: r.Host,
			Scheme: "https", Query: r.URL.Query(), Header: r.Header, Request: r}
		out := func(res rules.Result) Outcome {
			o := Outcome{Action: string(res.Action), Status: res.Status, Route: "dify", Reason: res.AuditReason()}
			if res.Rule != nil {
				p := res.Rule.Priority
				o.Rule, o.RuleDescription = &p, res.Rule.Description
			}
			if o.Status == 0 {
				o.Status = http.StatusOK
			}
			return o
		}
		res := set.Eval(context.Background(), rules.PhaseEdge, in)
		if res.Denied() {
			return out(res)
		}
		if res.Action == rules.ActionAllow {
			return out(res)
		}
		if !id.Authenticated() {
			return Outcome{Action: "login", Status: http.StatusFound, Route: "dify"}
		}
		in.Identity = &id
		if id.Kind == identity.APIKey {
			in.APIKeyID = c.Request.Identity.APIKeyID
		}
		return out(set.Eval(context.Background(), rules.PhaseIdentity, in))
	}
}

func loadExample(t *testing.T) []Case {
	f, err := os.Open("../../../examples/policy-tests.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cases, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	return cases
}

func TestExampleCasesPass(t *testing.T) {
	rep := Run(loadExample(t), evaluator(t, exampleRules()))
	if !rep.OK() || rep.Passed != 8 {
		t.Fatalf("the shipped example fails:\n%s", rep)
	}
}

// TestRuleChangeIsCaught: dropping the office rule makes exactly the cases
// that pin it fail, and the report says which and why.
func TestRuleChangeIsCaught(t *testing.T) {
	rs := exampleRules()
	rs = append(rs[:1], rs[2:]...)
	rep := Run(loadExample(t), evaluator(t, rs))
	var got []string
	for _, line := range strings.Split(rep.String(), "\n") {
		if strings.HasPrefix(line, "FAIL") || strings.Contains(line, "passed,") {
			got = append(got, line)
		}
	}
	want := []string{
		`FAIL  members page from home is refused even for an admin (line 18): action: want deny, got allow; status: want 403, got 200; rule: want 100, got default; got allow 200 by default on route "dify"`,
		`FAIL  dot segments do not dodge the office rule (line 26): action: want deny, got allow; rule: want 100, got default; got allow 200 by default on route "dify"`,
		`6 passed, 2 failed`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("report (-want +got):\n%s\nfull report:\n%s", diff, rep)
	}
}

func TestLoadErrors(t *testing.T) {
	ok := "  - name: a\n    request: {host: h, source_ip: 10.0.0.1}\n    expect: {action: allow}\n"
	tests := []struct{ name, in, want string }{
		{"unknown_key", "version: 1\ncases:\n  - name: a\n    request: {host: h, source_ip: 10.0.0.1, sourceip: x}\n    expect: {action: allow}\n", "line 4: field sourceip not found"},
		{"wrong_version", "version: 2\ncases:\n" + ok, "version 2 is not supported"},
		{"no_cases", "version: 1\ncases: []\n", "no cases"},
		{"duplicate_name", "version: 1\ncases:\n" + ok + ok, `line 6: case "a": the name is used twice`},
		{"bad_ip", "version: 1\ncases:\n  - name: b\n    request: {host: h, source_ip: 10.0.0.999}\n    expect: {action: allow}\n", `line 3: case "b": request.source_ip "10.0.0.999" is not an IP address`},
		{"bad_action", "version: 1\ncases:\n  - name: b\n    request: {host: h, source_ip: 10.0.0.1}\n    expect: {action: permit}\n", `expect.action "permit" is not one of`},
		{"bad_rule", "version: 1\ncases:\n  - name: b\n    request: {host: h, source_ip: 10.0.0.1}\n    expect: {action: deny, rule: first}\n", `expect.rule "first" is not a rule priority`},
		{"relative_path", "version: 1\ncases:\n  - name: b\n    request: {host: h, path: admin, source_ip: 10.0.0.1}\n    expect: {action: deny}\n", `must start with /`},
		{"second_document", "version: 1\ncases:\n" + ok + "---\nversion: 1\n", "second YAML document"},
		{"bad_kind", "version: 1\ncases:\n  - name: b\n    request: {host: h, source_ip: 10.0.0.1, identity: {kind: root, user: u}}\n    expect: {action: deny}\n", `identity.kind "root"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestEvaluateErrorFails(t *testing.T) {
	cases := []Case{{Name: "x", Expect: Expect{Action: "allow"}}}
	rep := Run(cases, func(Case) Outcome { return Outcome{Action: "allow", Err: os.ErrNotExist} })
	if rep.OK() || !strings.Contains(rep.String(), "could not evaluate") {
		t.Fatalf("an evaluation error passed:\n%s", rep)
	}
}

// FuzzLoad: any bytes either fail to load or give cases that all have a
// name, a host, a parsable source IP and a known action.
func FuzzLoad(f *testing.F) {
	if raw, err := os.ReadFile("../../../examples/policy-tests.yaml"); err == nil {
		f.Add(string(raw))
	}
	f.Add("version: 1\ncases:\n  - name: a\n    request: {host: h, source_ip: 10.0.0.1}\n    expect: {action: allow}\n")
	f.Fuzz(func(t *testing.T, in string) {
		cases, err := Load(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, c := range cases {
			if c.Name == "" || c.Request.Host == "" || !netip.MustParseAddr(c.Request.SourceIP).IsValid() {
				t.Fatalf("loaded an invalid case: %+v", c)
			}
			if _, err := c.HTTPRequest(); err != nil && !strings.Contains(err.Error(), c.Name) {
				t.Fatalf("request error does not name the case: %v", err)
			}
		}
	})
}
