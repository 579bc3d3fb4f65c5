// Package authz turns a route's policy and an Identity into a Decision that
// says whether the request may pass and why. It knows nothing of HTTP.
package authz

import (
	"fmt"
	"strings"
	"time"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/identity"
)

// Decision is the outcome of a policy check. Reason is safe to log and to
// show in the audit line; it never contains credentials.
type Decision struct {
	Allow bool
	// NeedsLogin is set when the caller is anonymous and the route is not
	// public: a browser should be sent to sign in, an API client gets 401.
	NeedsLogin bool
	Reason     string
}

// Policy is a compiled route policy. The zero Policy allows no one.
type Policy struct {
	public  bool
	anyAuth bool
	users   map[string]bool
	emails  map[string]bool
	domains map[string]bool
	groups  map[string]bool
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

// CompileRoute is Compile for a route (or a tunnel): the policy, and
// maxAge (auth.max_age), above zero, how recent a browser session's sign-in
// must be. Everything that decides whether an identity may use a route is
// here, so that a request, and an open stream re-checked after a reload,
// are decided by one call: DecideAt.
func CompileRoute(p *config.Policy, maxAge time.Duration) *Policy {
	c := Compile(p)
	c.maxAge = maxAge
	return c
}

// MaxAge is the route's auth.max_age; zero: none.
func (p *Policy) MaxAge() time.Duration { return p.maxAge }

// DecideAt is Decide with the route's max_age applied at time now: a
// browser session signed in longer ago than that needs a new sign-in.
func (p *Policy) DecideAt(id identity.Identity, now time.Time) Decision {
	d := p.Decide(id)
	if d.Allow && p.maxAge > 0 && id.Kind == identity.Session && now.Sub(id.AuthTime) > p.maxAge {
		return Decision{NeedsLogin: true, Reason: "route demands a sign-in within " + p.maxAge.String()}
	}
	return d
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
		// The key authenticator only admits a key scoped to this route:
		// creating a key for a route is the grant.
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
