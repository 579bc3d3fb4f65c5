package rules

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sync"

	"cel.dev/cel-go/common/types"

	"github.com/sekisho/sekisho/internal/waf"
)

// Eval runs the rules of one phase for a request and returns the decision.
//
// In PhaseEdge, ActionNone means no edge rule matched: authenticate, then
// call Eval again with PhaseIdentity. Any other action from the edge phase
// is the rules' decision for the request (identity rules do not run). In
// PhaseIdentity a request no rule matches gets the set's default action,
// with Rule nil.
//
// Eval never panics on request data: an expression error, a cost limit
// exceeded, a failing rate limiter or WAF all give ActionDeny with status 500
// and Err set (fail closed). A nil Set has no rules: ActionNone at the edge,
// allow after sign-in.
func (s *Set) Eval(ctx context.Context, phase Phase, in *Input) Result {
	if s == nil {
		if phase == PhaseIdentity {
			return Result{Action: ActionAllow, Reason: "no rules: default allow"}
		}
		return Result{}
	}
	if in == nil {
		in = &Input{}
	}
	var ps *phaseSet
	switch phase {
	case PhaseEdge:
		ps = &s.edge
	case PhaseIdentity:
		ps = &s.ident
	default:
		err := fmt.Errorf("rules: unknown phase %q", phase)
		return Result{Action: ActionDeny, Status: http.StatusInternalServerError, Reason: "rules failed: denied", Err: err}
	}
	// Native expressions take the evaluator by pointer, which moves it to
	// the heap; a pool keeps that (and the candidate list) from costing an
	// allocation per request.
	ev := evaluators.Get().(*evaluator)
	ev.start(s, ps, in, ctx)
	res := ev.run()
	ev.reset()
	evaluators.Put(ev)
	if phase == PhaseIdentity {
		res = s.Default(res)
	}
	return res
}

// Default applies the set's default action (rules_default) to a result in
// which no rule matched; any other result is returned as it is. Eval does
// this after the identity phase; a request that has no identity phase (the
// gateway's own endpoints) calls it after the edge phase, so with
// rules_default: deny only an allow rule admits it.
func (s *Set) Default(res Result) Result {
	if res.Action != ActionNone {
		return res
	}
	res.Action = s.defaultAction
	res.Reason = "no rule matched: default " + string(s.defaultAction)
	if s.defaultAction == ActionDeny {
		res.Status = http.StatusForbidden
	}
	return res
}

var evaluators = sync.Pool{New: func() any { return &evaluator{cands: make([]int32, 0, 64)} }}

// start readies a pooled evaluator for one Eval call.
func (ev *evaluator) start(s *Set, ps *phaseSet, in *Input, ctx context.Context) {
	if n := s.headerSlots; n > len(ev.hdrHave) {
		ev.hdrs, ev.hdrHave = make([]string, n), make([]bool, n)
	}
	ev.set, ev.ps, ev.in, ev.ctx = s, ps, in, ctx
}

// reset drops what an Eval call left in ev, keeping its buffers.
func (ev *evaluator) reset() {
	clear(ev.hdrs)
	clear(ev.hdrHave)
	*ev = evaluator{cands: ev.cands[:0], hdrs: ev.hdrs, hdrHave: ev.hdrHave}
}

// evaluator is the state of one Eval call.
type evaluator struct {
	cands   []int32  // rules to try, reused across calls
	hdrs    []string // header values by slot (see Set.headerSlots)
	hdrHave []bool   // which of hdrs are set
	set     *Set
	ps      *phaseSet
	in      *Input
	ctx     context.Context
	ip      netip.Addr

	act        *activation
	ipStr      string
	strs       [numStrs]string // request strings for native expressions
	haveStrs   uint8           // which of strs are set
	wafDone    bool
	wafVerdict waf.Verdict
	wafErr     error
}

// appendBelow appends the indexes of list below limit (list is ascending).
func appendBelow(dst, list []int32, limit int32) []int32 {
	for _, i := range list {
		if i >= limit {
			break
		}
		dst = append(dst, i)
	}
	return dst
}

func (ev *evaluator) run() Result {
	ps, in := ev.ps, ev.in
	if len(ps.rules) == 0 {
		return Result{}
	}
	ev.ip = in.IP.Unmap().WithZone("")
	if !ev.ip.IsValid() {
		return Result{Action: ActionDeny, Status: http.StatusBadRequest,
			Reason: "client address unknown or malformed: the rules need it, denied"}
	}
	// The first IP-only rule that matches, from one prefix lookup; only
	// rules before it need to be tried.
	best := int32(len(ps.rules))
	if ps.ipOnly != nil {
		if i, ok := ps.ipOnly.Lookup(ev.ip); ok {
			best = i
		}
	}
	cands := appendBelow(ev.cands, ps.always, best)
	// The guards compare the strings as expressions see them (valid UTF-8).
	if ps.byMethod != nil {
		cands = appendBelow(cands, ps.byMethod[ev.str(strMethod)], best)
	}
	if ps.byHost != nil {
		cands = appendBelow(cands, ps.byHost[ev.str(strHost)], best)
	}
	path := ev.str(strPath)
	if ps.byPath != nil {
		cands = appendBelow(cands, ps.byPath[path], best)
	}
	for _, hi := range ps.byHeader {
		v := ev.header(hi.hdr)
		cands = appendBelow(cands, hi.values[v], best)
	}
	for _, n := range ps.prefixLens {
		if n > len(path) {
			break
		}
		cands = appendBelow(cands, ps.byPrefix[path[:n]], best)
	}
	slices.Sort(cands)
	ev.cands = cands
	var previews []PreviewHit
	for _, i := range cands {
		c := ps.rules[i]
		ok, err := ev.matches(c)
		if err != nil {
			return ev.fail(c, err, previews)
		}
		if !ok {
			continue
		}
		if c.rule.Preview {
			previews = append(previews, PreviewHit{Rule: c.ref, WouldDo: ev.withWAFNote(c, ev.wouldDo(c))})
			continue
		}
		return ev.finish(c, previews)
	}
	if best < int32(len(ps.rules)) {
		return ev.finish(ps.rules[best], previews)
	}
	return Result{Previews: previews}
}

func (ev *evaluator) finish(c *compiled, previews []PreviewHit) Result {
	res := ev.do(c)
	res.Previews = previews
	if c.waf && ev.wafDone {
		res.WAFRuleIDs = ev.wafVerdict.RuleIDs
		res.WAFScore = ev.wafVerdict.Score
		res.Reason = ev.withWAFNote(c, res.Reason)
	}
	return res
}

// withWAFNote appends to what matching rule c did the WAF rules that made it
// match and their score ("deny 403, waf matched CRS 942100 (score 5)"), so
// the audit line tells the operator what to put in waf.disabled_rules. Rules
// without match.waf are left as they are.
func (ev *evaluator) withWAFNote(c *compiled, did string) string {
	if !c.waf || !ev.wafDone || !ev.wafVerdict.Matched {
		return did
	}
	return did + ", " + ev.wafVerdict.Summary()
}

// matches reports whether all of c's conditions hold, cheapest first.
func (ev *evaluator) matches(c *compiled) (bool, error) {
	if c.ipv != nil && !c.ipv.Contains(ev.ip) {
		return false, nil
	}
	if c.notIP != nil && c.notIP.Contains(ev.ip) {
		return false, nil
	}
	if p := c.prg; p != nil {
		if p.never || !p.holds(ev) {
			return false, nil
		}
		switch {
		case p.exact:
		case p.native != nil:
			if !p.native(ev) {
				return false, nil
			}
		default:
			if ev.act == nil {
				ev.act = &activation{in: ev.in, addr: ev.ip, ip: ev.ipStr, id: ev.in.Identity}
			}
			v, _, err := p.prg.Eval(ev.act)
			if err != nil {
				return false, fmt.Errorf("expr: %w", err)
			}
			b, ok := v.(types.Bool)
			if !ok {
				return false, fmt.Errorf("expr returned %s, not bool", v.Type().TypeName())
			}
			if !b {
				return false, nil
			}
		}
	}
	if c.waf {
		v, err := ev.inspect()
		if err != nil {
			return false, err
		}
		if !v.Matched {
			return false, nil
		}
	}
	return true, nil
}

func (ev *evaluator) ipString() string {
	if ev.ipStr == "" {
		ev.ipStr = ev.ip.String()
	}
	return ev.ipStr
}

// inspect runs the WAF once per request, however many rules ask.
func (ev *evaluator) inspect() (waf.Verdict, error) {
	if !ev.wafDone {
		ev.wafDone = true
		switch {
		case ev.set.opts.WAF == nil:
			ev.wafErr = errors.New("match.waf: no WAF configured")
		case ev.in.Request == nil:
			ev.wafErr = errors.New("match.waf: the request was not passed to the rules")
		default:
			ev.wafVerdict, ev.wafErr = ev.set.opts.WAF.Inspect(ev.in.Request)
			if ev.wafErr != nil {
				ev.wafErr = fmt.Errorf("waf: %w", ev.wafErr)
			}
		}
	}
	return ev.wafVerdict, ev.wafErr
}

// fail is the fail-closed answer to an internal error while trying c.
func (ev *evaluator) fail(c *compiled, err error, previews []PreviewHit) Result {
	ref := c.ref
	return Result{Action: ActionDeny, Status: http.StatusInternalServerError, Rule: &ref, Previews: previews,
		Reason: ref.String() + ": evaluation failed, denied", Err: fmt.Errorf("%s: %w", ref, err)}
}

// do carries out c's action.
func (ev *evaluator) do(c *compiled) Result {
	res := Result{Rule: &c.ref} // shared: Results are read-only
	switch c.rule.Action {
	case ActionAllow:
		res.Action, res.Reason = ActionAllow, c.reason
		if c.headers != nil {
			res.AddHeaders = c.headers.Clone()
		}
		return res
	case ActionDeny:
		res.Action, res.Status, res.Reason = ActionDeny, c.rule.Status, c.reason
		return res
	case ActionRedirect:
		res.Action, res.Status, res.Location, res.Reason = ActionRedirect, http.StatusFound, c.rule.RedirectURL, c.reason
		return res
	}
	name := c.ref.String() + ": "
	switch c.rule.Action {
	case ActionThrottle:
		key := c.buildKey(ev.in, ev.ipString())
		r, err := ev.set.opts.Limiter.Take(ev.ctx, key, c.rule.Rate)
		if err != nil {
			return ev.fail(c, fmt.Errorf("rate limiter: %w", err), nil)
		}
		if !r.Allowed {
			res.Action, res.Status, res.RetryAfter = ActionThrottle, http.StatusTooManyRequests, r.RetryAfter
			res.Reason = name + "throttle: over the rate " + c.rule.Rate.String() + ", deny 429"
			break
		}
		res.Action, res.Reason = ActionAllow, name+"throttle: within the rate, allow"
	case ActionBan:
		key := c.buildKey(ev.in, ev.ipString())
		left, err := ev.set.opts.Limiter.Banned(ev.ctx, key)
		if err != nil {
			return ev.fail(c, fmt.Errorf("rate limiter: %w", err), nil)
		}
		if left > 0 {
			res.Action, res.Status, res.RetryAfter = ActionBan, http.StatusTooManyRequests, left
			res.Reason = name + "rate_based_ban: banned, deny 429"
			break
		}
		r, err := ev.set.opts.Limiter.Take(ev.ctx, key, c.rule.Rate)
		if err != nil {
			return ev.fail(c, fmt.Errorf("rate limiter: %w", err), nil)
		}
		if r.Allowed {
			res.Action, res.Reason = ActionAllow, name+"rate_based_ban: within the rate, allow"
			break
		}
		if err := ev.set.opts.Limiter.Ban(ev.ctx, key, c.rule.BanFor); err != nil {
			return ev.fail(c, fmt.Errorf("rate limiter: %w", err), nil)
		}
		res.Action, res.Status, res.RetryAfter = ActionBan, http.StatusTooManyRequests, c.rule.BanFor
		res.Reason = name + "rate_based_ban: over the rate " + c.rule.Rate.String() + ", banned for " + c.rule.BanFor.String() + ", deny 429"
	}
	return res
}

// wouldDo says what preview rule c would have done. Rate rules count under
// their own "preview|" keys so that a preview never uses up the real
// budget, and a preview never bans.
func (ev *evaluator) wouldDo(c *compiled) string {
	switch c.rule.Action {
	case ActionThrottle, ActionBan:
		key := "preview|" + c.buildKey(ev.in, ev.ipString())
		r, err := ev.set.opts.Limiter.Take(ev.ctx, key, c.rule.Rate)
		switch {
		case err != nil:
			return string(c.rule.Action) + ": rate limiter failed"
		case r.Allowed:
			return string(c.rule.Action) + ": within the rate, allow"
		case c.rule.Action == ActionBan:
			return "rate_based_ban: over the rate, ban for " + c.rule.BanFor.String() + ", deny 429"
		}
		return "throttle: over the rate, deny 429"
	case ActionRedirect:
		return "redirect 302 to " + c.rule.RedirectURL
	}
	return c.simpleDo
}
