package waf

import (
	"io/fs"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	"github.com/google/go-cmp/cmp"
)

// The departures from the CRS defaults (defaults.go) open no door the CRS
// rule was there to close: each attack goes through a real loopback server
// to both default WAFs and must be denied by the rule named.
func TestDefaultsStillStopAttacks(t *testing.T) {
	plain := map[string]string{"User-Agent": "curl/8.11.1", "Accept": "*/*"}
	post := func(path, ct, body string, kv ...string) clientReq {
		return clientReq{method: "POST", path: path, body: []byte(body), header: with(plain, append([]string{"Content-Type", ct}, kv...)...)}
	}
	get := func(path string, kv ...string) clientReq {
		return clientReq{path: path, header: with(plain, kv...)}
	}
	method := func(m string) clientReq { return clientReq{method: m, path: "/dav/notes.txt", header: plain} }
	chat := `{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}`
	tests := []struct {
		name     string
		req      clientReq
		rule     int  // must be among RuleIDs (a CRS file number such as 942 stands for any of its rules)
		jsonOnly bool // only the parse_json WAF inspects JSON bodies
	}{
		// Expect-based desync: values a front end and a back end read
		// differently. Go's HTTP/1.1 server takes these as 100-continue.
		{"expect_desync_obfuscated_value_refused", post("/api", "application/json", chat, "Expect", "y 100-continue"), RuleBadExpect, false},
		{"expect_desync_extra_token_refused", post("/api", "application/json", chat, "Expect", "100-continue, 100-continue"), RuleBadExpect, false},
		// HTTP/2 servers pass any Expect value on to the handler.
		{"expect_desync_suffixed_value_over_http2_refused", func() clientReq {
			c := post("/api", "application/json", chat, "Expect", "100-continuex")
			c.h2 = true
			return c
		}(), RuleBadExpect, false},
		// Restricted headers the CRS keeps out (920450).
		{"httpoxy_proxy_header_refused", get("/cgi-bin/status", "Proxy", "http://203.0.113.9:3128"), 920450, false},
		{"content_range_on_request_refused", post("/upload", "application/json", chat, "Content-Range", "bytes 0-99/1000"), 920450, false},
		{"compressed_body_bypass_content_encoding_refused", post("/api", "application/json", chat, "Content-Encoding", "gzip"), 920450, false},
		{"method_override_header_refused", post("/api/users/1", "application/json", chat, "X-Http-Method-Override", "DELETE"), 920450, false},
		{"nextjs_middleware_bypass_cve_2025_29927_refused", get("/admin", "X-Middleware-Subrequest", "middleware:middleware:middleware:middleware:middleware"), 920450, false},
		{"webdav_lock_token_refused", get("/dav/a", "Lock-Token", "<opaquelocktoken:e71d4fae-5dec-22d6-fea5-00a0c91e6be4>"), 920450, false},
		{"webdav_if_header_refused", get("/dav/a", "If", "(<urn:uuid:181d4fae-7d8c-11d0-a765-00a0c91e6bf2>)"), 920450, false},
		// Methods outside GET HEAD POST OPTIONS PUT PATCH DELETE (911100).
		{"trace_cross_site_tracing_refused", method("TRACE"), 911100, false},
		{"track_method_refused", method("TRACK"), 911100, false},
		{"debug_method_refused", method("DEBUG"), 911100, false},
		{"webdav_propfind_refused", method("PROPFIND"), 911100, false},
		{"webdav_move_refused", method("MOVE"), 911100, false},
		// Content-Type confusion: a JSON attack labelled so the WAF would
		// not parse it as JSON while the app still does (920420).
		{"content_type_confusion_text_plain_json_attack_refused", post("/api/search", "text/plain", `{"q":"1' OR '1'='1"}`), 920420, false},
		// The attack groups, unchanged.
		{"sqli_in_query_refused", get("/search?q=1%27%20OR%20%271%27%3D%271"), 942, false},
		{"path_traversal_refused", get("/download?file=..%2f..%2f..%2fetc%2fpasswd"), 930, false},
		{"scanner_user_agent_refused", get("/", "User-Agent", "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000001)"), 913, false},
		{"xss_in_json_body_refused", post("/v1/chat/completions", "application/json", `{"model":"<script>alert(document.cookie)</script>","messages":[]}`), 941, true},
		{"sqli_in_json_body_over_http2_refused", func() clientReq {
			c := post("/api/search", "application/json", `{"filter":{"name":"x' OR '1'='1"}}`)
			c.h2 = true
			return c
		}(), 942, true},
	}
	for _, d := range defaultWAFs {
		t.Run(d.name, func(t *testing.T) {
			s := newClientServer(t, d.w.get(t))
			for _, tc := range tests {
				if tc.jsonOnly && d.w != baseWAF {
					continue
				}
				t.Run(tc.name, func(t *testing.T) {
					v := s.send(t, tc.req).Verdict
					if !v.Matched || !hasRuleIn(v.RuleIDs, tc.rule) {
						t.Fatalf("got %+v, want a deny naming rule %d", v, tc.rule)
					}
				})
			}
		})
	}
}

// The Verdict names the rules an operator can put in DisabledRules and the
// score they added up, never the scoring machinery.
func TestVerdictNamesTheCRSRules(t *testing.T) {
	w := baseWAF.get(t)
	tests := []struct {
		name  string
		req   req
		ids   []int // exact, or nil to check only that some rule of file is named
		file  int
		score int // exact, or -1 for at least the threshold
	}{
		{"one_restricted_header_one_rule", req{target: "/", header: http.Header{"Proxy": {"http://203.0.113.9"}}}, []int{920450}, 0, 5},
		{"two_critical_rules_add_up", req{method: "TRACE", target: "/", header: http.Header{"Proxy": {"http://203.0.113.9"}}}, []int{911100, 920450}, 0, 10},
		{"sqli_names_sqli_rules", req{target: "/search?q=1%27%20OR%20%271%27%3D%271"}, nil, 942, -1},
		{"outright_deny_names_sekisho_rule", req{method: "POST", target: "/api", body: `{}`, header: http.Header{"Expect": {"y 100-continue"}}}, []int{RuleBadExpect}, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := inspect(t, w, tc.req)
			if !v.Matched {
				t.Fatalf("not matched: %+v", v)
			}
			if tc.ids != nil {
				if diff := cmp.Diff(tc.ids, v.RuleIDs); diff != "" {
					t.Errorf("RuleIDs (-want +got):\n%s", diff)
				}
			} else if !hasRuleIn(v.RuleIDs, tc.file) {
				t.Errorf("RuleIDs %v name no rule of %d", v.RuleIDs, tc.file)
			}
			if slices.ContainsFunc(v.RuleIDs, scoringMachinery) {
				t.Errorf("RuleIDs %v name the scoring machinery (949xxx/980xxx)", v.RuleIDs)
			}
			switch {
			case tc.score >= 0 && v.Score != tc.score:
				t.Errorf("Score = %d, want %d", v.Score, tc.score)
			case tc.score < 0 && v.Score < DefaultAnomalyThreshold:
				t.Errorf("Score = %d, below the threshold it was denied at", v.Score)
			}
		})
	}
	t.Run("passing_request_has_no_ids_or_score", func(t *testing.T) {
		if v := inspect(t, w, req{target: "/search?q=weather+in+tokyo"}); v.Matched || v.RuleIDs != nil || v.Score != 0 {
			t.Fatalf("%+v", v)
		}
	})
}

// crsDefault reads the value the embedded CRS's initialisation gives a TX
// variable when crs-setup does not.
func crsDefault(t *testing.T, name string) string {
	t.Helper()
	b, err := fs.ReadFile(coreruleset.FS, crsDir+"REQUEST-901-INITIALIZATION.conf")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`setvar:'tx\.` + regexp.QuoteMeta(name) + `=([^']*)'`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("the embedded CRS sets no default for tx.%s", name)
	}
	return string(m[1])
}

// A CRS upgrade that changes the lists sekisho overrides fails here, so a
// header or method the CRS adds is never silently dropped or allowed.
func TestRestrictedHeadersFollowTheCRS(t *testing.T) {
	crs := crsDefault(t, "restricted_headers_basic")
	want := strings.Join(slices.DeleteFunc(strings.Fields(crs), func(h string) bool { return h == "/expect/" }), " ")
	if restrictedHeadersBasic != want {
		t.Errorf("restrictedHeadersBasic = %q\nthe CRS default without /expect/ is %q: update it and defaults.go's doc comment", restrictedHeadersBasic, want)
	}
	if crs := crsDefault(t, "allowed_methods"); allowedMethods != crs+" PUT PATCH DELETE" {
		t.Errorf("allowedMethods = %q, the CRS default is %q: update it and defaults.go's doc comment", allowedMethods, crs)
	}
}

func TestVerdictSummary(t *testing.T) {
	tests := []struct {
		name string
		v    Verdict
		want string
	}{
		{"passed", Verdict{}, ""},
		{"crs_rules_and_score", Verdict{Matched: true, RuleIDs: []int{942100, 942190}, Score: 10}, "waf matched CRS 942100,942190 (score 10)"},
		{"sekisho_rule_outright", Verdict{Matched: true, RuleIDs: []int{RuleBadExpect}}, "waf matched sekisho rule 200012"},
		{"sekisho_rules", Verdict{Matched: true, RuleIDs: []int{200002, 200003}}, "waf matched sekisho rules 200002,200003"},
		{"both", Verdict{Matched: true, RuleIDs: []int{200005, 920450}, Score: 5}, "waf matched CRS 920450 and sekisho rule 200005 (score 5)"},
		{"matched_without_ids", Verdict{Matched: true}, "waf matched no named rule"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.v.Summary(); got != tc.want {
				t.Errorf("Summary() = %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("real_sqli_verdict_names_crs_ids_and_score", func(t *testing.T) {
		v := inspect(t, baseWAF.get(t), req{target: "/search?q=1%27%20OR%20%271%27%3D%271"})
		if got := v.Summary(); !regexp.MustCompile(`^waf matched CRS (942[0-9]{3},?)+.* \(score [1-9][0-9]*\)$`).MatchString(got) {
			t.Errorf("Summary() = %q", got)
		}
	})
}
