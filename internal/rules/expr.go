package rules

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
)

// The variables an expression may use. Edge rules may not use identity ones.
const (
	varOriginIP = 1 << iota
	varMethod
	varPath
	varQuery
	varHeaders
	varHost
	varScheme
	varUser
	varEmail
	varGroups
	varKind

	identityVars = varUser | varEmail | varGroups | varKind
)

// exprVar is one declared CEL variable.
type exprVar struct {
	name string
	bit  int
	typ  *cel.Type
}

// exprVars lists the declared variables; read-only.
var exprVars = []exprVar{
	{"origin.ip", varOriginIP, cel.StringType},
	{"request.method", varMethod, cel.StringType},
	{"request.path", varPath, cel.StringType},
	{"request.query", varQuery, cel.MapType(cel.StringType, cel.ListType(cel.StringType))},
	{"request.headers", varHeaders, cel.MapType(cel.StringType, cel.StringType)},
	{"request.host", varHost, cel.StringType},
	{"request.scheme", varScheme, cel.StringType},
	{"identity.user", varUser, cel.StringType},
	{"identity.email", varEmail, cel.StringType},
	{"identity.groups", varGroups, cel.ListType(cel.StringType)},
	{"identity.kind", varKind, cel.StringType},
}

// exprEnv is the one CEL environment of a compiled set.
type exprEnv struct {
	env       *cel.Env
	costLimit uint64
	maxLen    int
	// headerSlots numbers the headers the set's expressions and guards
	// read by name (lower-case), so that each is looked up once per request
	// however many rules read it.
	headerSlots map[string]int
}

// header returns the reference to request.headers[name] for this set,
// giving the header a cache slot on first use.
func (e *exprEnv) header(name string) headerRef {
	lower := strings.ToLower(name)
	slot, ok := e.headerSlots[lower]
	if !ok {
		slot = len(e.headerSlots)
		e.headerSlots[lower] = slot
	}
	return headerRef{slot: slot, name: lower, canonical: http.CanonicalHeaderKey(lower)}
}

// newExprEnv builds the CEL environment: the variables, inIpRange, and the
// parser limits that stop pathological expressions before they are checked.
func newExprEnv(costLimit uint64, maxLen int) (*exprEnv, error) {
	if costLimit == 0 {
		costLimit = DefaultCostLimit
	}
	if maxLen <= 0 {
		maxLen = DefaultMaxExprLen
	}
	opts := []cel.EnvOption{
		cel.Function("inIpRange",
			cel.Overload("inIpRange_string_string", []*cel.Type{cel.StringType, cel.StringType}, cel.BoolType,
				cel.BinaryBinding(inIPRange))),
		cel.ParserExpressionSizeLimit(maxLen),
		cel.ParserRecursionLimit(64),
	}
	for _, v := range exprVars {
		opts = append(opts, cel.Variable(v.name, v.typ))
	}
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("build the CEL environment: %w", err)
	}
	return &exprEnv{env: env, costLimit: costLimit, maxLen: maxLen, headerSlots: map[string]int{}}, nil
}

// inIPRange is the CEL function inIpRange(ip, cidr): whether ip is in cidr.
// A malformed IP or CIDR is an evaluation error (the rules fail closed).
func inIPRange(a, b ref.Val) ref.Val {
	ipS, ok1 := a.(types.String)
	cidrS, ok2 := b.(types.String)
	if !ok1 || !ok2 {
		return types.MaybeNoSuchOverloadErr(a)
	}
	ip, err := netip.ParseAddr(string(ipS))
	if err != nil {
		return types.NewErr("inIpRange: first argument is not an IP address")
	}
	p, err := parseRange(string(cidrS))
	if err != nil {
		return types.NewErr("inIpRange: %s", err)
	}
	return types.Bool(p.Contains(ip.Unmap().WithZone("")))
}

// guardKind is an indexable condition an expression implies.
type guardKind int

const (
	guardNone guardKind = iota
	guardPathEq
	guardHostEq
	guardPathPrefix
	guardMethodEq
	guardHeaderEq
)

// Size bounds for the static cost estimate: no request value is longer than
// the listener's default header limit (64 KiB), and no list or map has more
// entries than it could hold. An expression whose estimate under these
// bounds stays within the cost limit runs without runtime cost tracking.
const (
	maxStringSize = 1 << 16
	maxEntries    = 1 << 15
)

// sizeHints bounds the sizes of the request's variables for EstimateCost.
type sizeHints struct{}

// EstimateSize implements cost.Estimator.
func (sizeHints) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	if len(n.Path()) == 0 {
		return nil
	}
	switch n.Type().Kind() {
	case types.StringKind:
		return &cost.SizeEstimate{Min: 0, Max: maxStringSize}
	case types.MapKind, types.ListKind:
		return &cost.SizeEstimate{Min: 0, Max: maxEntries}
	}
	return nil
}

// EstimateCallCost implements cost.Estimator.
func (sizeHints) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

// program is a compiled expression.
type program struct {
	prg cel.Program
	// vars is the set of variables the expression reads (var* bits).
	vars int
	// guard is a condition the expression implies, indexable at compile time;
	// guardNone when there is none.
	guard      guardKind
	guardValue string
	guardName  string    // the header of guardHeaderEq, lower-case
	guardHdr   headerRef // and its reference
	// exact: the expression is the guard itself (or the literal true), so
	// the program need not run.
	exact bool
	// never: the expression is the literal false.
	never bool
	// native is the expression compiled to Go (native.go); nil when it
	// needs the CEL interpreter.
	native boolFn
}

// compile type-checks src and builds its program. Errors carry line:column
// inside the expression. identityOK says whether identity variables may be
// used.
func (e *exprEnv) compile(src string, identityOK bool) (*program, error) {
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("expr is empty")
	}
	if len(src) > e.maxLen {
		return nil, fmt.Errorf("expr is %d bytes long, over the limit of %d", len(src), e.maxLen)
	}
	checked, iss := e.env.Compile(src)
	if iss != nil && iss.Err() != nil {
		var msgs []string
		for _, ce := range iss.Errors() {
			if ce.Location.Line() < 1 {
				msgs = append(msgs, "expr: "+ce.Message)
				continue
			}
			msgs = append(msgs, fmt.Sprintf("expr %d:%d: %s", ce.Location.Line(), ce.Location.Column()+1, ce.Message))
		}
		if len(msgs) == 0 {
			msgs = append(msgs, "expr: "+iss.Err().Error())
		}
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	if !checked.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("expr returns %s, not bool", checked.OutputType())
	}
	native := checked.NativeRep()
	p := &program{}
	var used []string
	for _, r := range native.ReferenceMap() {
		for _, v := range exprVars {
			if r.Name == v.name && p.vars&v.bit == 0 {
				p.vars |= v.bit
				used = append(used, v.name)
			}
		}
	}
	if !identityOK && p.vars&identityVars != 0 {
		sort.Strings(used)
		var ids []string
		for _, u := range used {
			if strings.HasPrefix(u, "identity.") {
				ids = append(ids, u)
			}
		}
		return nil, fmt.Errorf("expr uses %s, known only after sign-in: set phase: identity", strings.Join(ids, ", "))
	}
	if err := checkConstantCIDRs(native); err != nil {
		return nil, err
	}
	p.findGuard(native)
	if p.guard == guardHeaderEq {
		p.guardHdr = e.header(p.guardName)
	}
	// Runtime cost tracking costs more than a simple expression itself, so
	// it is on only for expressions whose worst case over any request the
	// listener accepts could go over the limit.
	popts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	est, err := e.env.EstimateCost(checked, sizeHints{})
	if err != nil || est.Max > e.costLimit {
		popts = append(popts, cel.CostLimit(e.costLimit))
	} else {
		// Natively only within the cost limit, so that a limit CEL would
		// enforce is never skipped.
		p.native = compileNative(native, e)
	}
	prg, err := e.env.Program(checked, popts...)
	if err != nil {
		return nil, fmt.Errorf("expr: %w", err)
	}
	p.prg = prg
	return p, nil
}

// checkConstantCIDRs reports inIpRange calls whose CIDR argument is a
// malformed literal, so the typo is a check error rather than a failure on
// every request.
func checkConstantCIDRs(a *ast.AST) error {
	var errs []error
	nav := ast.NavigateAST(a)
	for _, n := range ast.MatchDescendants(nav, ast.FunctionMatcher("inIpRange")) {
		args := n.AsCall().Args()
		if len(args) != 2 || args[1].Kind() != ast.LiteralKind {
			continue
		}
		s, ok := args[1].AsLiteral().(types.String)
		if !ok {
			continue
		}
		if _, err := parseRange(string(s)); err != nil {
			loc := a.SourceInfo().GetStartLocation(n.ID())
			errs = append(errs, fmt.Errorf("expr %d:%d: inIpRange: %w", loc.Line(), loc.Column()+1, err))
		}
	}
	return errors.Join(errs...)
}

// findGuard looks for an indexable condition among the expression's
// top-level conjuncts and picks the most selective one.
func (p *program) findGuard(a *ast.AST) {
	root := a.Expr()
	if root.Kind() == ast.LiteralKind {
		if b, ok := root.AsLiteral().(types.Bool); ok {
			p.exact, p.never = bool(b), !bool(b)
		}
		return
	}
	conj := conjuncts(root, nil)
	best, bestRank := guardNone, 0
	var bestValue, bestName string
	rank := map[guardKind]int{guardPathEq: 5, guardHeaderEq: 4, guardHostEq: 3, guardPathPrefix: 2, guardMethodEq: 1}
	for _, c := range conj {
		k, v, n := guardOf(a, c)
		if k != guardNone && rank[k] > bestRank {
			best, bestRank, bestValue, bestName = k, rank[k], v, n
		}
	}
	p.guard, p.guardValue, p.guardName = best, bestValue, bestName
	p.exact = best != guardNone && len(conj) == 1
}

// conjuncts flattens a tree of && into its operands.
func conjuncts(e ast.Expr, out []ast.Expr) []ast.Expr {
	if e.Kind() == ast.CallKind && e.AsCall().FunctionName() == "_&&_" {
		for _, a := range e.AsCall().Args() {
			out = conjuncts(a, out)
		}
		return out
	}
	return append(out, e)
}

// guardOf classifies one conjunct: request.path|host|method == "literal",
// request.headers["literal"] == "literal", or
// request.path.startsWith("literal"). For a header it also returns the
// header's name, lower-case.
func guardOf(a *ast.AST, e ast.Expr) (guardKind, string, string) {
	if e.Kind() != ast.CallKind {
		return guardNone, "", ""
	}
	c := e.AsCall()
	switch {
	case c.FunctionName() == "_==_" && len(c.Args()) == 2:
		x, y := c.Args()[0], c.Args()[1]
		if x.Kind() == ast.LiteralKind {
			x, y = y, x
		}
		lit, ok := stringLiteral(y)
		if !ok {
			return guardNone, "", ""
		}
		switch varName(a, x) {
		case "request.path":
			return guardPathEq, lit, ""
		case "request.host":
			return guardHostEq, lit, ""
		case "request.method":
			return guardMethodEq, lit, ""
		}
		if x.Kind() == ast.CallKind && x.AsCall().FunctionName() == "_[_]" && len(x.AsCall().Args()) == 2 {
			m, k := x.AsCall().Args()[0], x.AsCall().Args()[1]
			if name, ok := stringLiteral(k); ok && varName(a, m) == "request.headers" {
				return guardHeaderEq, lit, strings.ToLower(name)
			}
		}
	case c.FunctionName() == "startsWith" && c.IsMemberFunction() && len(c.Args()) == 1:
		lit, ok := stringLiteral(c.Args()[0])
		if ok && varName(a, c.Target()) == "request.path" {
			return guardPathPrefix, lit, ""
		}
	}
	return guardNone, "", ""
}

func stringLiteral(e ast.Expr) (string, bool) {
	if e.Kind() != ast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// varName returns the declared variable e refers to, or "".
func varName(a *ast.AST, e ast.Expr) string {
	if r, ok := a.ReferenceMap()[e.ID()]; ok && r.Value == nil {
		return r.Name
	}
	return ""
}

// holds reports whether the guard holds for the request ev evaluates.
func (p *program) holds(ev *evaluator) bool {
	switch p.guard {
	case guardPathEq:
		return ev.str(strPath) == p.guardValue
	case guardHostEq:
		return ev.str(strHost) == p.guardValue
	case guardPathPrefix:
		return strings.HasPrefix(ev.str(strPath), p.guardValue)
	case guardMethodEq:
		return ev.str(strMethod) == p.guardValue
	case guardHeaderEq:
		return ev.header(p.guardHdr) == p.guardValue
	}
	return true
}
