package rules

import (
	"regexp"
	"strings"

	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"

	"github.com/sekisho/sekisho/internal/identity"
)

// Native evaluation. Most rule expressions are comparisons of request
// strings with literals joined by && and ||: `request.headers["user-agent"]
// .contains("curl")`, `request.path.matches("^/v1/")`, `"admins" in
// identity.groups`. The CEL interpreter spends about half a microsecond on
// each such expression, most of it on its activation and value boxing;
// compiled to Go closures the same test takes tens of nanoseconds, which
// is what lets a thousand rules run in a few microseconds.
//
// Only shapes whose CEL evaluation cannot fail are compiled natively, so
// CEL's error semantics (an error inside && or || is absorbed by a decisive
// other side, or fails the rule) never come into it; every other expression
// runs in CEL as before. The fuzz target FuzzNativeAgreesWithCEL and
// TestNativeAgreesWithCEL hold the two evaluators to the same answers.

// boolFn and strFn are compiled expression nodes.
type (
	boolFn func(*evaluator) bool
	strFn  func(*evaluator) string
)

// Indexes of the request's string variables in evaluator.strs.
const (
	strMethod = iota
	strPath
	strHost
	strScheme
	strUser
	strEmail
	strKind
	numStrs
)

// str returns string variable k as CEL sees it (valid UTF-8), computed
// once per evaluation.
func (ev *evaluator) str(k int) string {
	if ev.haveStrs&(1<<k) != 0 {
		return ev.strs[k]
	}
	in := ev.in
	var s string
	switch k {
	case strMethod:
		s = validUTF8(in.Method)
	case strPath:
		s = validUTF8(in.Path)
	case strHost:
		s = validUTF8(in.Host)
	case strScheme:
		s = validUTF8(in.Scheme)
	case strUser:
		s = validUTF8(ev.identity().User)
	case strEmail:
		s = validUTF8(ev.identity().Email)
	case strKind:
		s = string(ev.identity().Kind)
	}
	ev.strs[k] = s
	ev.haveStrs |= 1 << k
	return s
}

// identity is the identity the rules see: the anonymous one when none.
func (ev *evaluator) identity() *identity.Identity {
	if ev.in.Identity == nil {
		return anonymous
	}
	return ev.in.Identity
}

// headerRef names a header the set's rules read: its lower-case name, its
// canonical form and its slot in the evaluator's per-request cache.
type headerRef struct {
	slot            int
	name, canonical string
}

// header returns request.headers[h.name] as CEL sees it, looked up once per
// evaluation however many rules, guards and indexes read it.
func (ev *evaluator) header(h headerRef) string {
	if h.slot < len(ev.hdrHave) && ev.hdrHave[h.slot] {
		return ev.hdrs[h.slot]
	}
	hdr := ev.in.Header
	vs, ok := hdr[h.canonical]
	if !ok {
		vs = hdr[h.name] // a key the server could not canonicalise, or none
	}
	v := joinValues(vs)
	if h.slot < len(ev.hdrHave) {
		ev.hdrs[h.slot], ev.hdrHave[h.slot] = v, true
	}
	return v
}

// nativeCompiler turns a checked expression into closures, or reports
// that some part of it is not a shape it knows.
type nativeCompiler struct {
	a   *ast.AST
	env *exprEnv // numbers the headers the set's expressions read
}

// compileNative returns the native form of a checked boolean expression,
// or nil when the expression needs CEL.
func compileNative(a *ast.AST, env *exprEnv) boolFn {
	return nativeCompiler{a, env}.boolean(a.Expr())
}

func (nc nativeCompiler) boolean(e ast.Expr) boolFn {
	switch e.Kind() {
	case ast.LiteralKind:
		b, ok := e.AsLiteral().(types.Bool)
		if !ok {
			return nil
		}
		v := bool(b)
		return func(*evaluator) bool { return v }
	case ast.CallKind:
	default:
		return nil
	}
	c := e.AsCall()
	args := c.Args()
	if c.IsMemberFunction() {
		return nc.member(c)
	}
	switch c.FunctionName() {
	case "_&&_", "_||_":
		if len(args) != 2 {
			return nil
		}
		x, y := nc.boolean(args[0]), nc.boolean(args[1])
		if x == nil || y == nil {
			return nil
		}
		if c.FunctionName() == "_&&_" {
			return func(ev *evaluator) bool { return x(ev) && y(ev) }
		}
		return func(ev *evaluator) bool { return x(ev) || y(ev) }
	case "!_":
		if len(args) != 1 {
			return nil
		}
		if x := nc.boolean(args[0]); x != nil {
			return func(ev *evaluator) bool { return !x(ev) }
		}
	case "_==_", "_!=_":
		if len(args) != 2 {
			return nil
		}
		x, y := nc.str(args[0]), nc.str(args[1])
		if x == nil || y == nil {
			return nil
		}
		if c.FunctionName() == "_==_" {
			return func(ev *evaluator) bool { return x(ev) == y(ev) }
		}
		return func(ev *evaluator) bool { return x(ev) != y(ev) }
	case "@in":
		if len(args) == 2 {
			return nc.in(args[0], args[1])
		}
	case "inIpRange":
		// Only with origin.ip, which is always a valid address, and a
		// literal range (checked at compile time): then it cannot fail.
		if len(args) != 2 || varName(nc.a, args[0]) != "origin.ip" {
			return nil
		}
		lit, ok := stringLiteral(args[1])
		if !ok {
			return nil
		}
		p, err := parseRange(lit)
		if err != nil {
			return nil
		}
		return func(ev *evaluator) bool { return p.Contains(ev.ip) }
	case "matches":
		if len(args) == 2 {
			return nc.matches(args[0], args[1])
		}
	}
	return nil
}

// member compiles s.contains(t), s.startsWith(t), s.endsWith(t) and
// s.matches("literal").
func (nc nativeCompiler) member(c ast.CallExpr) boolFn {
	args := c.Args()
	if len(args) != 1 {
		return nil
	}
	if c.FunctionName() == "matches" {
		return nc.matches(c.Target(), args[0])
	}
	var op func(string, string) bool
	switch c.FunctionName() {
	case "contains":
		op = strings.Contains
	case "startsWith":
		op = strings.HasPrefix
	case "endsWith":
		op = strings.HasSuffix
	default:
		return nil
	}
	s := nc.str(c.Target())
	if s == nil {
		return nil
	}
	if lit, ok := stringLiteral(args[0]); ok {
		return func(ev *evaluator) bool { return op(s(ev), lit) }
	}
	t := nc.str(args[0])
	if t == nil {
		return nil
	}
	return func(ev *evaluator) bool { return op(s(ev), t(ev)) }
}

// matches compiles a match against a literal pattern; CEL uses Go's RE2
// regexp too, so the answers are the same.
func (nc nativeCompiler) matches(target, pattern ast.Expr) boolFn {
	lit, ok := stringLiteral(pattern)
	if !ok {
		return nil
	}
	re, err := regexp.Compile(lit)
	if err != nil {
		return nil
	}
	s := nc.str(target)
	if s == nil {
		return nil
	}
	return func(ev *evaluator) bool { return re.MatchString(s(ev)) }
}

// in compiles x in [literals], x in request.headers, x in request.query,
// x in request.query["name"] and x in identity.groups.
func (nc nativeCompiler) in(elem, coll ast.Expr) boolFn {
	x := nc.str(elem)
	if x == nil {
		return nil
	}
	switch varName(nc.a, coll) {
	case "request.headers":
		return func(ev *evaluator) bool {
			_, found := headerValues(ev.in.Header, strings.ToLower(x(ev)))
			return found
		}
	case "request.query":
		return func(ev *evaluator) bool {
			_, found := ev.in.Query[x(ev)]
			return found
		}
	case "identity.groups":
		return func(ev *evaluator) bool {
			v := x(ev)
			for _, g := range ev.identity().Groups {
				if validUTF8(g) == v {
					return true
				}
			}
			return false
		}
	}
	if coll.Kind() == ast.ListKind {
		l := coll.AsList()
		if len(l.OptionalIndices()) > 0 {
			return nil
		}
		set := make(map[string]struct{}, l.Size())
		var elems []strFn
		literals := true
		for _, el := range l.Elements() {
			f := nc.str(el)
			if f == nil {
				return nil
			}
			elems = append(elems, f)
			s, ok := stringLiteral(el)
			literals = literals && ok
			set[s] = struct{}{}
		}
		if !literals {
			return func(ev *evaluator) bool {
				v := x(ev)
				for _, f := range elems {
					if f(ev) == v {
						return true
					}
				}
				return false
			}
		}
		return func(ev *evaluator) bool { _, ok := set[x(ev)]; return ok }
	}
	if coll.Kind() == ast.CallKind && coll.AsCall().FunctionName() == "_[_]" && !coll.AsCall().IsMemberFunction() {
		args := coll.AsCall().Args()
		name, ok := stringLiteral(args[1])
		if len(args) != 2 || !ok || varName(nc.a, args[0]) != "request.query" {
			return nil
		}
		return func(ev *evaluator) bool {
			v := x(ev)
			for _, q := range ev.in.Query[name] {
				if validUTF8(q) == v {
					return true
				}
			}
			return false
		}
	}
	return nil
}

// str compiles a string-valued node: a literal, a request or identity
// string variable, or request.headers["literal"].
func (nc nativeCompiler) str(e ast.Expr) strFn {
	if s, ok := stringLiteral(e); ok {
		return func(*evaluator) string { return s }
	}
	switch varName(nc.a, e) {
	case "request.method":
		return strVar(strMethod)
	case "request.path":
		return strVar(strPath)
	case "request.host":
		return strVar(strHost)
	case "request.scheme":
		return strVar(strScheme)
	case "identity.user":
		return strVar(strUser)
	case "identity.email":
		return strVar(strEmail)
	case "identity.kind":
		return strVar(strKind)
	case "origin.ip":
		return (*evaluator).ipString
	}
	if e.Kind() != ast.CallKind || e.AsCall().FunctionName() != "_[_]" || e.AsCall().IsMemberFunction() {
		return nil
	}
	args := e.AsCall().Args()
	if len(args) != 2 || varName(nc.a, args[0]) != "request.headers" {
		return nil
	}
	name, ok := stringLiteral(args[1])
	if !ok {
		return nil
	}
	h := nc.env.header(name)
	return func(ev *evaluator) string { return ev.header(h) }
}

func strVar(k int) strFn { return func(ev *evaluator) string { return ev.str(k) } }
