// Package authz turns a route's policy and an Identity into a Decision that
// says whether the request may pass and why. It knows nothing of HTTP.
package authz

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/pathnorm"
)

// Decision is the outcome of a policy check. Reason is safe to log and to
// show in the audit line; it never contains credentials.
type Decision struct {
	Allow bool
	// NeedsLogin is set when the caller is anonymous and the route is not
	// public: a browser should be sent to sign in, an API client gets 401.
	NeedsLogin bool
	Reason     string
	// Refused, when not nil, is why the credential itself was refused for
	// this request (it wraps ErrOutOfScope): the caller treats the request
	// as one whose credential failed to authenticate.
	Refused error
}

// ErrOutOfScope means the credential (an API key) was not issued for this
// route, method or path.
var ErrOutOfScope = errors.New("API key not valid for this request")

// Request is what a decision looks at besides the identity: the method,
// the normalised path and the time.
type Request struct {
	Method, Path string
	Now          time.Time
}

// Policy is a compiled route policy. The zero Policy allows no one.
type Policy struct {
	public  bool
	anyAuth bool
	users   map[string]bool
	emails  map[string]bool
	domains map[string]bool
	groups  map[string]bool
	// route is the route's name, which a credential's scope must list.
	route string
	// maxAge, above zero, is how recent a browser session's sign-in must be.
	maxAge time.Duration
}

// Compile prepares a validated config policy for fast decisions. A nil
// policy allows no one (deny by default).
func Compile(p *config.Policy) *Policy {
	c := &Policy{}
	if p == nil {
		return c
	}
	c.public = p.Public
	c.anyAuth = p.AllowAuthenticated
	c.users = set(p.Users, false)
	c.emails = set(p.Emails, true)
	c.domains = set(p.Domains, true)
	c.groups = set(p.Groups, false)
	return c
}

// CompileRoute is Compile for the route (or tunnel) named route: its
// policy, and maxAge (auth.max_age), above zero, how recent a browser
// session's sign-in must be. Everything that decides whether an identity
// may use a route is here (the policy, a credential's scope, max_age), so
// that a request, and an open stream decided again after a reload, are
// decided by one call: DecideRequest.
func CompileRoute(route string, p *config.Policy, maxAge time.Duration) *Policy {
	c := Compile(p)
	c.route, c.maxAge = route, maxAge
	return c
}

// MaxAge is the route's auth.max_age; zero: none.
func (p *Policy) MaxAge() time.Duration { return p.maxAge }

// DecideRequest decides whether id may make req on the route: a
// credential's scope first (a key not issued for this route, method or
// path is Refused), then the policy (Decide), then max_age (a browser
// session signed in longer ago needs a new sign-in).
func (p *Policy) DecideRequest(id identity.Identity, req Request) Decision {
	if id.Kind == identity.APIKey && id.Scope == nil {
		err := fmt.Errorf("key %s has no scope: %w", id.SessionID, ErrOutOfScope) // fail closed
		return Decision{NeedsLogin: true, Reason: "credential refused: " + err.Error(), Refused: err}
	}
	if sc := id.Scope; sc != nil && id.Authenticated() {
		if err := p.inScope(id, sc, req); err != nil {
			return Decision{NeedsLogin: true, Reason: "credential refused: " + err.Error(), Refused: err}
		}
	}
	d := p.Decide(id)
	if d.Allow && p.maxAge > 0 && id.Kind == identity.Session && req.Now.Sub(id.AuthTime) > p.maxAge {
		return Decision{NeedsLogin: true, Reason: "route demands a sign-in within " + p.maxAge.String()}
	}
	return d
}

// inScope checks the credential's scope against the route and req. An
// empty route or path (not known) is in no scope: fail closed.
func (p *Policy) inScope(id identity.Identity, sc *identity.Scope, req Request) error {
	switch {
	case p.route == "" || !slices.Contains(sc.Routes, p.route):
		return fmt.Errorf("key %s (%q) is for route(s) %q, not route %q: %w", id.SessionID, sc.Name, sc.Routes, p.route, ErrOutOfScope)
	case len(sc.Methods) > 0 && !slices.Contains(sc.Methods, req.Method):
		return fmt.Errorf("key %s (%q) allows methods %s, not %q: %w", id.SessionID, sc.Name, strings.Join(sc.Methods, ","), req.Method, ErrOutOfScope)
	case len(sc.PathPrefixes) > 0 && !slices.ContainsFunc(sc.PathPrefixes, func(pre string) bool { return pathnorm.HasPrefix(req.Path, pre) }):
		return fmt.Errorf("key %s (%q) allows paths under %q, not %q: %w", id.SessionID, sc.Name, sc.PathPrefixes, req.Path, ErrOutOfScope)
	}
	return nil
}

func set(l []string, fold bool) map[string]bool {
	m := make(map[string]bool, len(l))
	for _, s := range l {
		if fold {
			s = strings.ToLower(s)
		}
		m[s] = true
	}
	return m
}

// Public reports whether the policy lets anyone in without signing in.
func (p *Policy) Public() bool { return p.public }

// Decide applies the policy to id. Users and groups compare exactly (they
// are names from the identity source); emails and domains compare without case.
func (p *Policy) Decide(id identity.Identity) Decision {
	if p.public {
		return Decision{Allow: true, Reason: "route is public"}
	}
	if !id.Authenticated() {
		return Decision{NeedsLogin: true, Reason: "not signed in"}
	}
	if id.Kind == identity.APIKey {
		// Creating a key for a route is the grant; DecideRequest has
		// checked the key's scope.
		return Decision{Allow: true, Reason: fmt.Sprintf("API key %q is scoped to the route", id.User)}
	}
	if p.anyAuth {
		return Decision{Allow: true, Reason: "any signed-in identity is allowed"}
	}
	if p.users[id.User] {
		return Decision{Allow: true, Reason: fmt.Sprintf("user %q is allowed", id.User)}
	}
	if id.Email != "" {
		email := strings.ToLower(id.Email)
		if p.emails[email] {
			return Decision{Allow: true, Reason: fmt.Sprintf("email %q is allowed", email)}
		}
		if i := strings.LastIndexByte(email, '@'); i > 0 && p.domains[email[i+1:]] {
			return Decision{Allow: true, Reason: fmt.Sprintf("email domain %q is allowed", email[i+1:])}
		}
	}
	for _, g := range id.Groups {
		if p.groups[g] {
			return Decision{Allow: true, Reason: fmt.Sprintf("group %q is allowed", g)}
		}
	}
	return Decision{Reason: fmt.Sprintf("%s %q matches no allow list of the route", kindWord(id.Kind), id.User)}
}

func kindWord(k identity.Kind) string {
	switch k {
	case identity.APIKey:
		return "API key of"
	case identity.Bearer:
		return "service identity"
	default:
		return "user"
	}
}
