package policytest

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Result is one checked case.
type Result struct {
	// Case is the case.
	Case Case
	// Got is what the gateway did.
	Got Outcome
	// Problems lists every way Got differs from the case's Expect; empty
	// when the case passed.
	Problems []string
}

// Passed reports whether the case passed.
func (r Result) Passed() bool { return len(r.Problems) == 0 }

// Report is the outcome of a run.
type Report struct {
	// Results are in the order of the cases.
	Results []Result
	// Passed and Failed count the cases.
	Passed, Failed int
}

// OK reports whether every case passed.
func (r Report) OK() bool { return r.Failed == 0 }

// Run checks each case with evaluate, which sends the case's request through
// the gateway's real router, rules and policy and says what happened.
func Run(cases []Case, evaluate func(Case) Outcome) Report {
	var rep Report
	for _, c := range cases {
		got := evaluate(c)
		res := Result{Case: c, Got: got, Problems: compare(c.Expect, got)}
		if res.Passed() {
			rep.Passed++
		} else {
			rep.Failed++
		}
		rep.Results = append(rep.Results, res)
	}
	return rep
}

func compare(want Expect, got Outcome) []string {
	if got.Err != nil {
		return []string{"could not evaluate: " + got.Err.Error()}
	}
	var p []string
	if got.Action != want.Action {
		p = append(p, fmt.Sprintf("action: want %s, got %s", want.Action, got.Action))
	}
	if want.Status != 0 && got.Status != want.Status {
		p = append(p, fmt.Sprintf("status: want %d, got %d", want.Status, got.Status))
	}
	switch gotRule := ruleString(got); {
	case want.Rule == "":
	case gotRule != want.Rule:
		p = append(p, fmt.Sprintf("rule: want %s, got %s", want.Rule, gotRule))
	}
	if want.Route != "" && got.Route != want.Route {
		p = append(p, fmt.Sprintf("route: want %q, got %q", want.Route, got.Route))
	}
	return p
}

func ruleString(o Outcome) string {
	if o.Rule == nil {
		return "default"
	}
	return strconv.Itoa(*o.Rule)
}

// describe is the outcome in a few words: `deny 403 by rule 100 "office only"`.
func describe(o Outcome) string {
	var b strings.Builder
	b.WriteString(o.Action)
	if o.Status != 0 {
		fmt.Fprintf(&b, " %d", o.Status)
	}
	if o.Rule != nil {
		fmt.Fprintf(&b, " by rule %d %q", *o.Rule, o.RuleDescription)
	} else {
		b.WriteString(" by default")
	}
	if o.Route != "" {
		fmt.Fprintf(&b, " on route %q", o.Route)
	}
	return b.String()
}

// WriteTo writes the report, one line per case (PASS or FAIL, the case's
// name, and for a failure expected vs got), then a summary line.
func (r Report) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	for _, res := range r.Results {
		if res.Passed() {
			fmt.Fprintf(&b, "PASS  %s: %s\n", res.Case.Name, describe(res.Got))
			continue
		}
		fmt.Fprintf(&b, "FAIL  %s (line %d): %s; got %s\n", res.Case.Name, res.Case.Line,
			strings.Join(res.Problems, "; "), describe(res.Got))
		if res.Got.Reason != "" {
			fmt.Fprintf(&b, "      reason: %s\n", res.Got.Reason)
		}
	}
	fmt.Fprintf(&b, "%d passed, %d failed\n", r.Passed, r.Failed)
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

// String returns the report as WriteTo writes it.
func (r Report) String() string {
	var b strings.Builder
	r.WriteTo(&b)
	return b.String()
}
