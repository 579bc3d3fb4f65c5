package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/sekisho/sekisho/internal/apikey"
	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/authn/bearer"
	"github.com/sekisho/sekisho/internal/authn/iap"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/identity"
)

// provisionAuthn builds the chain of authenticators: the IAP assertion
// (when trusted), API keys and bearer tokens (explicit credentials, so a
// refused one is refused even next to a session cookie), then the session.
func (s *Server) provisionAuthn() (authn.Chain, error) {
	var chain authn.Chain
	cfg := s.cfg
	if t := cfg.Listen.TrustGoogleIAP; t != nil {
		a, err := iap.New(iapOptions(t, s.opts.Now))
		if err != nil {
			return nil, fmt.Errorf("listen.trust_google_iap: %w", err)
		}
		chain = append(chain, a)
	}
	authzRoutes := map[string]bool{}
	var authzList []string
	for _, r := range cfg.Routes {
		if r.Auth.AuthorizationHeader {
			authzRoutes[r.Name] = true
			authzList = append(authzList, r.Name)
		}
	}
	v, err := apikey.New(apikey.Options{
		Source: s.store, AuthorizationRoutes: authzList, Now: s.opts.Now,
		PollEvery: cfg.APIKeys.PollInterval.D(), FlushEvery: cfg.APIKeys.LastUsedFlush.D(),
		Logger: s.log.With("component", "apikey"),
	})
	if err != nil {
		return nil, err
	}
	if err := v.Sync(context.Background()); err != nil {
		s.log.Warn("load API keys (will retry)", "err", err)
	}
	s.apikeys = v
	chain = append(chain, v)
	if len(cfg.BearerIssuers) > 0 {
		b, err := bearer.New(bearerOptions(cfg, authzRoutes, s.opts.Now))
		if err != nil {
			return nil, err
		}
		chain = append(chain, qualified{b})
	}
	return append(chain, authn.Sessions{Codec: s.sessions}), nil
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

func (q qualified) Authenticate(w http.ResponseWriter, r *http.Request) (identity.Identity, error) {
	id, err := q.Authenticator.Authenticate(w, r)
	if err == nil && id.Authenticated() {
		id.User = id.Provider + ":" + id.User
	}
	return id, err
}
