package rules

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/waf"
)

// The audit line of a WAF rule names the CRS rules that fired and the
// score, from the real Core Rule Set, so an operator can find what to put
// in waf.disabled_rules; a preview names them too.
func TestWAFRuleAuditNamesTheCRSRules(t *testing.T) {
	w, err := waf.New(waf.Options{Groups: []string{"sqli"}, ParseJSON: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	deny := Rule{Priority: 20, Description: "block injection probes", Match: Match{WAF: true}, Action: ActionDeny}
	preview := deny
	preview.Preview = true
	enforcing := mustCompile(t, []Rule{deny}, nil, Options{WAF: w})
	previewing := mustCompile(t, []Rule{preview}, nil, Options{WAF: w})

	input := func(r *http.Request) *Input {
		in := req("198.51.100.7", r.Method, r.URL.Path)
		in.Header, in.Query, in.Request = r.Header, r.URL.Query(), r
		return in
	}
	sqli := func() *http.Request {
		return httptest.NewRequest("GET", "https://app.example.com/search?q=1%27%20OR%20%271%27%3D%271", nil)
	}
	tests := []struct {
		name   string
		set    *Set
		req    *http.Request
		action Action
		reason *regexp.Regexp
	}{
		{"sqli_probe_denied_audit_names_crs_ids_and_score", enforcing, sqli(), ActionDeny,
			regexp.MustCompile(`^rule 20 "block injection probes": deny 403, waf matched CRS 942[0-9]{3}(,942[0-9]{3})* \(score [1-9][0-9]*\)$`)},
		{"sqli_probe_preview_would_deny_names_crs_ids", previewing, sqli(), ActionNone,
			regexp.MustCompile(`^preview rule 20 "block injection probes" would: deny 403, waf matched CRS 942[0-9]{3}(,942[0-9]{3})* \(score [1-9][0-9]*\)$`)},
		{"httpoxy_proxy_header_denied_names_920450", enforcing, func() *http.Request {
			r := httptest.NewRequest("GET", "https://app.example.com/cgi-bin/x", nil)
			r.Header.Set("Proxy", "http://203.0.113.9:3128")
			return r
		}(), ActionDeny, regexp.MustCompile(`^rule 20 "block injection probes": deny 403, waf matched CRS 920450 \(score 5\)$`)},
		{"expect_desync_value_denied_names_sekisho_rule", enforcing, func() *http.Request {
			r := httptest.NewRequest("POST", "https://app.example.com/api", strings.NewReader(`{"q":"hi"}`))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Expect", "y 100-continue")
			return r
		}(), ActionDeny, regexp.MustCompile(`^rule 20 "block injection probes": deny 403, waf matched sekisho rule 200012$`)},
		{"curl_upload_expect_100_continue_passes", enforcing, func() *http.Request {
			r := httptest.NewRequest("POST", "https://app.example.com/v1/chat/completions",
				strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"`+strings.Repeat("hello ", 300)+`"}]}`))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Expect", "100-continue")
			r.Header.Set("User-Agent", "curl/8.11.1")
			return r
		}(), ActionNone, regexp.MustCompile(`^$`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.set.Eval(context.Background(), PhaseEdge, input(tc.req))
			if res.Action != tc.action || res.Err != nil {
				t.Fatalf("action %q (err %v), want %q: %s", res.Action, res.Err, tc.action, res.AuditReason())
			}
			if got := res.AuditReason(); !tc.reason.MatchString(got) {
				t.Errorf("audit reason %q does not match %s", got, tc.reason)
			}
			if tc.action == ActionDeny && (len(res.WAFRuleIDs) == 0 || (res.WAFScore == 0) != (res.WAFRuleIDs[0] < 900000)) {
				t.Errorf("WAFRuleIDs %v, WAFScore %d", res.WAFRuleIDs, res.WAFScore)
			}
		})
	}
}
