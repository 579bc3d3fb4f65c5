package oidc

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/store"
)

// Presets and their issuers.
const (
	// PresetGoogle configures Google: issuer GoogleIssuer, label "Google",
	// and the hd check of AllowedDomains.
	PresetGoogle = "google"
	// GoogleIssuer is Google's OpenID issuer.
	GoogleIssuer = "https://accounts.google.com"
)

// Defaults for Options.
const (
	// DefaultTimeout bounds each provider call when Options.Timeout is 0.
	DefaultTimeout = 10 * time.Second
	// DefaultStateTTL is how long a started sign-in may take when
	// Options.StateTTL is 0.
	DefaultStateTTL = 10 * time.Minute
	// DefaultDiscoveryTTL is how long discovery is reused when
	// Options.DiscoveryTTL is 0.
	DefaultDiscoveryTTL = 5 * time.Minute
	// DefaultRetryAfter is how often, at most, a provider's reachability is
	// checked when Options.RetryAfter is 0.
	DefaultRetryAfter = 5 * time.Second
	// DefaultClockSkew is the allowance for the provider's clock when
	// checking auth_time against max_age.
	DefaultClockSkew = time.Minute
)

// DefaultScopes are requested when ProviderOptions.Scopes is empty.
var DefaultScopes = []string{"openid", "email", "profile"}

// ProviderOptions configure one OpenID provider.
type ProviderOptions struct {
	// Name identifies the provider in URLs, sessions and logs: 1-32
	// characters of [a-z0-9_-]; "local" is reserved. Required, unique.
	Name string
	// Label is shown on the sign-in button. Default: "Google" for the
	// google preset, else Name.
	Label string
	// Preset is "google" or "" (generic OIDC by Issuer).
	Preset string
	// Issuer is the provider's issuer URL; discovery is read from
	// Issuer + "/.well-known/openid-configuration" and the ID token's iss
	// must equal it. https only, except http on a loopback address (tests,
	// local development). Required unless Preset is "google" (which sets it).
	Issuer string
	// ClientID registered at the provider. Required.
	ClientID string
	// ClientSecret of the client (the lead resolves the secret reference).
	// Required: sekisho is a confidential client.
	ClientSecret []byte
	// Scopes requested. Empty means DefaultScopes (openid email profile);
	// "openid" is always added. Add "offline_access" to get a refresh token
	// from most providers (Google instead needs AuthParams access_type=offline).
	Scopes []string
	// AuthParams are extra authorization request parameters, e.g.
	// {"access_type": "offline"} for Google refresh tokens. The flow's own
	// parameters (state, nonce, PKCE, max_age, prompt, redirect_uri, ...)
	// cannot be overridden. nil: none.
	AuthParams map[string]string
	// GroupsClaim is the ID token claim with the user's groups: "groups",
	// "roles", or a dotted path like "realm_access.roles". "" (the default):
	// no groups.
	GroupsClaim string
	// KeepGroups, when not empty, keeps only these groups from the claim
	// (the groups policies use), so the session cookie stays small. Empty:
	// all groups are kept, and a sign-in with too many fails with a page
	// saying so.
	KeepGroups []string
	// AllowedDomains, for the google preset, are the Workspace domains
	// whose accounts may sign in: the ID token's hd claim must be one of
	// them. Empty: any Google account (including gmail.com) may sign in,
	// and policies must restrict who gets in.
	AllowedDomains []string
	// InsecureTrustUnverifiedEmail treats the email claim as verified even
	// when email_verified is absent or false (Entra ID sends no
	// email_verified). Default false: an unverified email is ignored and
	// the user is "<provider>:<sub>".
	InsecureTrustUnverifiedEmail bool
}

// Options configure a Handler.
type Options struct {
	// Providers to offer. At least one is required.
	Providers []ProviderOptions
	// Sessions issues the session cookie after sign-in. Required.
	Sessions *session.Codec
	// Keyring seals the flow cookie and the stored provider tokens.
	// Required; normally the session keyring.
	Keyring *session.Keyring
	// Tokens keeps refresh and ID tokens per session. nil: none are kept;
	// Refresh is unavailable and EndSession sends no id_token_hint.
	Tokens store.OIDCTokens
	// SessionLifetime is the absolute session lifetime, after which stored
	// tokens are pruned. 0 means session.DefaultLifetime.
	SessionLifetime time.Duration
	// Origin returns the scheme ("http" or "https") and host (with port)
	// the browser used, as the listener resolved them (trusted proxies
	// only). Required: the redirect URI is built from it.
	Origin func(r *http.Request) (scheme, host string)
	// SecureCookies marks the flow cookie Secure with the __Host- prefix.
	// Set it whenever clients use HTTPS.
	SecureCookies bool
	// HTTPClient talks to the providers; its Transport and CheckRedirect
	// are used, its Timeout is replaced by Timeout. nil: a client with
	// http.DefaultTransport.
	HTTPClient *http.Client
	// Timeout bounds every provider call (discovery, token, JWKS). 0 means
	// DefaultTimeout (10s).
	Timeout time.Duration
	// StateTTL is how long a started sign-in may take. 0 means
	// DefaultStateTTL (10m).
	StateTTL time.Duration
	// DiscoveryTTL is how long a provider's discovery document is reused
	// before a new sign-in reads it again. 0 means DefaultDiscoveryTTL (5m).
	DiscoveryTTL time.Duration
	// RetryAfter is how often, at most, sekisho checks that a provider is
	// reachable: after a failed call to it (connection error, timeout, 5xx)
	// sign-ins with it fail fast with the "unreachable" page for this long,
	// then the next one probes its discovery document; and a sign-in start
	// probes it first when nothing was heard from it for this long, so a
	// browser is not sent to a provider that went down. A probe waits at
	// most Timeout. 0 means DefaultRetryAfter (5s).
	RetryAfter time.Duration
	// Now is the clock. nil means time.Now.
	Now func() time.Time
	// Logger receives internal causes. nil: slog.Default().
	Logger *slog.Logger
}

// validName reports whether name is 1-32 characters of [a-z0-9_-].
func validName(name string) bool {
	if name == "" || len(name) > 32 {
		return false
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// checkIssuer accepts https URLs, and http on loopback.
func checkIssuer(issuer string) error {
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("issuer %q is not an absolute URL without query or fragment", issuer)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
			return nil
		}
		return fmt.Errorf("issuer %q uses http on a non-loopback host; use https", issuer)
	}
	return fmt.Errorf("issuer %q: scheme must be https", issuer)
}

// reservedParams cannot be set through AuthParams.
var reservedParams = []string{"client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method", "max_age", "prompt", "response_mode", "request", "request_uri"}

// checkProvider validates p and fills defaults into a copy.
func checkProvider(p ProviderOptions) (ProviderOptions, error) {
	var errs []error
	if !validName(p.Name) || p.Name == "local" {
		errs = append(errs, fmt.Errorf("name %q must be 1-32 characters of a-z 0-9 _ - and not \"local\"", p.Name))
	}
	switch p.Preset {
	case "":
		if p.Issuer == "" {
			errs = append(errs, errors.New("issuer is required (or preset: google)"))
		}
		if len(p.AllowedDomains) > 0 {
			errs = append(errs, errors.New("allowed_domains applies only to preset google (restrict other providers with policies)"))
		}
	case PresetGoogle:
		if p.Issuer != "" && p.Issuer != GoogleIssuer {
			errs = append(errs, fmt.Errorf("issuer %q conflicts with preset google (%s)", p.Issuer, GoogleIssuer))
		}
		p.Issuer = GoogleIssuer
		if p.Label == "" {
			p.Label = "Google"
		}
	default:
		errs = append(errs, fmt.Errorf("preset %q is unknown (known: google)", p.Preset))
	}
	if p.Issuer != "" {
		if err := checkIssuer(p.Issuer); err != nil {
			errs = append(errs, err)
		}
	}
	if p.ClientID == "" {
		errs = append(errs, errors.New("client_id is required"))
	}
	if len(p.ClientSecret) == 0 {
		errs = append(errs, errors.New("client_secret is required"))
	}
	for k := range p.AuthParams {
		if slices.Contains(reservedParams, strings.ToLower(k)) {
			errs = append(errs, fmt.Errorf("auth_params: %q is set by sekisho and cannot be overridden", k))
		}
	}
	p.AllowedDomains = slices.Clone(p.AllowedDomains)
	for i, d := range p.AllowedDomains {
		if d == "" || strings.ContainsAny(d, "@/ ") {
			errs = append(errs, fmt.Errorf("allowed_domains[%d] %q is not a domain name", i, d))
		}
		p.AllowedDomains[i] = strings.ToLower(d)
	}
	if p.Label == "" {
		p.Label = p.Name
	}
	scopes := p.Scopes
	if len(scopes) == 0 {
		scopes = DefaultScopes
	}
	p.Scopes = slices.Clone(scopes)
	if !slices.Contains(p.Scopes, "openid") {
		p.Scopes = append([]string{"openid"}, p.Scopes...)
	}
	if err := errors.Join(errs...); err != nil {
		return p, fmt.Errorf("oidc provider %q: %w", p.Name, err)
	}
	return p, nil
}
