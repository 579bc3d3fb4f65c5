package rules

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"testing"

	"cel.dev/cel-go/common/types"
	"github.com/gaissmai/bart"

	"github.com/sekisho/sekisho/internal/identity"
)

// FuzzCompileExpr: any expression string either fails to compile with an
// error, or yields a bool program that evaluates without panicking; when the
// compiler decided the expression is exactly an indexable guard, the guard
// and the program agree.
func FuzzCompileExpr(f *testing.F) {
	for _, s := range []string{
		`true`, `request.path == "/a"`, `"/a" == request.path`, `request.path.startsWith("/ad")`,
		`request.method == "POST" && request.host == "a.example.com"`, `inIpRange(origin.ip, "10.0.0.0/8")`,
		`request.headers["x-a"].contains("b")`, `"1" in request.query["debug"]`, `identity.user == "u" && "g" in identity.groups`,
		`request.headers.all(k, k.size() < 10)`, `request.path.matches("^/a[0-9]+$")`, `[1,2,3].map(x, x * 2).size() == 3`,
		`request.pth == 1`, `request.path + 1`, `((((true))))`, `inIpRange(request.headers["x"], "::/0")`,
	} {
		f.Add(s)
	}
	env, err := newExprEnv(0, 0)
	if err != nil {
		f.Fatal(err)
	}
	in := &Input{IP: netip.MustParseAddr("10.1.2.3"), Method: "POST", Path: "/ad", Host: "a.example.com", Scheme: "https",
		Query: url.Values{"debug": {"1"}}, Header: http.Header{"X-A": {"abc"}},
		Identity: &identity.Identity{Kind: identity.Session, User: "u", Groups: []string{"g"}}}
	f.Fuzz(func(t *testing.T, src string) {
		p, err := env.compile(src, true)
		if err != nil {
			if p != nil {
				t.Fatal("a program with an error")
			}
			return
		}
		if p.prg == nil {
			t.Fatal("compiled without a program")
		}
		act := &activation{in: in, addr: in.IP, id: in.Identity}
		v, _, err := p.prg.Eval(act)
		if err != nil {
			if p.native != nil {
				t.Fatalf("%q is compiled natively as if it could not fail, but CEL fails: %v", src, err)
			}
			return // a runtime error is a fail-closed deny for Eval
		}
		b, ok := v.(types.Bool)
		if !ok {
			t.Fatalf("%q returned %v (%T), not bool", src, v, v)
		}
		ev := &evaluator{in: in, ip: in.IP}
		if p.exact && p.guard != guardNone && bool(b) != p.holds(ev) {
			t.Fatalf("%q: the guard says %v, the program %v", src, p.holds(ev), b)
		}
		if p.native != nil && p.native(ev) != bool(b) {
			t.Fatalf("%q: native says %v, CEL %v", src, !bool(b), b)
		}
		if p.never && bool(b) {
			t.Fatalf("%q: marked never but true", src)
		}
	})
}

// FuzzParseCIDR: a range either fails to parse, or is canonical (no host
// bits), round-trips through String, and the prefix table agrees with
// netip's own Contains on any address, IPv4-mapped ones included.
func FuzzParseCIDR(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "10.1.2.3/8", "2001:db8::/32", "::ffff:10.0.0.0/104", "1.2.3.4", "::", "0.0.0.0/0",
		"fe80::1%eth0", "10.0.0.0/33", "010.0.0.0/8", " 10.0.0.0/8", "::/0", "1.2.3.4/32/1"} {
		f.Add(s, []byte{10, 1, 2, 3})
	}
	f.Fuzz(func(t *testing.T, s string, raw []byte) {
		p, err := parseRange(s)
		if err != nil {
			return
		}
		if !p.IsValid() || p.Masked() != p || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			t.Fatalf("%q parsed to non-canonical %v", s, p)
		}
		q, err := parseRange(p.String())
		if err != nil || q != p {
			t.Fatalf("%q -> %v does not round-trip: %v, %v", s, p, q, err)
		}
		var a netip.Addr
		switch {
		case len(raw) >= 16:
			a = netip.AddrFrom16([16]byte(raw[:16]))
		case len(raw) >= 4:
			a = netip.AddrFrom4([4]byte(raw[:4]))
		default:
			return
		}
		tbl := new(bart.Lite)
		tbl.Insert(p)
		s2 := &Set{}
		s2.edge.rules = []*compiled{{ref: RuleRef{Priority: 1, Description: "r"}, rule: Rule{Action: ActionDeny, Status: 403, Match: Match{IPRanges: []string{p.String()}}}, ipv: tbl, simpleDo: "deny 403"}}
		s2.edge.index()
		res := s2.Eval(context.Background(), PhaseEdge, &Input{IP: a})
		want := p.Contains(a.Unmap())
		if got := res.Action == ActionDeny; got != want {
			t.Fatalf("%v contains %v: table says %v, netip %v", p, a, got, want)
		}
	})
}

// FuzzEvalRequest: attacker-chosen method, path, host, header and query bytes
// never make Eval panic or report an internal error for well-formed rules.
func FuzzEvalRequest(f *testing.F) {
	f.Add("GET", "/admin", "a.example.com", "curl/7", "debug=1&x=%ff")
	f.Add("P\xffST", "/\x00", "", "\xff\xfe", "%zz")
	s, err := Compile([]Rule{
		{Priority: 1, Description: "ua", Match: Match{Expr: `request.headers["user-agent"].startsWith("curl") && request.headers["user-agent"].size() > 3`}, Action: ActionDeny},
		{Priority: 2, Description: "admin", Match: Match{Expr: `request.path.startsWith("/admin") && request.host != "a.example.com"`}, Action: ActionDeny},
		{Priority: 3, Description: "debug", Match: Match{Expr: `"1" in request.query["debug"] || request.query.exists(k, k.contains("\u00ff"))`}, Action: ActionDeny},
		{Priority: 4, Description: "regex", Match: Match{Expr: `request.method.matches("^[A-Z]+$") && request.headers.exists(k, request.headers[k].endsWith("x"))`}, Action: ActionDeny},
		{Priority: 5, Description: "ip", Match: Match{Expr: `inIpRange(origin.ip, "10.0.0.0/8")`, IPRanges: []string{"10.0.0.0/8", "::/0"}}, Action: ActionAllow},
	}, nil, Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, path, host, ua, query string) {
		q, _ := url.ParseQuery(query)
		in := &Input{IP: netip.MustParseAddr("192.0.2.1"), Method: method, Path: path, Host: host, Query: q,
			Header: http.Header{"User-Agent": {ua}, ua: {path}}}
		res := s.Eval(context.Background(), PhaseEdge, in)
		if res.Err != nil {
			t.Fatalf("internal error on request data: %v", res.Err)
		}
	})
}
