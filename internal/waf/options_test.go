package waf

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNewRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want []string // each must appear in the error
	}{
		{"unknown_group_error", Options{Groups: []string{"sqli", "sql-injection"}},
			[]string{`unknown rule group "sql-injection"`, "valid: java, lfi, nodejs, php, protocol-attack, rce, rfi, scanner-detection, session-fixation, sqli, xss"}},
		{"unknown_group_error_case_matters", Options{Groups: []string{"XSS"}}, []string{`"XSS"`}},
		{"paranoia_out_of_range_error", Options{Paranoia: 5}, []string{"paranoia 5 is out of range"}},
		{"paranoia_negative_error", Options{Paranoia: -1}, []string{"paranoia -1 is out of range"}},
		{"anomaly_threshold_negative_error", Options{AnomalyThreshold: -5}, []string{"anomaly threshold -5"}},
		{"body_limit_negative_error", Options{BodyLimit: -1}, []string{"body limit -1"}},
		{"body_limit_too_big_error", Options{BodyLimit: MaxBodyLimit + 1}, []string{"body limit 67108865"}},
		{"max_uri_length_too_big_error", Options{MaxURILength: 2 << 20}, []string{"max URI length 2097152"}},
		{"max_header_bytes_negative_error", Options{MaxHeaderBytes: -1}, []string{"max header bytes -1"}},
		{"disable_blocking_evaluation_refused", Options{DisabledRules: []int{949110}}, []string{"rule 949110 belongs to the anomaly scoring"}},
		{"disable_initialization_refused", Options{DisabledRules: []int{901001}}, []string{"rule 901001"}},
		{"disabled_rule_not_a_rule_id", Options{DisabledRules: []int{0}}, []string{"disabled rule 0 is not a rule id"}},
		{"excluded_header_empty_name_would_exclude_everything", Options{ExcludeHeaders: []string{""}}, []string{`excluded header ""`, "exclude everything"}},
		{"excluded_arg_seclang_injection_pipe", Options{ExcludeArgs: []string{"a|REQUEST_HEADERS"}}, []string{`excluded argument "a|REQUEST_HEADERS"`}},
		{"excluded_cookie_seclang_injection_quote", Options{ExcludeCookies: []string{`a" "id:1`}}, []string{"excluded cookie"}},
		{"excluded_arg_regex_refused", Options{ExcludeArgs: []string{"/.*/"}}, []string{"regular expressions are not supported"}},
		{"every_problem_listed", Options{Groups: []string{"nope"}, Paranoia: 9, ExcludeHeaders: []string{"a b"}},
			[]string{`"nope"`, "paranoia 9", `excluded header "a b"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := New(tc.opts)
			if err == nil {
				t.Fatalf("New(%+v) = %v, want an error", tc.opts, w)
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestNewDisabledRuleMustBeLoaded(t *testing.T) {
	// 942100 is a real CRS rule, but the sqli group is not loaded.
	_, err := New(Options{Groups: []string{"xss"}, DisabledRules: []int{941100, 942100, 123}})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, s := range []string{"disabled rule 942100 is not among the loaded rules", "disabled rule 123 is not"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
	if strings.Contains(err.Error(), "941100") {
		t.Errorf("error names 941100, which is loaded: %q", err)
	}
}

func TestDefaults(t *testing.T) {
	got := Options{}.withDefaults()
	want := struct {
		Groups    []string
		Paranoia  int
		Threshold int
		BodyLimit int64
	}{GroupNames(), 1, 5, 128 << 10}
	gotS := struct {
		Groups    []string
		Paranoia  int
		Threshold int
		BodyLimit int64
	}{got.Groups, got.Paranoia, got.AnomalyThreshold, got.BodyLimit}
	if d := cmp.Diff(want, gotS); d != "" {
		t.Errorf("defaults (-want +got):\n%s", d)
	}
	if len(GroupNames()) != 11 {
		t.Errorf("GroupNames() = %v, want the 11 groups of the issue", GroupNames())
	}
}

func TestArgKey(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"literal", "note", "note"},
		{"json_path_literal", "json.messages.0.content", "json.messages.0.content"},
		{"wildcard_segment", "json.messages.*.content", `/^json\.messages\.[^.]+\.content$/`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := argKey(tc.in); got != tc.want {
				t.Errorf("argKey(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestVerdictMessage(t *testing.T) {
	tests := []struct {
		name string
		ids  []int
		by   int
		want string
	}{
		{"anomaly", []int{941100, 942100, 949110}, 949110, "WAF anomaly score reached the threshold (sqli, xss)"},
		{"protocol", []int{920270, 949110}, 949110, "WAF anomaly score reached the threshold (protocol-enforcement)"},
		{"body", []int{200002}, 200002, "WAF could not parse the request body"},
		{"encoding", []int{200004}, 200004, "WAF found an invalid encoding in the request"},
		{"other", []int{913100}, 913100, "WAF rule 913100 denied the scanner-detection"},
		{"expect", []int{RuleBadExpect}, RuleBadExpect, "WAF refused an Expect header other than 100-continue"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := message(tc.ids, tc.by); got != tc.want {
				t.Errorf("message = %q, want %q", got, tc.want)
			}
		})
	}
}
