package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/authn/bearer"
	"github.com/sekisho/sekisho/internal/authn/iap"
	"github.com/sekisho/sekisho/internal/authn/oidc"
	"github.com/sekisho/sekisho/internal/clientip"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/web"
)

// oidcOptions are the options of the OIDC sign-in handler for cfg, and the
// client secrets they hold. Building the handler makes no network call:
// discovery happens at the first sign-in, so sekisho starts while a
// provider is down. The origin of a request is read with the trusted
// proxies of clients.
func (s *Server) oidcOptions(cfg *config.Config, clients *clientip.Resolver) (oidc.Options, []string, error) {
	o := oidc.Options{
		Sessions: s.sessions, Keyring: s.keyring, Tokens: s.store, SessionLifetime: cfg.Session.Lifetime.D(),
		Origin:        func(r *http.Request) (string, string) { return clients.Proto(r), clients.Host(r) },
		SecureCookies: cfg.SecureCookies(), Timeout: cfg.OIDC.Timeout.D(), StateTTL: cfg.OIDC.StateTTL.D(),
		DiscoveryTTL: cfg.OIDC.DiscoveryTTL.D(), Now: s.opts.Now, Logger: s.log.With("component", "oidc"),
	}
	var secrets []string
	for i, p := range cfg.OIDC.Providers {
		secretValue, err := s.opts.Secrets.Resolve(p.ClientSecret)
		if err != nil {
			return o, nil, fmt.Errorf("oidc.providers[%d] %q: client_secret: %w", i, p.Name, err)
		}
		secrets = append(secrets, string(secretValue))
		o.Providers = append(o.Providers, oidc.ProviderOptions{
			Name: p.Name, Label: p.Label, Preset: p.Preset, Issuer: p.Issuer, ClientID: p.ClientID, ClientSecret: secretValue,
			Scopes: p.Scopes, AuthParams: p.AuthParams, GroupsClaim: p.GroupsClaim, KeepGroups: p.KeepGroups,
			AllowedDomains: p.AllowedDomains, InsecureTrustUnverifiedEmail: p.InsecureTrustUnverifiedEmail,
		})
	}
	return o, secrets, nil
}

// refreshInBackground asks the session's provider to refresh its tokens,
// off the request path: the request goes on with the session it has. When
// the provider refuses (the user was removed or the grant revoked), the
// session is revoked everywhere; an outage changes nothing.
func (s *Server) refreshInBackground(sess session.Session) {
	g := s.gen.Load()
	if g.oidc == nil {
		return // no providers any more: the session lives out its lifetime
	}
	if _, busy := s.refreshing.LoadOrStore(sess.ID, true); busy {
		return
	}
	go func() {
		defer s.refreshing.Delete(sess.ID)
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.OIDC.Timeout.D()+5*time.Second)
		defer cancel()
		_, err := g.oidc.Refresh(ctx, sess)
		if errors.Is(err, oidc.ErrRefreshRefused) {
			s.log.Info("provider refused the refresh token: ending the session", "user", sess.User, "provider", sess.Provider)
			if err := s.logout(ctx, sess); err != nil {
				s.log.Error("revoke session after refused refresh", "user", sess.User, "err", err)
			}
		} else if err != nil && !errors.Is(err, oidc.ErrNoRefreshToken) && !errors.Is(err, oidc.ErrNotOIDC) {
			s.log.Warn("refresh OIDC session (kept)", "user", sess.User, "provider", sess.Provider, "err", err)
		}
	}()
}

func iapOptions(t *config.GoogleIAP, now func() time.Time) iap.Options {
	return iap.Options{Trusted: true, Audience: t.Audience, JWKSURL: t.JWKSURL, Now: now}
}

func bearerOptions(cfg *config.Config, authzRoutes map[string]bool, now func() time.Time) bearer.Options {
	o := bearer.Options{Routes: map[string][]string{}, AuthorizationRoutes: authzRoutes, Now: now}
	for _, b := range cfg.BearerIssuers {
		o.Issuers = append(o.Issuers, bearer.Issuer{
			Name: b.Name, IssuerURL: b.IssuerURL, Audiences: b.Audiences, JWKSURL: b.JWKSURL,
			SubjectClaim: b.SubjectClaim, GroupsClaim: b.GroupsClaim, RequiredClaims: b.RequiredClaims, Leeway: b.Leeway.D(),
		})
	}
	for _, r := range cfg.Routes {
		if len(r.Auth.BearerIssuers) > 0 {
			o.Routes[r.Name] = r.Auth.BearerIssuers
		}
	}
	return o
}

// qualified names a bearer identity "ISSUER:SUBJECT", so a token whose
// subject is "admin" can never pass for the local account "admin".
type qualified struct{ authn.Authenticator }

func (q qualified) Authenticate(w http.ResponseWriter, r *http.Request, in authn.Request) (authn.Result, error) {
	res, err := q.Authenticator.Authenticate(w, r, in)
	if err == nil && res.Identity.Authenticated() {
		res.Identity.User = res.Identity.Provider + ":" + res.Identity.User
	}
	return res, err
}

// providerLinks lists the sign-in buttons for the sign-in page.
func providerLinks(h *oidc.Handler, next string) []web.ProviderLink {
	var out []web.ProviderLink
	for _, p := range h.Providers() {
		out = append(out, web.ProviderLink{Label: p.Label, URL: oidc.StartURL(p.Name, next)})
	}
	return out
}

// endSession returns the provider's logout URL for an OIDC session, or ""
// for a session from local accounts.
func endSession(h *oidc.Handler, r *http.Request, sess session.Session) (string, error) {
	u, err := h.EndSession(r, sess)
	if errors.Is(err, oidc.ErrNotOIDC) {
		return "", nil
	}
	return u, err
}
