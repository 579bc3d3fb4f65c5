package rules

import (
	"net/http"
	"net/netip"
	"net/url"
	"testing"

	"cel.dev/cel-go/common/types"

	"github.com/sekisho/sekisho/internal/identity"
)

// nativeInputs are requests chosen to catch the places where a native
// evaluator could part from CEL: multi-valued and non-canonical headers,
// invalid UTF-8 in every string, a missing identity, IPv4-mapped and IPv6
// client addresses, empty and absent query parameters.
func nativeInputs() map[string]*Input {
	return map[string]*Input{
		"typical": {IP: netip.MustParseAddr("10.1.2.3"), Method: "POST", Path: "/v1/chat/completions", Host: "app.example.com", Scheme: "https",
			Header: http.Header{"User-Agent": {"curl/8.5"}, "X-Tenant": {"a", "b"}, "x-raw": {"lower-key"}, "X-Bad": {"\xff\xfe"}},
			Query:  url.Values{"debug": {"1", "\xff"}, "empty": {}},
			Identity: &identity.Identity{Kind: identity.Session, User: "alice", Email: "alice@example.com",
				Groups: []string{"admins", "\xffbad"}}},
		"empty": {IP: netip.MustParseAddr("::1")},
		"invalid utf-8": {IP: netip.MustParseAddr("::ffff:192.0.2.1"), Method: "G\xffT", Path: "/caf\xe9", Host: "h\xff", Scheme: "http",
			Header:   http.Header{"User-Agent": {"bot \uFFFD"}, "X-Tenant": {"\xff"}},
			Query:    url.Values{"\xff": {"\xff"}},
			Identity: &identity.Identity{Kind: identity.APIKey, User: "svc\xff", Groups: []string{"\uFFFD"}}},
	}
}

// nativeExprs must all compile natively.
var nativeExprs = []string{
	`true`, `false`, `!true`,
	`request.headers["user-agent"].contains("curl")`,
	`request.headers["User-Agent"].startsWith("curl/")`,
	`request.headers["x-tenant"] == "a, b"`,
	`request.headers["x-raw"] == "lower-key"`,
	`request.headers["x-bad"] == "\uFFFD\uFFFD"`,
	`request.headers["x-missing"] == ""`,
	`request.headers["user-agent"].endsWith(request.headers["x-tenant"])`,
	`request.headers["user-agent"].contains("\uFFFD")`,
	`request.path.matches("^/v1/(chat|embeddings)")`,
	`matches(request.path, "caf")`,
	`request.path.contains("\uFFFD")`,
	`request.path == "/caf\uFFFD"`,
	`request.method == "POST" && request.path.startsWith("/v1/")`,
	`request.method != "GET" || request.host == "app.example.com"`,
	`request.method == "G\uFFFDT"`,
	`request.host.endsWith(".example.com") && !(request.scheme == "http")`,
	`request.method in ["POST", "PUT", "PATCH"]`,
	`"user-agent" in request.headers`, `"X-Missing" in request.headers`, `"x-raw" in request.headers`,
	`"debug" in request.query`, `"empty" in request.query`, `"\uFFFD" in request.query`,
	`"1" in request.query["debug"]`, `"\uFFFD" in request.query["debug"]`, `"\uFFFD" in request.query["\uFFFD"]`,
	`"admins" in identity.groups`, `"\uFFFD" in identity.groups`, `"\uFFFDbad" in identity.groups`,
	`identity.user == "alice" && identity.email.endsWith("@example.com")`,
	`identity.kind == "session"`, `identity.kind == ""`, `identity.user == "svc\uFFFD"`,
	`inIpRange(origin.ip, "10.0.0.0/8")`, `inIpRange(origin.ip, "192.0.2.0/24")`, `inIpRange(origin.ip, "::1")`,
	`origin.ip == "192.0.2.1"`, `origin.ip.startsWith("10.")`,
	`request.headers["x-tenant"] in [request.path, "a, b"] || request.path in ["/", "/caf\uFFFD"]`,
}

// celOnlyExprs can fail or need CEL's values, so they must stay in CEL.
var celOnlyExprs = []string{
	`request.headers.all(k, k.size() < 100)`,
	`request.path.size() > 3`,
	`inIpRange(request.headers["x-forwarded-for"], "10.0.0.0/8")`,
	`request.path.matches(request.headers["x-re"])`,
	`size(identity.groups) > 1`,
	`request.query["debug"] == ["1"]`,
	`(request.path == "/a") == true`,
	`request.path + "x" == "/x"`,
	`int(request.headers["x-n"]) > 3`,
}

func evalBoth(t *testing.T, src string, p *program, in *Input) (native, cel bool) {
	t.Helper()
	ip := in.IP.Unmap().WithZone("")
	ev := &evaluator{in: in, ip: ip}
	v, _, err := p.prg.Eval(&activation{in: in, addr: ip, id: in.Identity})
	if err != nil {
		t.Fatalf("%q: CEL failed: %v", src, err)
	}
	return p.native(ev), bool(v.(types.Bool))
}

// TestNativeAgreesWithCEL: every expression of the native shapes is
// compiled natively and gives CEL's answer on every input, including the
// tricky ones; the others stay in CEL. Without this, a native evaluator
// that disagreed with CEL would let a request past a deny rule that the
// policy tests (which share this evaluator) say would be denied.
func TestNativeAgreesWithCEL(t *testing.T) {
	env, err := newExprEnv(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[bool]int{}
	for _, src := range nativeExprs {
		p, err := env.compile(src, true)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if p.native == nil {
			t.Errorf("%q is not compiled natively", src)
			continue
		}
		for name, in := range nativeInputs() {
			n, c := evalBoth(t, src, p, in)
			if n != c {
				t.Errorf("%q on the %s request: native %v, CEL %v", src, name, n, c)
			}
			seen[c]++
		}
	}
	if seen[true] == 0 || seen[false] == 0 {
		t.Fatalf("the table only ever evaluates to one answer (%v): it cannot tell the evaluators apart", seen)
	}
	for _, src := range celOnlyExprs {
		p, err := env.compile(src, true)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if p.native != nil {
			t.Errorf("%q is compiled natively; it must run in CEL", src)
		}
	}
}

// TestNativeRespectsCostLimit: an expression whose worst case could go
// over the cost limit runs in CEL, so the limit is still enforced.
func TestNativeRespectsCostLimit(t *testing.T) {
	env, err := newExprEnv(10, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := env.compile(`request.headers["user-agent"].contains("x")`, false)
	if err != nil {
		t.Fatal(err)
	}
	if p.native != nil {
		t.Fatal("compiled natively although its cost estimate is over the limit")
	}
}

// FuzzNativeAgreesWithCEL: for any request, the native evaluator and CEL
// agree on each native-shaped expression.
func FuzzNativeAgreesWithCEL(f *testing.F) {
	f.Add("POST", "/v1/chat", "app.example.com", "curl/8", "a", "1", "admins", []byte{10, 1, 2, 3})
	f.Add("G\xffT", "/caf\xe9", "", "\xff", "", "\xff", "\uFFFD", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	env, err := newExprEnv(0, 0)
	if err != nil {
		f.Fatal(err)
	}
	var progs []*program
	for _, src := range nativeExprs {
		p, err := env.compile(src, true)
		if err != nil || p.native == nil {
			f.Fatalf("%q: not native (%v)", src, err)
		}
		progs = append(progs, p)
	}
	f.Fuzz(func(t *testing.T, method, path, host, ua, tenant, debug, group string, ipb []byte) {
		ip, ok := netip.AddrFromSlice(ipb)
		if !ok {
			ip = netip.MustParseAddr("192.0.2.1")
		}
		in := &Input{IP: ip, Method: method, Path: path, Host: host, Scheme: "https",
			Header:   http.Header{"User-Agent": {ua}, "X-Tenant": {tenant}},
			Query:    url.Values{"debug": {debug}},
			Identity: &identity.Identity{Kind: identity.Session, User: group, Groups: []string{group}}}
		for i, p := range progs {
			if n, c := evalBoth(t, nativeExprs[i], p, in); n != c {
				t.Fatalf("%q: native %v, CEL %v on %+v", nativeExprs[i], n, c, in)
			}
		}
	})
}

// TestEvalHeaderCacheDoesNotLeakBetweenRequests: header values are cached
// per request in pooled evaluators. A request without the header must not
// see the value a previous request sent (an attacker could otherwise ride
// on an allowed neighbour's "x-role: admin"), and every rule reading the
// header sees the same value within one request.
func TestEvalHeaderCacheDoesNotLeakBetweenRequests(t *testing.T) {
	rs := []Rule{
		{Priority: 1, Description: "tenant a is refused", Match: Match{Expr: `request.headers["x-role"].startsWith("guest")`}, Action: ActionDeny},
		{Priority: 2, Description: "admins pass", Match: Match{Expr: `request.headers["X-Role"] == "admin" || request.headers["x-other"] == "admin"`}, Action: ActionAllow},
		{Priority: 3, Description: "the rest is refused", Match: Match{Expr: `request.headers["x-role"].contains("") && request.path.startsWith("/")`}, Action: ActionDeny, Status: 404},
	}
	s, err := Compile(rs, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.headerSlots != 2 {
		t.Fatalf("headerSlots = %d, want 2 (x-role and x-other, each once)", s.headerSlots)
	}
	for i := range 50 {
		admin := &Input{IP: netip.MustParseAddr("10.0.0.1"), Path: "/", Header: http.Header{"X-Role": {"admin"}}}
		if res := s.Eval(t.Context(), PhaseEdge, admin); res.Action != ActionAllow {
			t.Fatalf("round %d: admin got %s (%s)", i, res.Action, res.Reason)
		}
		anon := &Input{IP: netip.MustParseAddr("10.0.0.2"), Path: "/"}
		if res := s.Eval(t.Context(), PhaseEdge, anon); res.Action != ActionDeny || res.Status != 404 {
			t.Fatalf("round %d: a request without X-Role after an admin's got %s %d (%s): a header leaked between requests",
				i, res.Action, res.Status, res.Reason)
		}
		guest := &Input{IP: netip.MustParseAddr("10.0.0.3"), Path: "/", Header: http.Header{"X-Role": {"guest"}, "X-Other": {"admin"}}}
		if res := s.Eval(t.Context(), PhaseEdge, guest); res.Action != ActionDeny || res.Status != 403 {
			t.Fatalf("round %d: guest got %s %d (%s)", i, res.Action, res.Status, res.Reason)
		}
	}
}
