package oidc

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sekisho/sekisho/internal/identity"
)

// claims are the ID token claims sekisho reads, beyond what the verifier
// checks (iss, aud, exp, signature).
type claims struct {
	Subject       string
	Email         string
	EmailVerified bool
	HostedDomain  string
	Nonce         string
	AuthTime      time.Time // zero if absent
	Groups        []string
}

// readClaims decodes the raw claims JSON of a verified ID token; groupsPath
// is ProviderOptions.GroupsClaim.
func readClaims(raw []byte, groupsPath string) (claims, error) {
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return claims{}, fmt.Errorf("ID token claims are not a JSON object: %v", err)
	}
	var c claims
	var ok bool
	if c.Subject, ok = m["sub"].(string); !ok || c.Subject == "" {
		return claims{}, errors.New("ID token has no sub claim")
	}
	c.Email, _ = m["email"].(string)
	switch v := m["email_verified"].(type) {
	case bool:
		c.EmailVerified = v
	case string: // some providers send "true"
		c.EmailVerified = v == "true"
	}
	c.HostedDomain, _ = m["hd"].(string)
	c.Nonce, _ = m["nonce"].(string)
	if n, ok := m["auth_time"].(json.Number); ok {
		secs, err := n.Int64()
		if err != nil {
			if f, ferr := n.Float64(); ferr == nil {
				secs, err = int64(f), nil
			}
		}
		if err != nil || secs <= 0 {
			return claims{}, fmt.Errorf("ID token auth_time %q is not a time", n.String())
		}
		c.AuthTime = time.Unix(secs, 0).UTC()
	}
	if groupsPath != "" {
		g, err := groupsAt(m, groupsPath)
		if err != nil {
			return claims{}, err
		}
		c.Groups = g
	}
	return c, nil
}

// groupsAt finds the groups claim: the full name as a top-level claim
// first (claim names may contain dots), else a dotted path into nested
// objects. A missing claim is no groups; a string is one group; an array
// holds strings (other elements are ignored); anything else is an error.
func groupsAt(m map[string]any, path string) ([]string, error) {
	v, found := m[path]
	if !found {
		var cur any = m
		found = true
		for part := range strings.SplitSeq(path, ".") {
			obj, ok := cur.(map[string]any)
			if !ok {
				found = false
				break
			}
			if cur, ok = obj[part]; !ok {
				found = false
				break
			}
		}
		v = cur
	}
	if !found || v == nil {
		return nil, nil
	}
	switch g := v.(type) {
	case string:
		if g == "" {
			return nil, nil
		}
		return []string{g}, nil
	case []any:
		var out []string
		for _, e := range g {
			if s, ok := e.(string); ok && s != "" && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("groups claim %q is neither a string nor an array", path)
}

// identityFor maps verified claims to the session identity (see the package
// documentation for the rules): the email claim is the user only when it is
// verified and exactly one plain address (emailAddress), else the user is
// "<provider>:<sub>" and Email is empty.
func identityFor(p ProviderOptions, c claims, now time.Time) identity.Identity {
	id := identity.Identity{Kind: identity.Session, Provider: p.Name, AuthTime: c.AuthTime}
	if id.AuthTime.IsZero() {
		id.AuthTime = now
	}
	if email, ok := emailAddress(c.Email); ok && (c.EmailVerified || p.InsecureTrustUnverifiedEmail) {
		id.Email = email
		id.User = email
	} else {
		id.User = p.Name + ":" + c.Subject
	}
	groups := c.Groups
	if len(p.KeepGroups) > 0 {
		groups = slices.DeleteFunc(slices.Clone(groups), func(g string) bool { return !slices.Contains(p.KeepGroups, g) })
	}
	if len(groups) > 0 {
		id.Groups = groups
	}
	return id
}

// checkHostedDomain enforces AllowedDomains for the google preset: the ID
// token's hd claim (absent for consumer accounts) must be listed.
func checkHostedDomain(p ProviderOptions, c claims) error {
	if p.Preset != PresetGoogle || len(p.AllowedDomains) == 0 {
		return nil
	}
	hd := strings.ToLower(c.HostedDomain)
	if hd == "" {
		return fmt.Errorf("google account %q has no hosted domain (hd); allowed: %s", c.Subject, strings.Join(p.AllowedDomains, ", "))
	}
	if !slices.Contains(p.AllowedDomains, hd) {
		return fmt.Errorf("google hosted domain %q is not allowed (allowed: %s)", hd, strings.Join(p.AllowedDomains, ", "))
	}
	return nil
}
