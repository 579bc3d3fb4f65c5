package bearer

import (
	"net/http"
	"time"
)

const (
	// DefaultLeeway is the clock skew allowed on exp, iat and nbf when
	// Issuer.Leeway is zero.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway is the largest Issuer.Leeway accepted.
	MaxLeeway = 5 * time.Minute
	// DefaultSubjectClaim names the claim that becomes Identity.User.
	DefaultSubjectClaim = "sub"
	// DefaultGroupsClaim names the claim that becomes Identity.Groups.
	DefaultGroupsClaim = "groups"
)

// Issuer is one trusted token issuer: Google service accounts
// (https://accounts.google.com), GitHub Actions
// (https://token.actions.githubusercontent.com), a Kubernetes cluster's
// service account issuer, or any OIDC provider.
//
// Security: for a public multi-tenant issuer (Google, GitHub) anyone can
// mint a token with any audience for their own account or repository, so
// the audience alone admits strangers. Name the identities in the route's
// policy (users, emails), or pin them here with RequiredClaims; never pair
// such an issuer with allow_authenticated.
type Issuer struct {
	// Name identifies the issuer in config, in Options.Routes and as
	// Identity.Provider. Required, unique.
	Name string
	// IssuerURL is the exact "iss" claim, and the base of OIDC discovery
	// when JWKSURL is "". Required; https, or http to a loopback address.
	IssuerURL string
	// Audiences: the token's "aud" must contain one of them. Required, at
	// least one; no empty entries.
	Audiences []string
	// JWKSURL is the issuer's key set. "" means: find it through
	// IssuerURL/.well-known/openid-configuration (jwks_uri).
	JWKSURL string
	// SubjectClaim names the string claim that becomes Identity.User.
	// "" means "sub"; "email" suits Google service accounts.
	SubjectClaim string
	// GroupsClaim names the string-array claim that becomes
	// Identity.Groups. "" means "groups"; "-" means none. A present claim
	// of another type refuses the token.
	GroupsClaim string
	// RequiredClaims are claims that must be strings equal to the given
	// values, e.g. {"repository_owner": "example-org"} for GitHub Actions.
	// Nil: none.
	RequiredClaims map[string]string
	// AllowedAlgs are the signature algorithms accepted. Nil means what the
	// key set's keys declare (or fit, for keys without "alg"), within
	// RS256, RS384, RS512, ES256, ES384 and PS256. HS* and "none" are
	// never accepted.
	AllowedAlgs []string
	// Leeway is the clock skew allowed on exp, iat and nbf. Zero means
	// DefaultLeeway (30s); negative means none; at most MaxLeeway (5m).
	Leeway time.Duration
	// HTTPClient fetches discovery and the key set. Nil means a client with
	// a 10s timeout.
	HTTPClient *http.Client
	// Now is the issuer's clock. Nil means Options.Now.
	Now func() time.Time
}

// Options configures an Authenticator.
type Options struct {
	// Issuers are the trusted issuers. Tokens from any other issuer are
	// refused.
	Issuers []Issuer
	// Routes maps a route name to the names of the issuers whose tokens it
	// accepts. A route that is not in the map accepts no bearer tokens.
	Routes map[string][]string
	// AuthorizationRoutes are the routes on which a JWT in the
	// Authorization header is taken as sekisho's credential (and removed
	// before forwarding). Elsewhere only Proxy-Authorization is read, so an
	// app's own Authorization header passes through untouched. Nil: none.
	AuthorizationRoutes map[string]bool
	// CacheSize is how many verified tokens are remembered (by SHA-256,
	// until exp) to skip the signature check. Zero means 10000; negative
	// disables the cache.
	CacheSize int
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}
