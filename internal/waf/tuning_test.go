package waf

import (
	"net/http"
	"testing"
)

var (
	sqliOnlyWAF = &lazyWAF{opts: Options{Groups: []string{"sqli"}}}
	paranoia2   = &lazyWAF{opts: Options{Paranoia: 2}}
	lenientWAF  = &lazyWAF{opts: Options{AnomalyThreshold: 10}}
)

// Each tuning knob is checked both ways: the request the knob lets through
// is denied by the untuned baseWAF, and the tuned WAF still denies the same
// attack where the knob does not reach (the control).
func TestTuning(t *testing.T) {
	const xss = "<script>alert(1)</script>"
	const xssQ = "%3Cscript%3Ealert(1)%3C%2Fscript%3E"
	tests := []struct {
		name    string
		req     req
		control req // the same attack outside the exclusion
	}{
		{"disabled_rule_id_not_applied",
			req{target: "/search?q=1%27%20OR%20%271%27%3D%271"},
			req{target: "/search?q=1%20UNION%20SELECT%20password%20FROM%20users--"}},
		{"excluded_header_not_inspected",
			req{target: "/", header: http.Header{"Referer": {xss}}},
			req{target: "/", userAgent: xss}},
		{"excluded_header_name_case_insensitive",
			req{target: "/", header: http.Header{"REFERER": {xss}}},
			req{target: "/", userAgent: xss}},
		{"excluded_cookie",
			req{target: "/", header: http.Header{"Cookie": {"prefs=" + xss}}},
			req{target: "/", header: http.Header{"Cookie": {"theme=" + xss}}}},
		{"excluded_arg",
			req{target: "/?note=" + xssQ},
			req{target: "/?title=" + xssQ}},
		{"excluded_arg_in_form_body",
			req{method: "POST", target: "/", body: "note=" + xssQ, contentType: "application/x-www-form-urlencoded"},
			req{method: "POST", target: "/", body: "title=" + xssQ, contentType: "application/x-www-form-urlencoded"}},
		{"excluded_json_path_wildcard_every_message",
			req{method: "POST", target: "/v1/chat/completions", body: chatBody("In JavaScript, what does " + xss + " do?")},
			req{method: "POST", target: "/v1/chat/completions", body: `{"model":"` + xss + `","messages":[]}`}},
	}
	base, tuned := baseWAF.get(t), tunedWAF.get(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if v := inspect(t, base, tc.req); !v.Matched {
				t.Fatalf("baseline: the untuned WAF lets the request through, the test proves nothing: %+v", v)
			}
			if v := inspect(t, tuned, tc.req); v.Matched {
				t.Errorf("tuned WAF still denies: %+v", v)
			}
			if v := inspect(t, tuned, tc.control); !v.Matched {
				t.Errorf("control: the tuned WAF lets the same attack through elsewhere: %+v", v)
			}
		})
	}
}

func TestGroupsSelectFamilies(t *testing.T) {
	w := sqliOnlyWAF.get(t)
	tests := []struct {
		name    string
		req     req
		matched bool
	}{
		{"sqli_loaded_blocks", req{target: "/search?q=1%27%20OR%20%271%27%3D%271"}, true},
		{"xss_not_loaded_passes", req{target: "/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E"}, false},
		{"scanner_not_loaded_passes", req{target: "/", userAgent: "sqlmap/1.7.2#stable"}, false},
		{"protocol_enforcement_always_on_nul_byte", req{target: "/?q=a%00b"}, true},
		{"invalid_utf8_always_on", req{target: "/?q=%ff"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if v := inspect(t, w, tc.req); v.Matched != tc.matched {
				t.Errorf("matched = %v, want %v: %+v", v.Matched, tc.matched, v)
			}
		})
	}
}

func TestParanoiaAndThreshold(t *testing.T) {
	// A control byte (0x01) is allowed at paranoia 1 (rule 920270 refuses
	// only NUL) and refused at paranoia 2 (920271).
	ctrl := req{target: "/?q=a%01b"}
	scanner := req{target: "/", userAgent: "sqlmap/1.7.2#stable"} // scores 5
	tests := []struct {
		name    string
		w       *lazyWAF
		req     req
		matched bool
	}{
		{"paranoia_1_allows_control_byte", baseWAF, ctrl, false},
		{"paranoia_2_adds_rules_control_byte_blocked", paranoia2, ctrl, true},
		{"threshold_5_blocks_one_critical_match", baseWAF, scanner, true},
		{"threshold_10_passes_one_critical_match", lenientWAF, scanner, false},
		{"threshold_10_blocks_two_critical_matches", lenientWAF,
			req{target: "/search?q=1%27%20OR%20%271%27%3D%271", userAgent: "sqlmap/1.7.2#stable"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := inspect(t, tc.w.get(t), tc.req)
			if v.Matched != tc.matched {
				t.Errorf("matched = %v, want %v: %+v", v.Matched, tc.matched, v)
			}
		})
	}
}
