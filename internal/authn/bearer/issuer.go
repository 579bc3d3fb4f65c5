package bearer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/sekisho/sekisho/internal/authn/bearer/jwtcheck"
	"github.com/sekisho/sekisho/internal/identity"
)

// issuer verifies the tokens of one configured Issuer.
type issuer struct {
	name     string
	url      string
	algs     []jose.SignatureAlgorithm
	rules    jwtcheck.Rules
	subject  string
	groups   string
	required map[string]string
	keys     *jwtcheck.KeySet
	now      func() time.Time
}

func newIssuer(c Issuer, now func() time.Time) (*issuer, error) {
	var errs []error
	if c.IssuerURL == "" {
		errs = append(errs, errors.New("issuer_url is empty"))
	} else if err := jwtcheck.CheckURL(c.IssuerURL); err != nil {
		errs = append(errs, fmt.Errorf("issuer_url: %w", err))
	}
	if len(c.Audiences) == 0 {
		errs = append(errs, errors.New("audiences is empty: name at least one audience the tokens must carry"))
	}
	if slices.Contains(c.Audiences, "") {
		errs = append(errs, errors.New("audiences has an empty entry"))
	}
	leeway := c.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0:
		leeway = 0
	case leeway > MaxLeeway:
		errs = append(errs, fmt.Errorf("leeway %s is longer than %s", leeway, MaxLeeway))
	}
	algs := slices.Clone(jwtcheck.SupportedAlgs)
	if len(c.AllowedAlgs) > 0 {
		algs = nil
		for _, a := range c.AllowedAlgs {
			if !slices.Contains(jwtcheck.SupportedAlgs, jose.SignatureAlgorithm(a)) {
				errs = append(errs, fmt.Errorf("allowed_algs: %q is not accepted (only %v; never HS* or none)", a, jwtcheck.SupportedAlgs))
				continue
			}
			algs = append(algs, jose.SignatureAlgorithm(a))
		}
	}
	if c.Now != nil {
		now = c.Now
	}
	iss := &issuer{
		name: c.Name, url: c.IssuerURL, algs: algs, subject: c.SubjectClaim, groups: c.GroupsClaim,
		required: c.RequiredClaims, now: now,
		rules: jwtcheck.Rules{Issuer: c.IssuerURL, Audiences: slices.Clone(c.Audiences), Leeway: leeway},
	}
	if iss.subject == "" {
		iss.subject = DefaultSubjectClaim
	}
	if iss.groups == "" {
		iss.groups = DefaultGroupsClaim
	}
	if len(errs) == 0 {
		ks, err := jwtcheck.NewKeySet(jwtcheck.KeySetOptions{
			JWKSURL: c.JWKSURL, Issuer: c.IssuerURL, Algs: algs, HTTPClient: c.HTTPClient, Now: now,
		})
		if err != nil {
			errs = append(errs, err)
		}
		iss.keys = ks
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("bearer issuer %q: %w", c.Name, err)
	}
	return iss, nil
}

// verify checks a parsed token against this issuer and returns the
// identity and the window in which the result may be reused.
func (iss *issuer) verify(ctx context.Context, tok *jwtcheck.Token) (identity.Identity, jwtcheck.Window, error) {
	if !slices.Contains(iss.algs, tok.Alg) {
		return identity.Identity{}, jwtcheck.Window{}, fmt.Errorf("%w: alg %q (issuer allows %v)", jwtcheck.ErrAlgorithm, tok.Alg, iss.algs)
	}
	key, err := iss.keys.Key(ctx, tok.KeyID)
	if err != nil {
		return identity.Identity{}, jwtcheck.Window{}, err
	}
	payload, err := tok.Verify(key)
	if err != nil {
		return identity.Identity{}, jwtcheck.Window{}, err
	}
	var std jwt.Claims
	var all map[string]json.RawMessage
	if err := json.Unmarshal(payload, &std); err != nil {
		return identity.Identity{}, jwtcheck.Window{}, fmt.Errorf("%w: %v", jwtcheck.ErrClaims, err)
	}
	if err := json.Unmarshal(payload, &all); err != nil {
		return identity.Identity{}, jwtcheck.Window{}, fmt.Errorf("%w: %v", jwtcheck.ErrClaims, err)
	}
	win, err := iss.rules.Check(&std, iss.now())
	if err != nil {
		return identity.Identity{}, jwtcheck.Window{}, err
	}
	id, err := iss.identity(all)
	if err != nil {
		return identity.Identity{}, jwtcheck.Window{}, err
	}
	return id, win, nil
}

// identity reads the identity from verified claims.
func (iss *issuer) identity(all map[string]json.RawMessage) (identity.Identity, error) {
	for name, want := range iss.required {
		got, ok := stringClaim(all, name)
		if !ok || got != want {
			return identity.Identity{}, fmt.Errorf("%w: claim %q is %s, want %q", jwtcheck.ErrClaims, name, quoteOrMissing(got, ok), want)
		}
	}
	user, ok := stringClaim(all, iss.subject)
	if !ok || user == "" || !printable(user) {
		return identity.Identity{}, fmt.Errorf("%w: subject claim %q is missing, empty or not a printable string", jwtcheck.ErrClaims, iss.subject)
	}
	id := identity.Identity{Kind: identity.Bearer, User: user, Provider: iss.name}
	if email, ok := stringClaim(all, "email"); ok && email != "" && printable(email) && emailVerified(all) {
		id.Email = email
	}
	if iss.groups != "-" {
		if raw, ok := all[iss.groups]; ok && string(raw) != "null" {
			var groups []string
			if err := json.Unmarshal(raw, &groups); err != nil {
				return identity.Identity{}, fmt.Errorf("%w: claim %q is not a list of strings", jwtcheck.ErrClaims, iss.groups)
			}
			id.Groups = slices.DeleteFunc(groups, func(g string) bool { return g == "" || !printable(g) })
		}
	}
	return id, nil
}

func stringClaim(all map[string]json.RawMessage, name string) (string, bool) {
	raw, ok := all[name]
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// emailVerified is false only when email_verified says false (a boolean, or
// the string "false" some issuers send).
func emailVerified(all map[string]json.RawMessage) bool {
	raw, ok := all["email_verified"]
	if !ok {
		return true
	}
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return b
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return !strings.EqualFold(s, "false")
	}
	return false // an unreadable value is not a yes
}

// printable refuses control characters, which a header or log line must
// not carry.
func printable(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

func quoteOrMissing(s string, ok bool) string {
	if !ok {
		return "missing or not a string"
	}
	return fmt.Sprintf("%q", s)
}
