package rules

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/ratelimit"
)

func mustCompile(t testing.TB, gw, rt []Rule, opts Options) *Set {
	t.Helper()
	s, err := Compile(gw, rt, opts)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return s
}

func req(ip, method, path string) *Input {
	return &Input{IP: netip.MustParseAddr(ip), Method: method, Path: path, Host: "app.example.com",
		Scheme: "https", Header: http.Header{}}
}

func priority(r Result) int {
	if r.Rule == nil {
		return -1
	}
	return r.Rule.Priority
}

func TestCompileErrors(t *testing.T) {
	ok := Match{Expr: "true"}
	tests := []struct {
		name string
		rule Rule
		opts Options
		want string // substring of the error
	}{
		{"waf_without_waf", Rule{Priority: 1, Description: "d", Match: Match{WAF: true}, Action: ActionDeny},
			Options{}, `rule 1 "d": match.waf needs the WAF, which is not configured`},
		{"throttle_without_limiter", Rule{Priority: 1, Description: "d", Match: ok, Action: ActionThrottle,
			Rate: ratelimit.Rate{Count: 1, Per: time.Second}}, Options{}, "throttle needs a rate limiter"},
		{"negative_rate", Rule{Priority: 1, Description: "d", Match: ok, Action: ActionThrottle,
			Rate: ratelimit.Rate{Count: -3, Per: time.Second}}, Options{Limiter: nopLimiter{}}, "rate count -3 is negative"},
		{"ban_without_ban_for", Rule{Priority: 1, Description: "d", Match: ok, Action: ActionBan,
			Rate: ratelimit.Rate{Count: 1, Per: time.Second}}, Options{Limiter: nopLimiter{}}, "ban_for must be above zero"},
		{"all_combined", Rule{Priority: 1, Description: "d", Match: ok, Action: ActionThrottle, Key: []string{"all", "ip"},
			Rate: ratelimit.Rate{Count: 1, Per: time.Second}}, Options{Limiter: nopLimiter{}}, `key "all" counts every request together`},
		{"duplicate_key_part", Rule{Priority: 1, Description: "d", Match: ok, Action: ActionThrottle, Key: []string{"header:X-A", "header:x-a"},
			Rate: ratelimit.Rate{Count: 1, Per: time.Second}}, Options{Limiter: nopLimiter{}}, `key "header:x-a" is given twice`},
		{"rate_on_deny", Rule{Priority: 1, Description: "d", Match: ok, Action: ActionDeny,
			Rate: ratelimit.Rate{Count: 1, Per: time.Second}}, Options{}, "rate applies to throttle and rate_based_ban only"},
		{"status_on_allow", Rule{Priority: 1, Description: "d", Match: ok, Action: ActionAllow, Status: 404},
			Options{}, "status applies to deny only"},
		{"headers_on_deny", Rule{Priority: 1, Description: "d", Match: ok, Action: ActionDeny, AddHeaders: map[string]string{"X-A": "b"}},
			Options{}, "add_headers applies to allow only"},
		{"header_value_crlf_injection", Rule{Priority: 1, Description: "d", Match: ok, Action: ActionAllow, AddHeaders: map[string]string{"X-A": "b\r\nX-Sekisho-User: root"}},
			Options{}, "contains control characters"},
		{"redirect_javascript_url", Rule{Priority: 1, Description: "d", Match: ok, Action: ActionRedirect, RedirectURL: "javascript:alert(1)"},
			Options{}, "must be an absolute http:// or https:// URL"},
		{"redirect_protocol_relative", Rule{Priority: 1, Description: "d", Match: ok, Action: ActionRedirect, RedirectURL: "//evil.example"},
			Options{}, "must be an absolute http:// or https:// URL"},
		{"expr_too_long", Rule{Priority: 1, Description: "d", Match: Match{Expr: "true" + strings.Repeat(" && true", 600)}, Action: ActionDeny},
			Options{}, "over the limit of 4096"},
		{"expr_deep_nesting", Rule{Priority: 1, Description: "d", Match: Match{Expr: strings.Repeat("(", 200) + "true" + strings.Repeat(")", 200)}, Action: ActionDeny},
			Options{}, `rule 1 "d": expr: expression recursion limit exceeded`},
		{"expr_syntax_position", Rule{Priority: 7, Description: "d", Match: Match{Expr: "request.path ==\n  == \"x\""}, Action: ActionDeny},
			Options{}, `rule 7 "d": expr 2:3: Syntax error`},
		{"expr_dyn_result", Rule{Priority: 1, Description: "d", Match: Match{Expr: `dyn(request.path)`}, Action: ActionDeny},
			Options{}, "not bool"},
		{"bad_default", Rule{Priority: 1, Description: "d", Match: ok, Action: ActionDeny},
			Options{DefaultAction: "block"}, `default_action "block" is not allow or deny`},
		{"source_position_prefix", Rule{Priority: 1, Description: "d", Match: Match{IPRanges: []string{"10.0.0.1/8"}}, Action: ActionDeny, Source: "sekisho.yaml:42"},
			Options{}, `sekisho.yaml:42: rule 1 "d": ip_ranges: "10.0.0.1/8" has host bits set; did you mean 10.0.0.0/8?`},
		{"zoned_address", Rule{Priority: 1, Description: "d", Match: Match{IPRanges: []string{"fe80::1%eth0"}}, Action: ActionDeny},
			Options{}, "has an IPv6 zone"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile([]Rule{tc.rule}, nil, tc.opts)
			if err == nil {
				t.Fatalf("compile accepted the rule; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// nopLimiter allows everything; for compile tests only.
type nopLimiter struct{}

func (nopLimiter) Take(context.Context, string, ratelimit.Rate) (ratelimit.Result, error) {
	return ratelimit.Result{Allowed: true}, nil
}
func (nopLimiter) Ban(context.Context, string, time.Duration) error { return nil }
func (nopLimiter) Banned(context.Context, string) (time.Duration, error) {
	return 0, nil
}

// failingLimiter fails every call, like an unreachable Redis.
type failingLimiter struct{ nopLimiter }

func (failingLimiter) Take(context.Context, string, ratelimit.Rate) (ratelimit.Result, error) {
	return ratelimit.Result{}, errors.New("redis: connection refused")
}

// recordingLimiter remembers the keys it was asked about.
type recordingLimiter struct {
	nopLimiter
	keys []string
}

func (r *recordingLimiter) Take(_ context.Context, key string, _ ratelimit.Rate) (ratelimit.Result, error) {
	r.keys = append(r.keys, key)
	return ratelimit.Result{Allowed: true}, nil
}

func TestAttacks(t *testing.T) {
	ctx := context.Background()

	t.Run("malformed_ip_input_denied", func(t *testing.T) {
		s := mustCompile(t, []Rule{{Priority: 1, Description: "office only", Match: Match{NotIPRanges: []string{"10.0.0.0/8"}}, Action: ActionDeny}}, nil, Options{})
		for name, in := range map[string]*Input{"zero_addr": {Path: "/"}, "nil_input": nil} {
			res := s.Eval(ctx, PhaseEdge, in)
			if res.Action != ActionDeny || res.Status != http.StatusBadRequest {
				t.Errorf("%s: got %s %d, want deny 400", name, res.Action, res.Status)
			}
		}
	})

	t.Run("ipv4_mapped_ipv6_matches_ipv4_range", func(t *testing.T) {
		s := mustCompile(t, []Rule{
			{Priority: 1, Description: "ban net", Match: Match{IPRanges: []string{"203.0.113.0/24"}}, Action: ActionDeny},
			{Priority: 2, Description: "ban net by expr", Match: Match{Expr: `inIpRange(origin.ip, "198.51.100.0/24")`}, Action: ActionDeny},
		}, nil, Options{})
		for _, ip := range []string{"::ffff:203.0.113.5", "::ffff:198.51.100.5", "fe80::1%eth0"} {
			in := req("203.0.113.5", "GET", "/")
			in.IP = netip.MustParseAddr(ip)
			res := s.Eval(ctx, PhaseEdge, in)
			if ip == "fe80::1%eth0" {
				if res.Action != ActionNone {
					t.Errorf("%s: got %s", ip, res.Reason)
				}
				continue
			}
			if res.Action != ActionDeny {
				t.Errorf("%s slipped past the IPv4 range: %s", ip, res.Reason)
			}
		}
	})

	t.Run("huge_header_value_in_expr", func(t *testing.T) {
		s := mustCompile(t, []Rule{{Priority: 1, Description: "evil agent", Match: Match{Expr: `request.headers["user-agent"].contains("evil")`}, Action: ActionDeny}}, nil, Options{})
		in := req("192.0.2.1", "GET", "/")
		in.Header.Set("User-Agent", strings.Repeat("a", 1<<20)+"evil")
		// A 1 MiB value, far over the listener's header limit: the rule still
		// sees all of it (no truncation to slip "evil" past) and decides.
		if res := s.Eval(ctx, PhaseEdge, in); res.Action != ActionDeny || res.Status != http.StatusForbidden || res.Err != nil {
			t.Fatalf("got %s %d err=%v, want the rule's deny 403", res.Action, res.Status, res.Err)
		}
		in.Header.Set("User-Agent", strings.Repeat("a", 1<<20))
		if res := s.Eval(ctx, PhaseEdge, in); res.Action != ActionNone || res.Err != nil {
			t.Fatalf("got %s err=%v, want no match", res.Action, res.Err)
		}
	})

	t.Run("invalid_utf8_header_in_expr", func(t *testing.T) {
		s := mustCompile(t, []Rule{{Priority: 1, Description: "odd agent", Match: Match{Expr: `request.headers["user-agent"] == "a\uFFFD" && request.headers["user-agent"].size() == 2`}, Action: ActionDeny}}, nil, Options{})
		in := req("192.0.2.1", "GET", "/")
		in.Header.Set("User-Agent", "a\xff\xfe")
		res := s.Eval(ctx, PhaseEdge, in)
		if res.Err != nil || res.Action != ActionDeny {
			t.Fatalf("got %s err=%v, want the rule to see the bad bytes as one U+FFFD", res.Action, res.Err)
		}
	})

	t.Run("expr_cost_limit_exceeded_fails_closed", func(t *testing.T) {
		// Quadratic over the headers: cheap for a normal request, over the
		// limit for one with thousands of headers.
		s := mustCompile(t, []Rule{{Priority: 1, Description: "allow unless duplicated",
			Match:  Match{Expr: `request.headers.all(a, request.headers.all(b, a == b || request.headers[a] != request.headers[b]))`},
			Action: ActionAllow}}, nil, Options{})
		in := req("192.0.2.1", "GET", "/")
		in.Header.Set("A", "1")
		if res := s.Eval(ctx, PhaseEdge, in); res.Action != ActionAllow {
			t.Fatalf("small request: %s %v", res.Reason, res.Err)
		}
		for i := range 2000 {
			in.Header.Set(fmt.Sprintf("X-H%d", i), fmt.Sprint(i))
		}
		res := s.Eval(ctx, PhaseEdge, in)
		if res.Action != ActionDeny || res.Status != http.StatusInternalServerError || res.Err == nil ||
			!strings.Contains(res.Err.Error(), "cost limit") || priority(res) != 1 {
			t.Fatalf("got %s %d err=%v, want deny 500 naming the rule and the cost limit", res.Action, res.Status, res.Err)
		}
	})

	t.Run("identity_var_in_edge_rule_rejected", func(t *testing.T) {
		for _, expr := range []string{`identity.user == "root"`, `"admins" in identity.groups`, `request.path == "/" || identity.kind == "apikey"`} {
			_, err := Compile([]Rule{{Priority: 3, Description: "who", Match: Match{Expr: expr}, Action: ActionAllow}}, nil, Options{})
			if err == nil || !strings.Contains(err.Error(), `rule 3 "who": expr uses identity.`) {
				t.Errorf("%s: got %v", expr, err)
			}
			_, err = Compile([]Rule{{Priority: 3, Description: "who", Phase: PhaseIdentity, Match: Match{Expr: expr}, Action: ActionAllow}}, nil, Options{})
			if err != nil {
				t.Errorf("%s in an identity rule: %v", expr, err)
			}
		}
	})

	t.Run("preview_rule_does_not_act", func(t *testing.T) {
		lim := &recordingLimiter{}
		s := mustCompile(t, []Rule{
			{Priority: 1, Description: "would deny", Match: Match{IPRanges: []string{"192.0.2.0/24"}}, Action: ActionDeny, Preview: true},
			{Priority: 2, Description: "would ban", Match: Match{Expr: "true"}, Action: ActionBan, Preview: true,
				Rate: ratelimit.Rate{Count: 1, Per: time.Hour}, BanFor: time.Hour},
		}, nil, Options{Limiter: lim})
		res := s.Eval(ctx, PhaseEdge, req("192.0.2.1", "GET", "/"))
		want := []PreviewHit{{RuleRef{1, "would deny"}, "deny 403"}, {RuleRef{2, "would ban"}, "rate_based_ban: within the rate, allow"}}
		if res.Action != ActionNone || res.Rule != nil {
			t.Fatalf("a preview rule acted: %+v", res)
		}
		if diff := cmp.Diff(want, res.Previews); diff != "" {
			t.Fatalf("previews (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"preview|g|r2|ip=192.0.2.1"}, lim.keys); diff != "" {
			t.Fatalf("a preview must count under its own key (-want +got):\n%s", diff)
		}
	})

	t.Run("first_match_wins", func(t *testing.T) {
		s := mustCompile(t, []Rule{
			{Priority: 30, Description: "deny all", Match: Match{Expr: "true"}, Action: ActionDeny},
			{Priority: 10, Description: "allow office", Match: Match{IPRanges: []string{"10.0.0.0/8"}}, Action: ActionAllow},
			{Priority: 20, Description: "deny admin", Match: Match{Expr: `request.path.startsWith("/admin")`}, Action: ActionDeny, Status: 404},
		}, nil, Options{})
		for _, tc := range []struct {
			ip, path string
			want     int
		}{{"10.1.1.1", "/admin", 10}, {"192.0.2.1", "/admin", 20}, {"192.0.2.1", "/", 30}} {
			if got := priority(s.Eval(ctx, PhaseEdge, req(tc.ip, "GET", tc.path))); got != tc.want {
				t.Errorf("%s %s: rule %d acted, want %d", tc.ip, tc.path, got, tc.want)
			}
		}
	})

	t.Run("ban_after_rate", func(t *testing.T) {
		lim, clk := newLimiter(t)
		s := mustCompile(t, []Rule{{Priority: 5, Description: "login", Match: Match{Expr: `request.path == "/login"`}, Action: ActionBan,
			Rate: ratelimit.Rate{Count: 2, Per: time.Minute}, BanFor: time.Hour}}, nil, Options{Limiter: lim})
		var got []string
		for range 4 {
			res := s.Eval(ctx, PhaseEdge, req("192.0.2.1", "POST", "/login"))
			got = append(got, fmt.Sprintf("%s %d %s", res.Action, res.Status, res.RetryAfter))
			clk.Advance(10 * time.Second) // by the 4th the rate alone would allow again; the ban must not
		}
		want := []string{"allow 0 0s", "allow 0 0s", "rate_based_ban 429 1h0m0s", "rate_based_ban 429 59m50s"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
		if res := s.Eval(ctx, PhaseEdge, req("192.0.2.2", "POST", "/login")); res.Action != ActionAllow {
			t.Fatalf("another client was banned too: %s", res.Reason)
		}
	})

	t.Run("key_value_cannot_forge_another_part", func(t *testing.T) {
		lim := &recordingLimiter{}
		s := mustCompile(t, []Rule{{Priority: 9, Description: "per tenant and user", Phase: PhaseIdentity, Match: Match{Expr: "true"}, Action: ActionThrottle,
			Rate: ratelimit.Rate{Count: 5, Per: time.Minute}, Key: []string{"header:X-Tenant", "user"}}}, nil, Options{Limiter: lim, RouteName: "ignored"})
		for _, tc := range []struct{ tenant, user string }{{"a|user=b", "c"}, {"a", "b|user=c"}, {"a%7Cuser=b", "c"}, {strings.Repeat("x", 100), "u"}} {
			in := req("192.0.2.1", "GET", "/")
			in.Header.Set("X-Tenant", tc.tenant)
			in.Identity = &identity.Identity{Kind: identity.Session, User: tc.user}
			s.Eval(ctx, PhaseIdentity, in)
		}
		seen := map[string]bool{}
		for _, k := range lim.keys {
			if seen[k] || strings.Count(k, "|") != 3 || len(k) > ratelimit.MaxKeyLen {
				t.Errorf("key %q collides, has forged separators or is too long (all: %q)", k, lim.keys)
			}
			seen[k] = true
		}
	})

	t.Run("route_rules_do_not_share_counters_across_routes", func(t *testing.T) {
		lim := &recordingLimiter{}
		rule := []Rule{{Priority: 9, Description: "budget", Match: Match{Expr: "true"}, Action: ActionThrottle, Rate: ratelimit.Rate{Count: 5, Per: time.Minute}}}
		for _, route := range []string{"a", "b"} {
			mustCompile(t, nil, rule, Options{Limiter: lim, RouteName: route}).Eval(ctx, PhaseEdge, req("192.0.2.1", "GET", "/"))
			mustCompile(t, rule, nil, Options{Limiter: lim, RouteName: route}).Eval(ctx, PhaseEdge, req("192.0.2.1", "GET", "/"))
		}
		want := []string{"rt=a|r9|ip=192.0.2.1", "g|r9|ip=192.0.2.1", "rt=b|r9|ip=192.0.2.1", "g|r9|ip=192.0.2.1"}
		if diff := cmp.Diff(want, lim.keys); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
	})

	t.Run("limiter_down_fails_closed", func(t *testing.T) {
		s := mustCompile(t, []Rule{{Priority: 1, Description: "budget", Match: Match{Expr: "true"}, Action: ActionThrottle,
			Rate: ratelimit.Rate{Count: 5, Per: time.Minute}}}, nil, Options{Limiter: failingLimiter{}})
		res := s.Eval(ctx, PhaseEdge, req("192.0.2.1", "GET", "/"))
		if res.Action != ActionDeny || res.Status != 500 || res.Err == nil || !strings.Contains(res.Err.Error(), "connection refused") {
			t.Fatalf("got %+v", res)
		}
	})

	t.Run("waf_error_fails_closed_and_runs_once", func(t *testing.T) {
		w := &fakeWAF{}
		s := mustCompile(t, []Rule{
			{Priority: 1, Description: "waf a", Match: Match{WAF: true, Expr: `request.method == "POST"`}, Action: ActionDeny},
			{Priority: 2, Description: "waf b", Match: Match{WAF: true}, Action: ActionDeny, Preview: true},
			{Priority: 3, Description: "waf c", Match: Match{WAF: true}, Action: ActionDeny},
		}, nil, Options{WAF: w})
		in := req("192.0.2.1", "POST", "/")
		in.Request, _ = http.NewRequest("POST", "https://app.example.com/", nil)
		if res := s.Eval(ctx, PhaseEdge, in); res.Action != ActionNone || w.calls != 1 {
			t.Fatalf("clean request: %s, WAF called %d times", res.Reason, w.calls)
		}
		w.err = errors.New("body too large to inspect")
		if res := s.Eval(ctx, PhaseEdge, in); res.Action != ActionDeny || res.Status != 500 || res.Err == nil {
			t.Fatalf("WAF failure: %+v", res)
		}
		in.Request = nil
		w.err = nil
		if res := s.Eval(ctx, PhaseEdge, in); res.Status != 500 {
			t.Fatalf("no request for the WAF: %+v", res)
		}
	})

	t.Run("missing_header_reads_empty_not_error", func(t *testing.T) {
		s := mustCompile(t, []Rule{
			{Priority: 1, Description: "no tenant", Match: Match{Expr: `request.headers["x-tenant"] == "" && !("x-tenant" in request.headers)`}, Action: ActionDeny},
		}, nil, Options{})
		res := s.Eval(ctx, PhaseEdge, req("192.0.2.1", "GET", "/"))
		if res.Action != ActionDeny || res.Err != nil {
			t.Fatalf("got %s %v", res.Action, res.Err)
		}
		in := req("192.0.2.1", "GET", "/")
		in.Header.Add("X-Tenant", "")
		if res := s.Eval(ctx, PhaseEdge, in); res.Action != ActionNone {
			t.Fatalf("an empty header was taken for a missing one: %s", res.Reason)
		}
	})

	t.Run("duplicate_headers_joined", func(t *testing.T) {
		s := mustCompile(t, []Rule{{Priority: 1, Description: "two", Match: Match{Expr: `request.headers["x-a"] == "1, 2" && request.headers.exists(k, k == "x-a")`}, Action: ActionDeny}}, nil, Options{})
		in := req("192.0.2.1", "GET", "/")
		in.Header.Add("X-A", "1")
		in.Header.Add("x-a", "2")
		if res := s.Eval(ctx, PhaseEdge, in); res.Action != ActionDeny || res.Err != nil {
			t.Fatalf("got %s %v", res.Reason, res.Err)
		}
	})
}

func TestNilSetAllows(t *testing.T) {
	var s *Set
	if r := s.Eval(context.Background(), PhaseEdge, nil); r.Action != ActionNone {
		t.Fatalf("edge: %+v", r)
	}
	if r := s.Eval(context.Background(), PhaseIdentity, nil); r.Action != ActionAllow {
		t.Fatalf("identity: %+v", r)
	}
}

// TestIndexAgreesWithLinearScan compares the indexed Eval with trying every
// rule in priority order, over random rule sets and requests: the prefix
// table and the guard maps must never change which rule acts.
func TestIndexAgreesWithLinearScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	paths := []string{"/", "/a", "/a/b", "/ab", "/admin", "/admin/x", "/api/v1", "/b"}
	methods := []string{"GET", "POST", "DELETE"}
	hosts := []string{"a.example.com", "b.example.com"}
	pick := func(ss []string) string { return ss[rng.IntN(len(ss))] }
	randPrefix := func() string {
		bits := rng.IntN(33)
		a := netip.AddrFrom4([4]byte{10, byte(rng.IntN(4)), byte(rng.IntN(4)), byte(rng.IntN(4))})
		return netip.PrefixFrom(a, bits).Masked().String()
	}
	for round := range 200 {
		var rs []Rule
		seenPrio := map[int]bool{}
		for range rng.IntN(30) + 1 {
			p := rng.IntN(1000)
			if seenPrio[p] {
				continue
			}
			seenPrio[p] = true
			r := Rule{Priority: p, Description: fmt.Sprint("r", p), Action: ActionDeny, Preview: rng.IntN(5) == 0}
			switch rng.IntN(7) {
			case 6:
				r.Match.Expr = fmt.Sprintf(`request.headers["x-t"] == %q`, pick([]string{"a", "b", "", "a, b"}))
			case 0, 1:
				r.Match.IPRanges = []string{randPrefix(), randPrefix()}
			case 2:
				r.Match.Expr = fmt.Sprintf("request.path.startsWith(%q)", pick(paths))
			case 3:
				r.Match.Expr = fmt.Sprintf("request.method == %q && request.path == %q", pick(methods), pick(paths))
			case 4:
				r.Match.Expr = fmt.Sprintf("%q == request.host || request.path.endsWith(%q)", pick(hosts), pick(paths))
			case 5:
				r.Match.NotIPRanges = []string{randPrefix()}
				r.Match.Expr = fmt.Sprintf("request.host == %q", pick(hosts))
			}
			rs = append(rs, r)
		}
		s := mustCompile(t, rs, nil, Options{})
		for range 50 {
			in := req(fmt.Sprintf("10.%d.%d.%d", rng.IntN(4), rng.IntN(4), rng.IntN(4)), pick(methods), pick(paths))
			in.Host = pick(hosts)
			switch rng.IntN(4) {
			case 0:
				in.Header.Set("X-T", "a")
			case 1:
				in.Header["X-T"] = []string{"a", "b"}
			case 2:
				in.Header["x-t"] = []string{"b"} // not canonical
			}
			got := s.Eval(context.Background(), PhaseEdge, in)
			want := linearEval(t, s, in)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("round %d, %s %s %s %s: indexed and linear differ (-linear +indexed):\n%s", round, in.IP, in.Method, in.Host, in.Path, diff)
			}
		}
	}
}

// linearEval tries every edge rule in order, without the indexes.
func linearEval(t *testing.T, s *Set, in *Input) Result {
	ev := evaluator{set: s, ps: &s.edge, in: in, ctx: context.Background(), ip: in.IP}
	var previews []PreviewHit
	for _, c := range s.edge.rules {
		ok, err := ev.matches(c)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue
		}
		if c.rule.Preview {
			previews = append(previews, PreviewHit{Rule: c.ref, WouldDo: ev.wouldDo(c)})
			continue
		}
		return ev.finish(c, previews)
	}
	return Result{Previews: previews}
}
