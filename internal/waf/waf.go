// Package waf inspects HTTP requests with Coraza and the OWASP Core Rule Set
// v4 (embedded in the binary; no rule files on disk). It runs CRS in blocking
// anomaly-scoring mode: each matching attack rule adds to the request's
// inbound anomaly score, and the request is denied once the score reaches the
// threshold. The rule engine (internal/rules) calls it through Inspector.
//
// The CRS defaults are kept except where they refuse ordinary clients:
// Expect: 100-continue and the PUT, PATCH and DELETE methods are allowed
// (defaults.go says why and what still guards them).
//
// Cost: the rules are regular expressions run by Go's regexp, CPU-bound and
// roughly linear in the bytes inspected (about 20 µs per byte at paranoia 1
// with every group; rce and sqli are the dearest groups). A 1 KiB chat POST
// costs milliseconds, not microseconds (BenchmarkChatPOSTWAF), which is why
// request targets and headers are size-capped before the rules run and
// why BodyLimit matters.
package waf

import (
	"net/http"
	"strconv"
	"strings"
)

// Verdict is the outcome of inspecting one request.
type Verdict struct {
	// Matched is true when the request must be denied: its anomaly score
	// reached the threshold, or a body the WAF was asked to parse could not
	// be parsed (rule 200002).
	Matched bool
	// RuleIDs are the rules that denied the request, sorted and without
	// duplicates: the CRS rules that matched and added to the anomaly
	// score, and sekisho's own rule (2000xx) when one denied outright.
	// These are the ids DisabledRules takes. The scoring machinery's own
	// rules are left out: the blocking evaluation (949xxx), which only adds
	// the scores up and denies, and the correlation rules (980xxx), which
	// only log. Empty when Matched is false.
	RuleIDs []int
	// Score is the request's inbound anomaly score at the blocking paranoia
	// level when it was denied (5 per critical match, 4 error, 3 warning,
	// 2 notice; denied from AnomalyThreshold on). It is what the scoring
	// rules had added up when inspection stopped, so it can be below the
	// threshold when a sekisho rule (2000xx) denied outright. 0 when
	// Matched is false.
	Score int
	// Message is short and never echoes request data: it goes to the audit
	// log. Empty when Matched is false.
	Message string
}

// Summary is the verdict in one line for the audit log, built from rule ids
// and the score only: "waf matched CRS 942100,942190 (score 10)", "waf
// matched sekisho rule 200012", or both joined with "and". The CRS ids are
// the ones to put in disabled_rules. "" when Matched is false.
func (v Verdict) Summary() string {
	if !v.Matched {
		return ""
	}
	var crs, own []string
	for _, id := range v.RuleIDs {
		if id >= 900000 {
			crs = append(crs, strconv.Itoa(id))
		} else {
			own = append(own, strconv.Itoa(id))
		}
	}
	var parts []string
	if len(crs) > 0 {
		parts = append(parts, "CRS "+strings.Join(crs, ","))
	}
	if len(own) == 1 {
		parts = append(parts, "sekisho rule "+own[0])
	} else if len(own) > 1 {
		parts = append(parts, "sekisho rules "+strings.Join(own, ","))
	}
	if len(parts) == 0 {
		parts = append(parts, "no named rule")
	}
	out := "waf matched " + strings.Join(parts, " and ")
	if v.Score > 0 {
		out += " (score " + strconv.Itoa(v.Score) + ")"
	}
	return out
}

// Inspector inspects a request before it is forwarded. Implementations must
// be safe for concurrent use and must leave r.Body readable from its start.
type Inspector interface {
	Inspect(r *http.Request) (Verdict, error)
}
