// Package rules is sekisho's security rule engine: ordered rules per gateway
// and per route that match on the client's IP range, on CEL expressions over
// the request (and, after sign-in, the identity) and on the WAF's verdict, and
// that allow, deny, redirect, throttle or ban.
//
// Rules run in two phases. Edge rules run before authentication and see the
// request only; identity rules run after authentication and authorization and
// also see the identity. Within a phase rules are tried in priority order,
// lowest first, and only the first matching rule that is not a preview acts.
// A matching edge rule ends rule evaluation: its action is the rules'
// decision and identity rules do not run for that request. When no edge rule
// matches, identity rules run; when none of them matches either, the set's
// default action (allow unless configured deny) applies.
//
// Compile checks everything it can before the gateway serves a request:
// duplicate priorities, bad CIDRs, CEL expressions that do not compile or do
// not return bool, identity variables in edge rules, bad rates and keys. Each
// problem names its rule as `rule <priority> "<description>"`.
//
// Eval is built for many rules per request: IP-only rules live in one bart
// prefix table, simple CEL shapes (request.path == "x",
// request.path.startsWith("x"), request.method == "X", request.host == "x")
// are indexed in maps, and only the remaining expressions are evaluated, in
// priority order, up to the best match found so far.
package rules

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/ratelimit"
	"github.com/sekisho/sekisho/internal/waf"
)

// Phase says when a rule runs.
type Phase string

const (
	// PhaseEdge rules run before authentication; they see the request only.
	PhaseEdge Phase = "edge"
	// PhaseIdentity rules run after authentication; they also see the identity.
	PhaseIdentity Phase = "identity"
)

// Action is what a rule does when it matches (in Rule), or what the rules
// decided for a request (in Result).
type Action string

const (
	// ActionNone, in a Result, means that no rule of the phase matched. It is
	// never a rule's action.
	ActionNone Action = ""
	// ActionAllow lets the request continue (to authentication, or to the
	// upstream), with the rule's AddHeaders.
	ActionAllow Action = "allow"
	// ActionDeny answers with the rule's status (403 by default).
	ActionDeny Action = "deny"
	// ActionRedirect answers 302 with the rule's RedirectURL.
	ActionRedirect Action = "redirect"
	// ActionThrottle, in a Rule, counts requests per key and refuses those
	// over the rate with 429 and Retry-After; requests within the rate are
	// allowed. In a Result it means "refused for being over the rate".
	ActionThrottle Action = "throttle"
	// ActionBan, in a Rule, counts requests per key and, once a key goes over
	// the rate, refuses it with 429 for BanFor. In a Result it means "refused
	// because the key is banned".
	ActionBan Action = "rate_based_ban"
)

// Rule is one configured rule. The lead's config loader fills it from YAML;
// every field mirrors a key of the rule's config.
type Rule struct {
	// Priority orders the rules, lowest first; unique within the merged set
	// a route sees (gateway rules and the route's own). Required.
	Priority int
	// Description says what the rule is for; it names the rule in errors and
	// in the audit line. Required.
	Description string
	// Phase is PhaseEdge (default when "") or PhaseIdentity.
	Phase Phase
	// Match holds the conditions; all given ones must hold. At least one is
	// required (write Expr "true" for a catch-all).
	Match Match
	// Action is allow, deny, redirect, throttle or rate_based_ban. Required.
	Action Action
	// Status is the deny status: 403 (default when 0), 404, 429 or 502.
	// Only for deny.
	Status int
	// RedirectURL is the absolute http(s) URL a redirect rule sends the
	// client to with 302. Required for redirect, refused otherwise.
	RedirectURL string
	// Rate is the allowed request rate per key for throttle and
	// rate_based_ban: Count requests per Per. Required for those, refused
	// otherwise; zero or negative values are errors.
	Rate ratelimit.Rate
	// BanFor is how long rate_based_ban refuses a key once it went over the
	// rate. Required for rate_based_ban, refused otherwise.
	BanFor time.Duration
	// Key names what requests are counted by, up to 3 parts of: all, ip,
	// path, user, apikey, header:NAME, cookie:NAME. Default ["ip"]. user and
	// apikey need PhaseIdentity; all cannot be combined.
	Key []string
	// AddHeaders are set on the upstream request when the rule allows. Only
	// for allow; sekisho's own headers (X-Sekisho-*, X-Forwarded-*, ...) and
	// hop-by-hop headers are refused.
	AddHeaders map[string]string
	// Preview makes the rule report what it would have done (Result.Previews)
	// without doing it; evaluation goes on to the next rule. Default false.
	Preview bool
	// Source is where the rule was written ("sekisho.yaml:42"), prefixed to
	// its errors; "" for none.
	Source string
	// Index is the rule's position in its list, for errors when Source is "".
	Index int
}

// Match is a rule's conditions. All given conditions must hold.
type Match struct {
	// IPRanges: the client IP is in one of these CIDRs (IPv4 or IPv6; a bare
	// address means just that address). Empty: no IP condition.
	IPRanges []string
	// NotIPRanges: the client IP is in none of these CIDRs. Empty: no
	// condition.
	NotIPRanges []string
	// Expr is a CEL expression returning bool over origin.ip,
	// request.method, request.path (normalised), request.query (map of
	// lists), request.headers (lower-case keys; a missing header reads ""),
	// request.host, request.scheme and, in identity rules only,
	// identity.user, identity.email, identity.groups and identity.kind
	// (session, apikey, bearer, iap; "" when anonymous). The function
	// inIpRange(ip, cidr) tests an address against a CIDR. "": no condition.
	Expr string
	// WAF: the WAF flags the request. Edge rules only; needs Options.WAF.
	WAF bool
}

// Options configure Compile. The zero value is usable for sets without
// throttle, ban or WAF rules.
type Options struct {
	// DefaultAction is the gateway set's default_action: ActionAllow (when
	// "") or ActionDeny. It applies when no rule of either phase matches.
	DefaultAction Action
	// RouteDefaultAction is the route set's default_action; "" inherits
	// DefaultAction.
	RouteDefaultAction Action
	// RouteName names the route whose set this is. It keeps the rate-limit
	// counters of route rules apart between routes (gateway rules share
	// theirs across routes). "" for the gateway alone.
	RouteName string
	// Limiter counts requests for throttle and rate_based_ban rules. nil: such
	// rules are a check error.
	Limiter ratelimit.Limiter
	// WAF inspects requests for rules with match.waf. nil: such rules are a
	// check error.
	WAF waf.Inspector
	// CostLimit bounds the work of one expression evaluation, in CEL cost
	// units; an expression going over it fails closed (Result.Err). 0 means
	// DefaultCostLimit.
	CostLimit uint64
	// MaxExprLen bounds an expression's length in bytes. 0 means
	// DefaultMaxExprLen.
	MaxExprLen int
}

const (
	// DefaultCostLimit is Options.CostLimit's default: ample for any
	// expression over normal requests, small enough to stop a quadratic one.
	DefaultCostLimit = 100_000
	// DefaultMaxExprLen is Options.MaxExprLen's default.
	DefaultMaxExprLen = 4096
	// MaxKeyParts is the most parts a rate-limit key may combine.
	MaxKeyParts = 3
)

// Input is what the rules see of one request.
type Input struct {
	// IP is the client's address after trusted-proxy resolution. An invalid
	// (zero) address is denied with 400 when the phase has rules.
	IP netip.Addr
	// Method is the request method.
	Method string
	// Path is the normalised path, the same the router matched.
	Path string
	// Host is the request's host without port, lower-case, as routed.
	Host string
	// Scheme is "https" or "http", as the client used it.
	Scheme string
	// Query is the parsed query string; nil for none.
	Query url.Values
	// Header is the request's header; nil for none.
	Header http.Header
	// Identity is who made the request; nil in the edge phase (and treated
	// as the anonymous identity in the identity phase).
	Identity *identity.Identity
	// APIKeyID identifies the API key the request used, "" for none.
	APIKeyID string
	// Cookie returns the value of the named request cookie, "" if absent;
	// nil means no cookies.
	Cookie func(name string) string
	// Request is the request itself, for the WAF; nil only when no rule uses
	// match.waf.
	Request *http.Request
}

// RuleRef names a rule in results and audit lines.
type RuleRef struct {
	// Priority is the rule's priority.
	Priority int
	// Description is the rule's description.
	Description string
}

// String returns `rule <priority> "<description>"`.
func (r RuleRef) String() string {
	return "rule " + strconv.Itoa(r.Priority) + " " + strconv.Quote(r.Description)
}

// PreviewHit is a preview rule that matched before the acting rule.
type PreviewHit struct {
	// Rule is the preview rule.
	Rule RuleRef
	// WouldDo says what the rule would have done: "deny 403",
	// "throttle: over the rate, deny 429", "allow", ...; for a rule with
	// match.waf followed by the WAF's rule ids and score, as in
	// Result.Reason: "deny 403, waf matched CRS 942100 (score 5)".
	WouldDo string
}

// Result is the rules' decision for one phase of one request.
type Result struct {
	// Action is what to do: ActionNone (no rule matched in the edge phase:
	// go on to authentication), ActionAllow (go on; add AddHeaders upstream),
	// ActionDeny, ActionRedirect, ActionThrottle (over the rate) or ActionBan
	// (key banned): answer with Status (and Location / Retry-After).
	Action Action
	// Status is the HTTP status to answer with when Action is not allow or
	// none: the rule's status for deny, 302 for redirect, 429 for throttle and
	// ban, 400 for a request without a usable client address, 500 with Err.
	Status int
	// Location is the redirect target for ActionRedirect.
	Location string
	// RetryAfter is, for throttle and ban, how long until the client may try
	// again (send it rounded up to seconds: ratelimit.RetryAfterSeconds).
	RetryAfter time.Duration
	// AddHeaders are the headers an allow rule adds to the upstream request;
	// nil for none.
	AddHeaders http.Header
	// Rule is the rule that acted; nil when none did (no match: ActionNone in
	// the edge phase, the default action in the identity phase).
	Rule *RuleRef
	// Previews are the preview rules that matched before the acting rule, in
	// priority order.
	Previews []PreviewHit
	// WAFRuleIDs are the WAF rules that flagged the request (waf.Verdict's
	// RuleIDs: the CRS ids to disable, or sekisho's own 2000xx), when a rule
	// with match.waf acted; nil otherwise. Reason names them too.
	WAFRuleIDs []int
	// WAFScore is the WAF's anomaly score for the request when a rule with
	// match.waf acted; 0 otherwise.
	WAFScore int
	// Reason says why, for the audit line: the acting rule and what it did, or
	// the default, or what went wrong. When the acting rule has match.waf it
	// ends with the WAF's rule ids and score: `rule 20 "block injection
	// probes": deny 403, waf matched CRS 942100,942190 (score 10)`. Never
	// contains request data.
	Reason string
	// Err is an internal failure (an expression error or over its cost
	// limit, the rate limiter or the WAF failing). Action is then ActionDeny
	// with Status 500: the rules fail closed. Log it; do not show it.
	Err error
}

// Denied reports whether the request must be answered by the gateway (deny,
// redirect, throttle, ban) rather than go on.
func (r Result) Denied() bool {
	return r.Action != ActionNone && r.Action != ActionAllow
}

// AuditReason is the audit line's text for r: the acting rule (priority and
// description) and what it did, and each preview hit marked as a preview.
func (r Result) AuditReason() string {
	var b strings.Builder
	b.WriteString(r.Reason)
	for _, p := range r.Previews {
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "preview %s would: %s", p.Rule, p.WouldDo)
	}
	return b.String()
}
