package rules

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/gaissmai/bart"
)

// Set is a compiled rule set: the gateway's rules merged with one route's.
// It is immutable and safe for concurrent use.
type Set struct {
	edge, ident   phaseSet
	defaultAction Action
	opts          Options
	headerSlots   int // headers native expressions cache per request
}

// compiled is one rule ready to evaluate.
type compiled struct {
	ref      RuleRef
	rule     Rule
	ipv      *bart.Lite // nil: no ip_ranges condition
	notIP    *bart.Lite // nil: no not_ip_ranges condition
	prg      *program   // nil: no expr
	waf      bool
	key      []keyPart
	keyBase  string // "g|r100" or "rt=NAME|r100"
	headers  http.Header
	simpleDo string // what allow / deny / redirect do, for previews and reasons
	reason   string // "priority "description": simpleDo", the Result's Reason
}

// phaseSet holds one phase's rules sorted by priority and their indexes.
type phaseSet struct {
	rules []*compiled
	// ipOnly maps each prefix of the IP-only rules (no other condition, not
	// preview) to the index of the first rule whose ranges contain it: the
	// longest-prefix match of an address gives the first IP-only rule that
	// matches it.
	ipOnly *bart.Table[int32]
	// always lists the rules with no indexable condition.
	always []int32
	// byMethod, byHost, byPath and byPrefix list rules by their guard.
	byMethod, byHost, byPath, byPrefix map[string][]int32
	// prefixLens are the distinct lengths of byPrefix's keys, ascending.
	prefixLens []int
	// byHeader lists rules by header name and the value they compare to.
	byHeader []headerIndex
}

// headerIndex lists the rules guarded by request.headers[name] == value.
type headerIndex struct {
	hdr    headerRef
	values map[string][]int32
}

// ruleName is how errors name a rule.
func ruleName(r *Rule) string {
	var b strings.Builder
	if r.Source != "" {
		b.WriteString(r.Source)
		b.WriteString(": ")
	}
	b.WriteString(RuleRef{Priority: r.Priority, Description: r.Description}.String())
	return b.String()
}

// Compile checks and compiles the gateway's rules and a route's rules into
// one set. It returns every problem it finds (errors.Join), each naming its
// rule; with any problem the set is nil.
func Compile(gateway, route []Rule, opts Options) (*Set, error) {
	var errs []error
	s := &Set{opts: opts}
	def := opts.DefaultAction
	if opts.RouteDefaultAction != "" {
		def = opts.RouteDefaultAction
	}
	switch def {
	case "", ActionAllow:
		s.defaultAction = ActionAllow
	case ActionDeny:
		s.defaultAction = ActionDeny
	default:
		errs = append(errs, fmt.Errorf("default_action %q is not allow or deny", def))
	}
	env, err := newExprEnv(opts.CostLimit, opts.MaxExprLen)
	if err != nil {
		return nil, err
	}
	type origin struct {
		r       *Rule
		isRoute bool
	}
	var all []origin
	for i := range gateway {
		all = append(all, origin{&gateway[i], false})
	}
	for i := range route {
		all = append(all, origin{&route[i], true})
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].r.Priority < all[j].r.Priority })
	for i := 1; i < len(all); i++ {
		if a, b := all[i-1].r, all[i].r; a.Priority == b.Priority {
			errs = append(errs, fmt.Errorf("%s: priority %d is also the priority of rule %q; priorities must be unique across gateway and route rules",
				ruleName(b), b.Priority, a.Description))
		}
	}
	for _, o := range all {
		c, err := compileRule(o.r, o.isRoute, env, &opts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if c.rule.Phase == PhaseIdentity {
			s.ident.rules = append(s.ident.rules, c)
		} else {
			s.edge.rules = append(s.edge.rules, c)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s.edge.index()
	s.ident.index()
	s.headerSlots = len(env.headerSlots)
	return s, nil
}

// compileRule checks one rule and compiles its conditions.
func compileRule(r *Rule, isRoute bool, env *exprEnv, opts *Options) (*compiled, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	c := &compiled{ref: RuleRef{Priority: r.Priority, Description: r.Description}, rule: *r}
	if strings.TrimSpace(r.Description) == "" {
		bad("has no description: say what the rule is for, the audit line names it")
	}
	switch r.Phase {
	case "":
		c.rule.Phase = PhaseEdge
	case PhaseEdge, PhaseIdentity:
	default:
		bad("phase %q is not edge or identity", r.Phase)
	}
	identityOK := c.rule.Phase == PhaseIdentity
	m := r.Match
	if len(m.IPRanges) == 0 && len(m.NotIPRanges) == 0 && m.Expr == "" && !m.WAF {
		bad(`match is empty: give ip_ranges, not_ip_ranges, expr or waf (expr: "true" matches every request)`)
	}
	var err error
	if c.ipv, err = rangeTable("ip_ranges", m.IPRanges); err != nil {
		errs = append(errs, err)
	}
	if c.notIP, err = rangeTable("not_ip_ranges", m.NotIPRanges); err != nil {
		errs = append(errs, err)
	}
	if m.Expr != "" {
		if c.prg, err = env.compile(m.Expr, identityOK); err != nil {
			errs = append(errs, err)
		}
	}
	if m.WAF {
		c.waf = true
		if identityOK {
			bad("match.waf is for edge rules; the WAF runs before sign-in")
		}
		if opts.WAF == nil {
			bad("match.waf needs the WAF, which is not configured")
		}
	}
	errs = append(errs, checkAction(c, r, isRoute, opts)...)
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s: %w", ruleName(r), errors.Join(errs...))
	}
	c.reason = c.ref.String() + ": " + c.simpleDo
	return c, nil
}

// checkAction checks the action and its parameters and fills c's action
// fields.
func checkAction(c *compiled, r *Rule, isRoute bool, opts *Options) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	limited := r.Action == ActionThrottle || r.Action == ActionBan
	switch r.Action {
	case ActionAllow:
		c.simpleDo = "allow"
	case ActionDeny:
		switch r.Status {
		case 0:
			c.rule.Status = http.StatusForbidden
		case http.StatusForbidden, http.StatusNotFound, http.StatusTooManyRequests, http.StatusBadGateway:
		default:
			bad("status %d is not one of 403, 404, 429, 502", r.Status)
		}
		c.simpleDo = "deny " + strconv.Itoa(c.rule.Status)
	case ActionRedirect:
		if err := checkRedirect(r.RedirectURL); err != nil {
			errs = append(errs, err)
		}
		c.simpleDo = "redirect 302"
	case ActionThrottle, ActionBan:
		if err := r.Rate.Validate(); err != nil {
			bad("rate: %w", err)
		}
		if opts.Limiter == nil {
			bad("%s needs a rate limiter, which is not configured", r.Action)
		}
	case "":
		bad("has no action: say allow, deny, redirect, throttle or rate_based_ban")
	default:
		bad("action %q is not allow, deny, redirect, throttle or rate_based_ban", r.Action)
	}
	if r.Action != ActionDeny && r.Status != 0 {
		bad("status applies to deny only")
	}
	if r.Action != ActionRedirect && r.RedirectURL != "" {
		bad("redirect_url applies to redirect only")
	}
	if !limited && (r.Rate != (Rule{}).Rate) {
		bad("rate applies to throttle and rate_based_ban only")
	}
	if !limited && len(r.Key) > 0 {
		bad("key applies to throttle and rate_based_ban only")
	}
	switch {
	case r.Action == ActionBan && r.BanFor <= 0:
		bad("ban_for must be above zero for rate_based_ban, got %s", r.BanFor)
	case r.Action != ActionBan && r.BanFor != 0:
		bad("ban_for applies to rate_based_ban only")
	}
	if limited {
		kp, err := parseKey(r.Key, c.rule.Phase == PhaseIdentity)
		if err != nil {
			errs = append(errs, err)
		}
		c.key = kp
		c.keyBase = "g|r" + strconv.Itoa(r.Priority)
		if isRoute {
			c.keyBase = "rt=" + escapeKeyValue(opts.RouteName) + "|r" + strconv.Itoa(r.Priority)
		}
	}
	if len(r.AddHeaders) > 0 {
		if r.Action != ActionAllow {
			bad("add_headers applies to allow only")
		}
		h, err := checkHeaders(r.AddHeaders)
		if err != nil {
			errs = append(errs, err)
		}
		c.headers = h
	}
	return errs
}

// checkRedirect accepts only absolute http(s) URLs with a host.
func checkRedirect(s string) error {
	if s == "" {
		return errors.New("redirect needs redirect_url")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("redirect_url %q is not a URL: %w", s, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return fmt.Errorf("redirect_url %q must be an absolute http:// or https:// URL with a host and no user info", s)
	}
	if strings.ContainsAny(s, "\r\n\x00") {
		return fmt.Errorf("redirect_url %q contains control characters", s)
	}
	return nil
}

// reservedHeaders are headers an add_headers may not set: sekisho's own
// (the pipeline sets and strips them) and hop-by-hop ones.
var reservedHeaders = []string{"Forwarded", "X-Real-Ip", "X-Request-Id", "Host", "Content-Length",
	"Transfer-Encoding", "Connection", "Upgrade", "Te", "Trailer", "Keep-Alive", "Proxy-Connection",
	"Proxy-Authorization"}

func checkHeaders(in map[string]string) (http.Header, error) {
	var errs []error
	h := make(http.Header, len(in))
	names := make([]string, 0, len(in))
	for k := range in {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v := in[k]
		ck := http.CanonicalHeaderKey(k)
		switch {
		case !validHeaderName(k):
			errs = append(errs, fmt.Errorf("add_headers: %q is not a valid header name", k))
		case strings.HasPrefix(ck, "X-Sekisho-") || strings.HasPrefix(ck, "X-Forwarded-") || slices.Contains(reservedHeaders, ck):
			errs = append(errs, fmt.Errorf("add_headers: %s is set by sekisho itself or is hop-by-hop; a rule may not set it", ck))
		case strings.ContainsAny(v, "\r\n\x00"):
			errs = append(errs, fmt.Errorf("add_headers: the value of %s contains control characters", ck))
		default:
			h.Add(ck, v)
		}
	}
	return h, errors.Join(errs...)
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// parseRange parses a CIDR or a bare address (meaning just that address).
// A CIDR with host bits set is an error that suggests the network, since
// "10.1.2.3/8" is far more often a typo than intent.
func parseRange(s string) (netip.Prefix, error) {
	if strings.IndexByte(s, '/') < 0 {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q has an IPv6 zone; ranges cannot", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (%v)", s, err)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 range; write the IPv4 range", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %s?", s, m)
	}
	return p, nil
}

// rangeTable parses a list of ranges into a prefix table; nil for none.
func rangeTable(field string, ranges []string) (*bart.Lite, error) {
	if len(ranges) == 0 {
		return nil, nil
	}
	var errs []error
	t := new(bart.Lite)
	for _, s := range ranges {
		p, err := parseRange(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
			continue
		}
		t.Insert(p)
	}
	return t, errors.Join(errs...)
}

// ipOnly reports whether the rule's sole condition is ip_ranges and it acts
// (not a preview), so the set's prefix table may decide it.
func (c *compiled) ipOnly() bool {
	return c.ipv != nil && c.notIP == nil && c.prg == nil && !c.waf && !c.rule.Preview
}

// index builds the phase's prefix table and guard maps.
func (ps *phaseSet) index() {
	first := map[netip.Prefix]int32{} // each prefix's first IP-only rule
	lens := map[int]bool{}
	add := func(m *map[string][]int32, k string, i int32) {
		if *m == nil {
			*m = map[string][]int32{}
		}
		(*m)[k] = append((*m)[k], i)
	}
	for i, c := range ps.rules {
		i := int32(i)
		switch {
		case c.ipOnly():
			for _, p := range c.rule.Match.IPRanges {
				pfx, _ := parseRange(p) // checked by Compile
				if _, seen := first[pfx]; !seen {
					first[pfx] = i
				}
			}
		case c.prg != nil && c.prg.never:
			// expr: false never matches.
		case c.prg != nil && c.prg.guard == guardMethodEq:
			add(&ps.byMethod, c.prg.guardValue, i)
		case c.prg != nil && c.prg.guard == guardHostEq:
			add(&ps.byHost, c.prg.guardValue, i)
		case c.prg != nil && c.prg.guard == guardPathEq:
			add(&ps.byPath, c.prg.guardValue, i)
		case c.prg != nil && c.prg.guard == guardHeaderEq:
			k := slices.IndexFunc(ps.byHeader, func(h headerIndex) bool { return h.hdr == c.prg.guardHdr })
			if k < 0 {
				k = len(ps.byHeader)
				ps.byHeader = append(ps.byHeader, headerIndex{hdr: c.prg.guardHdr, values: map[string][]int32{}})
			}
			ps.byHeader[k].values[c.prg.guardValue] = append(ps.byHeader[k].values[c.prg.guardValue], i)
		case c.prg != nil && c.prg.guard == guardPathPrefix:
			add(&ps.byPrefix, c.prg.guardValue, i)
			lens[len(c.prg.guardValue)] = true
		default:
			ps.always = append(ps.always, i)
		}
	}
	for n := range lens {
		ps.prefixLens = append(ps.prefixLens, n)
	}
	sort.Ints(ps.prefixLens)
	if len(first) == 0 {
		return
	}
	// Each prefix gets the first rule among it and all its supernets, so
	// that the longest-prefix match of an address yields the first IP-only
	// rule containing it.
	exact := new(bart.Table[int32])
	for p, i := range first {
		exact.Insert(p, i)
	}
	ps.ipOnly = new(bart.Table[int32])
	for p, i := range first {
		for _, j := range exact.Supernets(p) {
			i = min(i, j)
		}
		ps.ipOnly.Insert(p, i)
	}
}
