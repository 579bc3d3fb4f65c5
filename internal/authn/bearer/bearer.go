// Package bearer authenticates workload identities — CI jobs, service
// accounts, Kubernetes pods — by OIDC ID tokens (JWTs) from trusted issuers.
//
// A token is read from Proxy-Authorization: Bearer on every route that
// accepts an issuer, and from Authorization: Bearer only on routes listed in
// Options.AuthorizationRoutes. It must be a compact JWS signed by a key in
// the issuer's key set with an algorithm that key is pinned to (never
// "none" or HMAC), carry the issuer's exact iss, one of its audiences, and
// an exp not past (iat and nbf not in the future), all with bounded leeway.
// Verified tokens are remembered by their SHA-256 until exp, so a client
// reusing one token pays one signature check.
package bearer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/authn/bearer/jwtcheck"
	"github.com/sekisho/sekisho/internal/identity"
)

// Header names the Authenticator reads.
const (
	HeaderProxyAuthorization = "Proxy-Authorization"
	HeaderAuthorization      = "Authorization"
)

// cached is what the verified-token cache keeps.
type cached struct {
	issuer string // Issuer.Name
	id     identity.Identity
}

// Authenticator verifies bearer tokens; see the package doc. It implements
// the pipeline's Authenticator and is safe for concurrent use.
type Authenticator struct {
	issuers  map[string]*issuer   // by Name
	routes   map[string][]*issuer // route -> accepted issuers, in config order
	authzHdr map[string]bool
	cache    *jwtcheck.Cache[cached]
	algs     []jose.SignatureAlgorithm
	now      func() time.Time
}

// New checks opts and returns an Authenticator. It fetches nothing: key
// sets are fetched on first use. Every problem is reported, naming the
// issuer or route.
func New(opts Options) (*Authenticator, error) {
	a := &Authenticator{
		issuers: make(map[string]*issuer), routes: make(map[string][]*issuer),
		authzHdr: make(map[string]bool), cache: jwtcheck.NewCache[cached](opts.CacheSize), now: opts.Now,
	}
	if a.now == nil {
		a.now = time.Now
	}
	var errs []error
	for i, c := range opts.Issuers {
		if c.Name == "" {
			errs = append(errs, fmt.Errorf("bearer issuer #%d (%s): name is empty", i+1, c.IssuerURL))
			continue
		}
		if _, dup := a.issuers[c.Name]; dup {
			errs = append(errs, fmt.Errorf("bearer issuer %q: defined twice", c.Name))
			continue
		}
		iss, err := newIssuer(c, a.now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		a.issuers[c.Name] = iss
		for _, alg := range iss.algs {
			if !slices.Contains(a.algs, alg) {
				a.algs = append(a.algs, alg)
			}
		}
	}
	for route, names := range opts.Routes {
		for _, n := range names {
			iss, ok := a.issuers[n]
			if !ok {
				if !slices.ContainsFunc(opts.Issuers, func(c Issuer) bool { return c.Name == n }) {
					errs = append(errs, fmt.Errorf("route %q: bearer issuer %q is not defined", route, n))
				}
				continue
			}
			if !slices.Contains(a.routes[route], iss) {
				a.routes[route] = append(a.routes[route], iss)
			}
		}
	}
	for route, on := range opts.AuthorizationRoutes {
		if on {
			a.authzHdr[route] = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return a, nil
}

// Authenticate implements the pipeline's Authenticator. A request with no
// bearer credential, or whose bearer is not a JWT (it may be an API key for
// another authenticator), is anonymous without error. A JWT that is
// refused is an error naming why. The header that carried the token is
// the result's CredentialHeader, so the pipeline removes it upstream.
func (a *Authenticator) Authenticate(_ http.ResponseWriter, r *http.Request, in authn.Request) (authn.Result, error) {
	token, header, err := a.credential(r, in.Route)
	if err != nil || token == "" {
		return authn.Result{}, err
	}
	id, err := a.verify(r.Context(), in.Route, token)
	if err != nil {
		// Not recorded: a refused JWT in Authorization may be the app's own.
		return authn.Result{}, fmt.Errorf("bearer token in %s: %w", header, err)
	}
	return authn.Result{Identity: id, CredentialHeader: header}, nil
}

// credential finds the JWT to check: Proxy-Authorization first, then
// Authorization where the route allows it.
func (a *Authenticator) credential(r *http.Request, route string) (token, header string, err error) {
	headers := []string{HeaderProxyAuthorization}
	if a.authzHdr[route] {
		headers = append(headers, HeaderAuthorization)
	}
	for _, h := range headers {
		vals := r.Header.Values(h)
		var jwts []string
		for _, v := range vals {
			if t, ok := bearerJWT(v); ok {
				jwts = append(jwts, t)
			}
		}
		switch {
		case len(jwts) > 1:
			return "", "", fmt.Errorf("bearer: %d bearer tokens in %s; send one", len(jwts), h)
		case len(jwts) == 1 && len(vals) > 1:
			return "", "", fmt.Errorf("bearer: %s is sent %d times; send it once", h, len(vals))
		case len(jwts) == 1:
			return jwts[0], h, nil
		}
	}
	return "", "", nil
}

// bearerJWT returns the token of a "Bearer <jwt>" header value, if the
// token has the shape of a compact JWS (two dots).
func bearerJWT(v string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, strings.Count(tok, ".") == 2
}

// Verify checks token for route and returns its identity. It is what
// Authenticate does once the token is found.
func (a *Authenticator) Verify(ctx context.Context, route, token string) (identity.Identity, error) {
	return a.verify(ctx, route, token)
}

func (a *Authenticator) verify(ctx context.Context, route, token string) (identity.Identity, error) {
	accepted := a.routes[route]
	if len(accepted) == 0 {
		return identity.Identity{}, fmt.Errorf("route %q accepts no bearer tokens", route)
	}
	if c, ok := a.cache.Get(token, a.now()); ok {
		if slices.ContainsFunc(accepted, func(iss *issuer) bool { return iss.name == c.issuer }) {
			id := c.id
			id.Groups = slices.Clone(id.Groups) // the caller may change its copy, not the cache's
			return id, nil
		}
		// Verified for an issuer entry this route does not accept: check
		// afresh against the ones it does.
	}
	tok, err := jwtcheck.Parse(token, a.algs)
	if err != nil {
		return identity.Identity{}, err
	}
	iss := tok.Issuer()
	var errs []error
	for _, c := range accepted {
		if c.url != iss {
			continue
		}
		id, win, err := c.verify(ctx, tok)
		if err != nil {
			errs = append(errs, fmt.Errorf("issuer %q: %w", c.name, err))
			continue
		}
		a.cache.Put(token, cached{issuer: c.name, id: id}, win)
		return id, nil
	}
	if len(errs) > 0 {
		return identity.Identity{}, errors.Join(errs...)
	}
	if slices.ContainsFunc(a.allIssuers(), func(c *issuer) bool { return c.url == iss }) {
		return identity.Identity{}, fmt.Errorf("%w: iss %q is trusted, but not on route %q", jwtcheck.ErrIssuer, iss, route)
	}
	return identity.Identity{}, fmt.Errorf("%w: iss %q", jwtcheck.ErrIssuer, iss)
}

func (a *Authenticator) allIssuers() []*issuer {
	out := make([]*issuer, 0, len(a.issuers))
	for _, c := range a.issuers {
		out = append(out, c)
	}
	return out
}
