// Package identity holds the one type every authentication method produces and
// every later stage (policy, rules, assertion, audit) consumes.
package identity

import "time"

// Kind says how a request proved who it is.
type Kind string

const (
	// Anonymous is a request that carried no valid credential.
	Anonymous Kind = ""
	// Session is a browser session cookie.
	Session Kind = "session"
	// APIKey is a sekisho API key.
	APIKey Kind = "apikey"
	// Bearer is an OIDC token from a trusted issuer.
	Bearer Kind = "bearer"
	// IAP is an assertion from an Identity-Aware Proxy in front of sekisho.
	IAP Kind = "iap"
)

// Identity is who made a request. The zero value is the anonymous caller.
type Identity struct {
	// Kind is how the identity was established.
	Kind Kind
	// User is the stable name of the principal: the account name for local
	// accounts, the subject for OIDC users and service identities.
	User string
	// Email is the verified email address, or "" if none is known.
	Email string
	// Groups the principal belongs to, as the identity source reported them.
	Groups []string
	// Provider names the source: "local" or an OIDC provider's configured name.
	Provider string
	// SessionID identifies the browser session or API key, for audit and revocation.
	SessionID string
	// AuthTime is when the principal last proved its credential (sign-in time).
	AuthTime time.Time
	// Scope, when not nil, limits what the credential may reach (an API
	// key's routes, methods and paths); authz enforces it.
	Scope *Scope
}

// Scope is what a credential was issued for. Name names it in refusals.
type Scope struct {
	Name string
	// Routes the credential is valid on; at least one.
	Routes []string
	// Methods and PathPrefixes, when not empty, narrow it further.
	Methods, PathPrefixes []string
}

// Authenticated reports whether the identity is anything but anonymous.
func (id Identity) Authenticated() bool { return id.Kind != Anonymous && id.User != "" }
