package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/authn/bearer"
	"github.com/sekisho/sekisho/internal/authn/iap"
	"github.com/sekisho/sekisho/internal/authn/oidc"
	"github.com/sekisho/sekisho/internal/authz"
	"github.com/sekisho/sekisho/internal/clientip"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/gcpauth"
	"github.com/sekisho/sekisho/internal/route"
	"github.com/sekisho/sekisho/internal/rules"
	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/upstream"
	"github.com/sekisho/sekisho/internal/waf"
	"github.com/sekisho/sekisho/internal/web"
)

// A generation is everything one config builds that a reload replaces:
// the router and its routes, the pools, policies, rules, WAF, bearer
// issuers, OIDC providers and trusted proxies. What outlives a config
// (the store, session and assertion keys, the audit log, the listeners,
// the API-key cache, the rate limiter's counters, sign-in throttles) is the
// Server's. Requests pick up the generation in force when they arrive and
// finish with it; a reload swaps the pointer atomically, so no request
// ever sees half of one config and half of another.
type generation struct {
	cfg *config.Config
	// digest is the SHA-256 of the config as decoded (defaults applied),
	// named in the log and the audit line of each reload.
	digest   string
	pipeline *route.Pipeline
	clients  *clientip.Resolver
	// pools by name, and the same in config order.
	pools    map[string]*poolEntry
	poolList []*upstream.Pool
	oidc     *oidc.Handler
	// oidcSecrets are the client secrets oidc was built with: a reload
	// keeps the handler (its discovery cache, provider health) only when
	// the oidc section and these are unchanged.
	oidcSecrets []string
	// waf is the compiled WAF, nil without one.
	waf waf.Inspector
}

// poolEntry is a pool and what runs for it. A pool whose config a reload
// leaves unchanged is carried over as it is, with its connections, health
// state and health checks.
type poolEntry struct {
	cfg  config.Pool
	pool *upstream.Pool
	// builtin is the built-in upstream's server; nil for URLs.
	builtin *http.Server
	// stop ends its health checks; nil until they run.
	stop context.CancelFunc
}

// configDigest is the SHA-256 of the decoded config, in hex.
func configDigest(cfg *config.Config) string {
	b, err := json.Marshal(cfg)
	if err != nil { // a config is plain data; this cannot fail
		return "unknown"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// build makes a generation from a checked config. prior, when not nil, is
// the generation in force: unchanged pools and an unchanged OIDC handler
// are taken from it. build's only side effect is starting the built-in
// upstreams of new pools, which discard closes again.
func (s *Server) build(cfg *config.Config, sets map[string]*rules.Set, inspector waf.Inspector, prior *generation) (_ *generation, err error) {
	g := &generation{cfg: cfg, digest: configDigest(cfg), pools: map[string]*poolEntry{}, waf: inspector}
	defer func() {
		if err != nil {
			g.discard(prior)
		}
	}()
	for _, pc := range cfg.Pools {
		if prior != nil {
			if old, ok := prior.pools[pc.Name]; ok && reflect.DeepEqual(old.cfg, pc) {
				g.pools[pc.Name] = old
				g.poolList = append(g.poolList, old.pool)
				continue
			}
		}
		e, err := s.newPool(pc)
		if err != nil {
			return nil, err
		}
		g.pools[pc.Name] = e
		g.poolList = append(g.poolList, e.pool)
	}
	if g.clients, err = clientip.New(cfg.Listen.TrustedProxies); err != nil {
		return nil, fmt.Errorf("listen.trusted_proxies: %w", err)
	}
	chain, err := s.authnChain(cfg)
	if err != nil {
		return nil, err
	}
	strip, err := route.NewStripList(cfg.StripHeaders)
	if err != nil {
		return nil, err
	}
	pl := &route.Pipeline{
		Router: &route.Router[*route.Route]{}, Authn: chain, Signer: s.signer,
		Clients: g.clients, Audit: s.audit, Metrics: s.metrics, OwnCookies: s.ownCookies, StripHeaders: strip,
		Logger: s.log.With("component", "pipeline"), Now: s.opts.Now, Streams: s.streams,
	}
	portal := &web.Portal{
		Sessions: s.sessions, JWKS: s.signer.Handler(), SecureCookies: cfg.SecureCookies(),
		Logger: s.log.With("component", "portal"), Logout: s.logout, Health: s.auditHealth, Local: s.local,
	}
	if len(cfg.OIDC.Providers) > 0 {
		if err := s.buildOIDC(g, prior); err != nil {
			return nil, err
		}
		h := g.oidc
		portal.OIDC, portal.OIDCPrefix = h, oidc.PathPrefix
		portal.Providers = func(next string) []web.ProviderLink { return providerLinks(h, next) }
		portal.EndSession = func(r *http.Request, sess session.Session) (string, error) { return endSession(h, r, sess) }
		pl.ReAuth = h.ReAuthURL
	}
	pl.Portal = portal
	pl.PortalRules = sets[PortalRules]
	for _, rc := range cfg.Routes {
		proxy := upstream.NewProxy(upstream.ProxyOptions{
			Pool: g.pools[rc.Pool].pool, Timeout: rc.Timeout.D(), StreamIdleTimeout: rc.StreamIdleTimeout.D(),
			PreserveHost: rc.PreserveHost, Upgrades: rc.Upgrades, BodyTimeout: rc.RequestBodyTimeout.D(), BodyMinRate: rc.RequestBodyMinRate,
			Rewrite: pl.Rewrite, ModifyResponse: pl.ModifyResponse, ErrorHandler: pl.UpstreamError, OnStream: pl.OnStream,
			Logger: s.log.With("component", "proxy", "route", rc.Name),
		})
		pl.Router.Add(rc.Host, rc.Path, &route.Route{Name: rc.Name, Policy: authz.CompileRoute(rc.Name, rc.Policy, rc.Auth.MaxAge.D()), Upstream: proxy,
			Rules: sets[rc.Name], AllowedOrigins: rc.AllowedOrigins, OwnOrigin: !strings.Contains(rc.Host, "*"), AllowedHosts: originHosts(rc)})
	}
	g.pipeline = pl
	return g, nil
}

// newPool builds a pool, starting its built-in upstream when it has one.
func (s *Server) newPool(pc config.Pool) (*poolEntry, error) {
	e := &poolEntry{cfg: pc}
	targets, builtin, err := s.targets(pc)
	if err != nil {
		return nil, err
	}
	e.builtin = builtin
	po := upstream.PoolOptions{Name: pc.Name, Targets: targets, Balance: pc.Balance, MaxFails: pc.MaxFails,
		EjectFor: pc.EjectFor.D(), Now: s.opts.Now, Logger: s.log.With("component", "upstream", "pool", pc.Name)}
	if hc := pc.HealthCheck; hc != nil {
		po.HealthCheck = &upstream.HealthCheck{Path: hc.Path, Interval: hc.Interval.D(), Timeout: hc.Timeout.D(),
			HealthyThreshold: hc.HealthyThreshold, UnhealthyThreshold: hc.UnhealthyThreshold}
	}
	if g := pc.GoogleIDToken; g != nil {
		po.TargetHeader = func(ctx context.Context, target *url.URL) (string, string, error) {
			aud := g.Audience
			if aud == "" {
				aud = target.Scheme + "://" + target.Host // what Cloud Run expects
			}
			tok, err := s.idTokens.Token(ctx, aud)
			return gcpauth.Header, "Bearer " + tok, err
		}
	}
	if e.pool, err = upstream.NewPool(po); err != nil {
		if builtin != nil {
			builtin.Close()
		}
		return nil, err
	}
	return e, nil
}

// authnChain builds a generation's chain of authenticators: the IAP
// assertion (when trusted), API keys and bearer tokens (explicit
// credentials, so a refused one is refused even next to a session cookie),
// then the session.
func (s *Server) authnChain(cfg *config.Config) (authn.Chain, error) {
	var chain authn.Chain
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
	chain = append(chain, s.apikeys.ForRoutes(authzList))
	if len(cfg.BearerIssuers) > 0 {
		b, err := bearer.New(bearerOptions(cfg, authzRoutes, s.opts.Now))
		if err != nil {
			return nil, err
		}
		chain = append(chain, qualified{b})
	}
	return append(chain, s.sessionAuth), nil
}

// buildOIDC sets g.oidc: prior's handler when the oidc section, the client
// secrets it names and the trusted proxies are unchanged, else a new one.
func (s *Server) buildOIDC(g, prior *generation) error {
	o, secrets, err := s.oidcOptions(g.cfg, g.clients)
	if err != nil {
		return err
	}
	g.oidcSecrets = secrets
	// The handler reads requests' origin with the trusted proxies it was
	// built with: those must be unchanged too.
	if prior != nil && prior.oidc != nil && reflect.DeepEqual(prior.cfg.OIDC, g.cfg.OIDC) && slices.Equal(prior.oidcSecrets, secrets) &&
		slices.Equal(prior.cfg.Listen.TrustedProxies, g.cfg.Listen.TrustedProxies) {
		g.oidc = prior.oidc
		return nil
	}
	g.oidc, err = oidc.New(o)
	return err
}

// discard releases what g started that prior (the generation in force,
// nil at start) does not also use: the built-in upstreams of its new
// pools and their idle connections.
func (g *generation) discard(prior *generation) {
	for name, e := range g.pools {
		if prior != nil && prior.pools[name] == e {
			continue
		}
		e.close()
	}
}

func (e *poolEntry) close() {
	if e.stop != nil {
		e.stop()
	}
	if e.builtin != nil {
		// Let a request in flight to it finish; the pool is gone from the
		// config, so no new one comes.
		go func(srv *http.Server) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if srv.Shutdown(ctx) != nil {
				srv.Close()
			}
		}(e.builtin)
	}
	e.pool.CloseIdleConnections()
}

// restartOnly lists the settings that differ between the config in force
// and next and that a reload cannot apply: those of the listeners, the
// store, the assertion keys, sessions (but session.keys), local accounts,
// API-key polling, the audit log, the admin listener, Redis and the data
// directory. Each names its file:line in next. Everything else (routes,
// pools, policies, rules, the WAF, bearer issuers, OIDC providers, trusted
// proxies, the IAP audience, strip_headers, session.keys) is applied live.
func restartOnly(cur, next *config.Config) []string {
	live := map[string]bool{
		"rules": true, "rules_default": true, "waf": true, "pools": true, "strip_headers": true,
		"routes": true, "bearer_issuers": true, "oidc": true,
	}
	liveListen := map[string]bool{"trusted_proxies": true, "trust_google_iap": true}
	var out []string
	diff := func(a, b reflect.Value, t reflect.Type, prefix string, keep map[string]bool) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if !f.IsExported() || tag == "" || tag == "-" || keep[tag] {
				continue
			}
			if prefix == "" && (tag == "listen" || tag == "session") {
				continue // compared field by field below
			}
			if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
				path := []any{}
				if prefix != "" {
					path = append(path, prefix)
				}
				path = append(path, tag)
				name := tag
				if prefix != "" {
					name = prefix + "." + tag
				}
				out = append(out, fmt.Sprintf("%s: %s changed: it takes a restart", next.Pos(path...), name))
			}
		}
	}
	diff(reflect.ValueOf(cur).Elem(), reflect.ValueOf(next).Elem(), reflect.TypeFor[config.Config](), "", live)
	diff(reflect.ValueOf(&cur.Listen).Elem(), reflect.ValueOf(&next.Listen).Elem(), reflect.TypeFor[config.Listen](), "listen", liveListen)
	diff(reflect.ValueOf(&cur.Session).Elem(), reflect.ValueOf(&next.Session).Elem(), reflect.TypeFor[config.Session](), "session", map[string]bool{"keys": true})
	return out
}

// ErrReloadRefused wraps every reason a reload was refused: the config in
// force stays, whole.
var ErrReloadRefused = errors.New("config reload refused; the config in force is kept, nothing was applied")
