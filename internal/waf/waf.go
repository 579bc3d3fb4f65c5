// Package waf inspects HTTP requests with Coraza and the OWASP Core Rule Set
// v4 (embedded in the binary; no rule files on disk). It runs CRS in blocking
// anomaly-scoring mode: each matching attack rule adds to the request's
// inbound anomaly score, and the request is denied once the score reaches the
// threshold. The rule engine (internal/rules) calls it through Inspector.
//
// Cost: the rules are regular expressions run by Go's regexp, CPU-bound and
// roughly linear in the bytes inspected (about 20 µs per byte at paranoia 1
// with every group; rce and sqli are the dearest groups). A 1 KiB chat POST
// costs milliseconds, not microseconds (BenchmarkChatPOSTWAF), which is why
// request targets and headers are size-capped before the rules run and
// why BodyLimit matters.
package waf

import "net/http"

// Verdict is the outcome of inspecting one request.
type Verdict struct {
	// Matched is true when the request must be denied: its anomaly score
	// reached the threshold, or a body the WAF was asked to parse could not
	// be parsed (rule 200002).
	Matched bool
	// RuleIDs are the CRS rules that matched and scored, deduplicated and
	// sorted, the blocking-evaluation rule (949110) included when it fired.
	RuleIDs []int
	// Message is short and never echoes request data: it goes to the audit
	// log. Empty when Matched is false.
	Message string
}

// Inspector inspects a request before it is forwarded. Implementations must
// be safe for concurrent use and must leave r.Body readable from its start.
type Inspector interface {
	Inspect(r *http.Request) (Verdict, error)
}
