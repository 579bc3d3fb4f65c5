package route

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/sekisho/sekisho/internal/ratelimit"
	"github.com/sekisho/sekisho/internal/reqinfo"
	"github.com/sekisho/sekisho/internal/rules"
	"github.com/sekisho/sekisho/internal/web"
)

// applyRules records a rule phase's result for the audit line and answers
// the request when the rule says so (deny, redirect, throttle, ban, or an
// evaluation failure, which fails closed). It reports whether it answered.
func (p *Pipeline) applyRules(w http.ResponseWriter, r *http.Request, info *reqinfo.Info, res rules.Result) bool {
	if res.Rule != nil {
		info.Rule = strconv.Itoa(res.Rule.Priority) + " " + res.Rule.Description
		info.RuleAction = string(res.Action)
	}
	if len(res.Previews) > 0 {
		info.Preview = true
	}
	if res.Err != nil {
		info.RuleNotes = "" // the failure says it all
		p.Logger.Error("security rules failed: request refused", "request_id", info.ID, "route", info.Route, "err", res.Err)
		info.Decision, info.Reason = "deny", "rule evaluation failed (fail closed): "+res.AuditReason()
		web.Error(w, r, http.StatusInternalServerError, "The gateway could not check this request against its rules.")
		return true
	}
	if !res.Denied() {
		if why := res.AuditReason(); why != "" {
			info.RuleNotes = joinNote(info.RuleNotes, why)
		}
		return false
	}
	info.Decision, info.Reason = "deny", res.AuditReason()
	switch res.Action {
	case rules.ActionRedirect:
		http.Redirect(w, r, res.Location, http.StatusFound)
	case rules.ActionThrottle, rules.ActionBan:
		w.Header().Set("Retry-After", strconv.FormatInt(ratelimit.RetryAfterSeconds(res.RetryAfter), 10))
		web.Error(w, r, http.StatusTooManyRequests, "Too many requests. Wait a moment and try again.")
	default:
		status := res.Status
		if status == 0 {
			status = http.StatusForbidden
		}
		web.Error(w, r, status, ruleMessage(status))
	}
	return true
}

func ruleMessage(status int) string {
	switch status {
	case http.StatusNotFound:
		return "There is no app at this address."
	case http.StatusTooManyRequests:
		return "Too many requests. Wait a moment and try again."
	case http.StatusBadRequest:
		return "The request is malformed."
	case http.StatusBadGateway:
		return "The app is not available."
	}
	return fmt.Sprintf("This request is not allowed by the gateway's rules (%d).", status)
}

// cookieValue reads a cookie for rate-limit keys; "" when absent.
func cookieValue(r *http.Request) func(string) string {
	return func(name string) string {
		c, err := r.Cookie(name)
		if err != nil {
			return ""
		}
		return c.Value
	}
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
