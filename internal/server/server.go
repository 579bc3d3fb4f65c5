// Package server provisions everything a config describes (store, keys,
// pools, certificates, the request pipeline) and runs the listeners with a
// graceful shutdown. Provisioning follows load -> provision -> validate ->
// run: `sekisho check` runs Check, which shares the validation but neither
// listens nor writes anything.
package server

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/sekisho/sekisho/internal/apikey"
	"github.com/sekisho/sekisho/internal/assert"
	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/authn/local"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/gcpauth"
	"github.com/sekisho/sekisho/internal/metrics"
	"github.com/sekisho/sekisho/internal/ratelimit"
	"github.com/sekisho/sekisho/internal/rules"
	"github.com/sekisho/sekisho/internal/secret"
	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/store"
	"github.com/sekisho/sekisho/internal/upstream"
	"github.com/sekisho/sekisho/internal/waf"
	"github.com/sekisho/sekisho/internal/web"
	"github.com/sekisho/sekisho/internal/whoami"
	"github.com/sekisho/sekisho/pkg/verify"
)

// Options are what the command line hands the server besides the config.
type Options struct {
	// Logger for operational logs. nil: slog.Default().
	Logger *slog.Logger
	// Stdout and Stderr receive the audit log when audit.output says so,
	// and the first-start message. nil: os.Stdout / os.Stderr.
	Stdout, Stderr io.Writer
	// Secrets resolves secret references. Zero value: environment and files.
	Secrets secret.Resolver
	// Now is the clock. nil: time.Now.
	Now func() time.Time
	// PollEvery is how often the revocation and unlock logs are read
	// besides the store's notifications. 0: every 2 s. Tests set it long
	// to show that a notification alone carries a change.
	PollEvery time.Duration
	// Checked is CheckKeep's result for the same config: New then uses the
	// WAF it compiled instead of compiling it again. nil: New compiles it.
	Checked *Checked
}

// Server is a provisioned gateway, ready to Run. It holds what lives as
// long as the process; what a config reload replaces is in the generation
// in force (gen).
type Server struct {
	// cfg is the config the server started with. Settings a reload cannot
	// change (listeners, store, keys, sessions, audit) are read from it;
	// everything else from the generation in force.
	cfg     *config.Config
	opts    Options
	log     *slog.Logger
	store   store.Backend
	apikeys *apikey.Verifier
	// sessionAuth is the session-cookie authenticator at the end of the chain.
	sessionAuth *authn.Sessions
	// limiter is the rate limiter every generation's rules count with, so
	// counters and bans survive reloads; runLimiter runs the in-memory
	// one's janitor (nil with Redis).
	limiter    ratelimit.Limiter
	runLimiter func(context.Context)
	// refreshing holds the session ids whose OIDC refresh is under way.
	refreshing sync.Map
	revoked    *session.Revocations
	// throttle locks accounts and addresses after failed sign-ins; nil
	// without local accounts. local signs in with local accounts; nil
	// without them.
	throttle   *local.Throttle
	local      web.PasswordLogin
	sessions   *session.Codec
	keyring    *session.Keyring
	signer     *assert.Signer
	ownCookies []string
	audit      *audit.Logger
	metrics    *metrics.Metrics
	tlsConfig  *tlsSetup
	closers    []func() error

	// idTokens are the Google ID tokens of pools with google_id_token,
	// cached across reloads.
	idTokens *gcpauth.IDTokens
	// gen is the generation in force; ServeHTTP serves it.
	gen atomic.Pointer[generation]
	// streams are the open streams, decided again on each reload.
	streams *liveStreams
	// reloadMu makes reloads one at a time.
	reloadMu sync.Mutex
	// dry is set for the build check makes: nothing is started.
	dry bool
	// runCtx, set while Run runs, is what pools' health checks run under.
	runMu  sync.Mutex
	runCtx context.Context
}

// Handler returns the public listener's handler (for in-process tests).
func (s *Server) Handler() http.Handler { return s }

// ServeHTTP serves a request with the generation in force.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.gen.Load().pipeline.ServeHTTP(w, r)
}

// New provisions the gateway: opens the store, loads or creates keys, starts
// built-in upstreams, builds pools, routes and the pipeline. The config must
// have passed Validate. On error, everything opened so far is closed.
func New(cfg *config.Config, opts Options) (_ *Server, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{cfg: cfg, opts: opts, log: opts.Logger, streams: &liveStreams{}, idTokens: &gcpauth.IDTokens{Now: opts.Now}}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	for _, r := range cfg.Risks() {
		s.log.Warn("risky configuration", "risk", r)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", cfg.DataDir, err)
	}
	if s.store, err = OpenStore(cfg, opts.Secrets); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, s.store.Close)
	if err := s.provisionSessions(); err != nil {
		return nil, err
	}
	if err := s.provisionSigner(); err != nil {
		return nil, err
	}
	if err := s.openAudit(); err != nil {
		return nil, err
	}
	if s.tlsConfig, err = s.provisionTLS(); err != nil {
		return nil, err
	}
	sets, inspector, err := s.compileRules(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.provisionBase(); err != nil {
		return nil, err
	}
	g, err := s.build(cfg, sets, inspector, nil)
	if err != nil {
		return nil, err
	}
	s.gen.Store(g)
	return s, nil
}

func (s *Server) provisionSessions() error {
	keys, err := s.sessionKeys(s.cfg)
	if err != nil {
		return err
	}
	if err := s.newSessions(keys); err != nil {
		return err
	}
	for { // Sync applies one batch; catch up with every revocation before serving
		seq := s.revoked.Seq()
		if err := s.revoked.Sync(context.Background(), s.store); err != nil {
			return fmt.Errorf("load session revocations: %w", err)
		}
		if s.revoked.Seq() == seq {
			break
		}
	}
	return nil
}

// sessionKeys are the session keys cfg names (session.keys), or the data
// directory's session.key (created on first use) when it names none.
func (s *Server) sessionKeys(cfg *config.Config) ([][]byte, error) {
	var keys [][]byte
	for i, ref := range cfg.Session.Keys {
		raw, err := s.opts.Secrets.Resolve(ref)
		if err != nil {
			return nil, fmt.Errorf("session.keys[%d]: %w", i, err)
		}
		k, err := session.ParseKey(string(raw))
		if err != nil {
			return nil, fmt.Errorf("session.keys[%d] (%s): %w", i, ref, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		k, err := session.LoadOrCreateKeyFile(filepath.Join(cfg.DataDir, "session.key"))
		if err != nil {
			return nil, err
		}
		keys = [][]byte{k}
	}
	return keys, nil
}

// newSessions sets up the keyring, an empty revocation set, the session
// codec with keys, the session authenticator and the names of sekisho's
// own cookies (never forwarded).
func (s *Server) newSessions(keys [][]byte) error {
	cfg := s.cfg
	ring, err := session.NewKeyring(keys)
	if err != nil {
		return err
	}
	s.keyring = ring
	s.revoked = session.NewRevocations()
	s.sessions, err = session.NewCodec(session.Options{
		Keyring: ring, Secure: cfg.SecureCookies(), Lifetime: cfg.Session.Lifetime.D(),
		IdleTimeout: cfg.Session.IdleTimeout.D(), Now: s.opts.Now, Revocations: s.revoked, SignInDomain: cfg.Session.SignInDomain,
	})
	if err != nil {
		return err
	}
	s.sessionAuth = &authn.Sessions{Codec: s.sessions, Refresh: s.refreshInBackground}
	s.ownCookies = append(s.sessions.CookieNames(), "sekisho-csrf", "__Host-sekisho-csrf")
	return nil
}

func (s *Server) provisionSigner() error {
	cfg := s.cfg
	var keys []*ecdsa.PrivateKey
	for i, ref := range cfg.Assertion.Keys {
		raw, err := s.opts.Secrets.Resolve(ref)
		if err != nil {
			return fmt.Errorf("assertion.keys[%d]: %w", i, err)
		}
		k, err := assert.ParseKeyPEM(raw)
		if err != nil {
			return fmt.Errorf("assertion.keys[%d] (%s): %w", i, ref, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		k, err := assert.LoadOrCreateKey(filepath.Join(cfg.DataDir, "assertion-key.pem"))
		if err != nil {
			return err
		}
		keys = []*ecdsa.PrivateKey{k}
	}
	return s.newSigner(keys)
}

func (s *Server) newSigner(keys []*ecdsa.PrivateKey) error {
	var err error
	s.signer, err = assert.NewSigner(assert.SignerOptions{Keys: keys, Issuer: s.cfg.Assertion.Issuer, Lifetime: s.cfg.Assertion.Lifetime.D(), Now: s.opts.Now})
	return err
}

// provisionBase sets up what every generation shares besides the sessions:
// metrics, the API-key cache and local sign-in.
func (s *Server) provisionBase() error {
	cfg := s.cfg
	s.metrics = metrics.New(func() []*upstream.Pool { return s.gen.Load().poolList })
	s.metrics.AddAudit(func() metrics.AuditStats {
		st := s.audit.Stats()
		return metrics.AuditStats{PendingLines: st.PendingLines, PendingBytes: st.PendingBytes,
			Dropped: st.Dropped, WriteErrors: st.WriteErrors, Failing: st.Failing}
	})
	s.metrics.AddOIDCProviders(func() []metrics.Probe {
		h := s.gen.Load().oidc
		if h == nil {
			return nil
		}
		var probes []metrics.Probe
		for _, pi := range h.Providers() {
			name := pi.Name
			probes = append(probes, metrics.Probe{Name: name, Up: func() bool { return h.Reachable(name) }})
		}
		return probes
	})
	v, err := apikey.New(apikey.Options{
		Source: s.store, Now: s.opts.Now,
		PollEvery: cfg.APIKeys.PollInterval.D(), FlushEvery: cfg.APIKeys.LastUsedFlush.D(),
		Logger: s.log.With("component", "apikey"),
	})
	if err != nil {
		return err
	}
	if err := v.Sync(context.Background()); err != nil {
		s.log.Warn("load API keys (will retry)", "err", err)
	}
	s.apikeys = v
	if cfg.LocalEnabled() {
		la := cfg.LocalAccounts
		to := local.ThrottleOptions{
			MaxFailures: la.MaxFailures, IPMaxFailures: la.IPMaxFailures, Window: la.Window.D(), Lockout: la.Lockout.D(), Now: s.opts.Now,
			Logger: s.log,
		}
		if r, ok := s.limiter.(*ratelimit.Redis); ok {
			to.Shared = r // one sign-in budget for every replica
		}
		s.throttle = local.NewThrottle(to)
		auth, err := local.NewAuthenticator(s.store, s.throttle, s.opts.Now)
		if err != nil {
			return err
		}
		s.local = auth
	}
	return nil
}

// originHosts are the host names of a wildcard-host route's allowed
// origins: the names it answers (see route.Route.AllowedHosts). nil for a
// route with an exact host or without allowed_origins.
func originHosts(rc config.Route) []string {
	if !strings.Contains(rc.Host, "*") {
		return nil
	}
	var hosts []string
	for _, o := range rc.AllowedOrigins {
		if u, err := url.Parse(o); err == nil { // validated
			hosts = append(hosts, strings.ToLower(u.Hostname()))
		}
	}
	return hosts
}

// targets turns a pool's URLs into targets, starting a built-in upstream on
// a loopback port when the pool asks for one.
func (s *Server) targets(pc config.Pool) ([]*url.URL, *http.Server, error) {
	if pc.Builtin == "whoami" && s.dry {
		return []*url.URL{{Scheme: "http", Host: "127.0.0.1:1"}}, nil, nil // checked, never started
	}
	if pc.Builtin == "whoami" {
		v, err := verify.NewWithKeys(jwks(s.signer), verify.Options{Issuer: s.cfg.Assertion.Issuer, InsecureAnyAudience: true, Now: s.opts.Now})
		if err != nil {
			return nil, nil, fmt.Errorf("pool %q: whoami verifier: %w", pc.Name, err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("pool %q: start built-in whoami: %w", pc.Name, err)
		}
		srv := &http.Server{Handler: whoami.New(whoami.Options{Verifier: v, Now: s.opts.Now}), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		return []*url.URL{{Scheme: "http", Host: ln.Addr().String()}}, srv, nil
	}
	var out []*url.URL
	for _, raw := range pc.URLs {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("pool %q: upstream %q: %w", pc.Name, raw, err)
		}
		out = append(out, u)
	}
	return out, nil, nil
}

func jwks(sg *assert.Signer) jose.JSONWebKeySet {
	var set jose.JSONWebKeySet
	_ = json.Unmarshal(sg.JWKS(), &set) // our own output; covered by the assert tests
	return set
}

// OpenStore opens the state database the config names: SQLite in its
// data directory, or the Postgres database at store.url (a secret
// reference, resolved with secrets). The CLI uses it too, so what it writes
// (accounts, keys, revocations, unlocks) reaches every replica.
func OpenStore(cfg *config.Config, secrets secret.Resolver) (store.Backend, error) {
	return OpenStoreMigrating(cfg, secrets, true)
}

// OpenStoreMigrating is OpenStore that applies pending migrations only
// when migrate is true (`sekisho store migrate` looks first).
func OpenStoreMigrating(cfg *config.Config, secrets secret.Resolver, migrate bool) (store.Backend, error) {
	opts := store.Options{MaxSessionLifetime: cfg.Session.Lifetime.D(), SkipMigrations: !migrate}
	if cfg.Store.Driver == "postgres" {
		raw, err := secrets.Resolve(cfg.Store.URL)
		if err != nil {
			return nil, fmt.Errorf("store.url: %w", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := store.OpenPostgres(ctx, string(raw), opts)
		if err != nil {
			// The error names the database without its password.
			return nil, fmt.Errorf("store (postgres, %s): %w", cfg.Store.URL, err)
		}
		return st, nil
	}
	return store.OpenSQLiteOptions(filepath.Join(cfg.DataDir, "sekisho.db"), opts)
}

// compileRules sets up the WAF and the rate limiter and compiles the
// routes' rule sets. What Check compiled for this config (opts.Checked) is
// used instead of compiling again: its WAF always, and its rule sets too
// when the limiter is in memory anyway (no Redis): they were compiled
// against a fresh in-memory limiter, which becomes the gateway's.
func (s *Server) compileRules(cfg *config.Config) (map[string]*rules.Set, waf.Inspector, error) {
	var inspector waf.Inspector
	if c := s.opts.Checked; c != nil && c.cfg == cfg {
		inspector = c.waf
		if cfg.Redis == nil {
			s.limiter = c.limiter
			s.runLimiter = func(ctx context.Context) { c.limiter.Run(ctx) }
			return c.sets, inspector, nil
		}
	} else {
		var err error
		if inspector, err = newWAF(cfg, s.log.With("component", "waf")); err != nil {
			return nil, nil, err
		}
	}
	limiter, runLimiter, err := newLimiter(cfg, s.opts.Secrets, s.log.With("component", "ratelimit"))
	if err != nil {
		return nil, nil, err
	}
	s.limiter, s.runLimiter = limiter, runLimiter
	sets, err := ruleSets(cfg, limiter, inspector)
	return sets, inspector, err
}

// pruneRevocations drops revocations and provider tokens of sessions that
// have expired anyway, here and in the store, every interval until ctx ends.
func (s *Server) pruneRevocations(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			now := s.opts.Now()
			s.revoked.Prune(now)
			if _, err := s.store.PruneRevocations(ctx, now); err != nil && ctx.Err() == nil {
				s.log.Warn("prune revocations", "err", err)
			}
			if _, err := s.store.PruneOIDCTokens(ctx, now); err != nil && ctx.Err() == nil {
				s.log.Warn("prune OIDC tokens", "err", err)
			}
		}
	}
}

// logout revokes a session on this replica at once and, through the store,
// on every replica at their next poll.
func (s *Server) logout(ctx context.Context, sess session.Session) error {
	until := sess.IssuedAt.Add(s.cfg.Session.Lifetime.D())
	s.revoked.RevokeSession(sess.ID, until)
	return s.store.AddRevocation(ctx, session.Revocation{SessionID: sess.ID, Until: until})
}

// firstStart creates an "admin" account with a random password, printed
// once, when local accounts are on and the store has no account at all.
// Run calls it once every listener is bound, so a start that fails (a
// busy port) creates no account whose password nobody saw. On later starts
// it says where the accounts are instead.
func (s *Server) firstStart(ctx context.Context) error {
	if !s.cfg.LocalEnabled() {
		return nil
	}
	n, err := s.store.CountUsers(ctx)
	if err != nil {
		return err
	}
	if n > 0 {
		s.log.Info("local accounts exist; the first-start password of \"admin\" was shown once (reset it with: sekisho user passwd admin)",
			"accounts", n, "store", s.store.Location())
		return nil
	}
	pw, err := local.GeneratePassword()
	if err != nil {
		return err
	}
	hash, err := local.Hash(pw)
	if err != nil {
		return err
	}
	if err := s.store.CreateUser(ctx, store.User{Name: "admin", Groups: []string{"admins"}, PasswordHash: hash}); err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil // another replica won the race
		}
		return err
	}
	fmt.Fprintf(s.opts.Stderr, "\nFirst start: created the account \"admin\" with the password\n\n    %s\n\nIt is shown only this once. Sign in, then choose your own with:\n    sekisho user passwd admin\nAdd people with: sekisho user add NAME --email ADDRESS\n\n", pw)
	return nil
}

// Close releases everything New opened.
func (s *Server) Close() error {
	var errs []error
	if g := s.gen.Load(); g != nil {
		for _, e := range g.pools {
			if e.stop != nil {
				e.stop()
			}
			if e.builtin != nil {
				e.builtin.Close()
			}
			e.pool.CloseIdleConnections()
		}
	}
	for i := len(s.closers) - 1; i >= 0; i-- {
		if err := s.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	s.closers = nil
	return errors.Join(errs...)
}
