package rules

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"testing"
)

// benchRules builds n rules, mixed like a real set: half IP-range rules
// (two /24s each), 30% path-prefix rules, 15% method + exact-path rules and
// 5% header comparisons (indexed too), and 1% expressions no index can help
// (a substring test on the User-Agent), evaluated on every request. The last rule is
// an IP rule for 192.0.2.0/24, which the "late" request matches.
func benchRules(n int) []Rule {
	rs := make([]Rule, 0, n)
	for i := range n - 1 {
		r := Rule{Priority: i + 1, Description: fmt.Sprint("rule ", i), Action: ActionDeny}
		switch m := i % 20; {
		case i%100 == 99:
			r.Match.Expr = fmt.Sprintf(`request.headers["user-agent"].contains("bot-%d")`, i)
		case m < 10:
			r.Match.IPRanges = []string{fmt.Sprintf("10.%d.%d.0/24", i/256, i%256), fmt.Sprintf("2001:db8:%x::/48", i)}
		case m < 16:
			r.Match.Expr = fmt.Sprintf(`request.path.startsWith("/svc%d/")`, i)
		case m < 19:
			r.Match.Expr = fmt.Sprintf(`request.method == "POST" && request.path == "/hook/%d"`, i)
		default:
			r.Match.Expr = fmt.Sprintf(`request.headers["x-tenant"] == "t%d"`, i)
		}
		rs = append(rs, r)
	}
	return append(rs, Rule{Priority: n, Description: "late", Match: Match{IPRanges: []string{"192.0.2.0/24"}}, Action: ActionDeny})
}

func benchEval(b *testing.B, rs []Rule) {
	s, err := Compile(rs, nil, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	h := http.Header{"User-Agent": {"bench"}, "X-Tenant": {"nobody"}, "Accept": {"*/*"}}
	for _, tc := range []struct {
		name, ip string
		want     Action
	}{{"no_match", "198.51.100.7", ActionNone}, {"late_match", "192.0.2.7", ActionDeny}} {
		in := &Input{IP: netip.MustParseAddr(tc.ip), Method: "GET", Path: "/svc/other/path", Host: "app.example.com", Scheme: "https", Header: h}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if res := s.Eval(ctx, PhaseEdge, in); res.Action != tc.want {
					b.Fatalf("got %s, want %s", res.Action, tc.want)
				}
			}
		})
	}
}

func BenchmarkEval10(b *testing.B)   { benchEval(b, benchRules(10)) }
func BenchmarkEval1000(b *testing.B) { benchEval(b, benchRules(1000)) }

// BenchmarkEval1000AllCEL is the worst case: 1,000 expressions no index can
// narrow, every one evaluated for a request none matches.
func BenchmarkEval1000AllCEL(b *testing.B) {
	rs := make([]Rule, 0, 1000)
	for i := range 999 {
		rs = append(rs, Rule{Priority: i + 1, Description: fmt.Sprint("rule ", i), Action: ActionDeny,
			Match: Match{Expr: fmt.Sprintf(`request.headers["x-tenant"] == "t%d" || request.path.endsWith("/x%d")`, i, i)}})
	}
	rs = append(rs, Rule{Priority: 1000, Description: "late", Match: Match{IPRanges: []string{"192.0.2.0/24"}}, Action: ActionDeny})
	benchEval(b, rs)
}
