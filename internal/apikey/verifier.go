package apikey

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/authz"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/store"
)

// Reasons a key is refused, wrapped in Authenticate's errors (test with
// errors.Is). ErrMalformed (key.go) is the seventh.
var (
	ErrUnknown     = errors.New("unknown API key")
	ErrWrongSecret = errors.New("API key secret does not match")
	ErrRevoked     = errors.New("API key revoked")
	ErrExpired     = errors.New("API key expired")
	ErrOutOfScope  = authz.ErrOutOfScope // authz decides a key's scope
	ErrAmbiguous   = errors.New("more than one sekisho API key in the request")
	ErrUnavailable = errors.New("API key store unavailable")
)

// Header names Authenticate reads.
const (
	HeaderProxyAuthorization = "Proxy-Authorization"
	HeaderAuthorization      = "Authorization"
)

// Source is what the Verifier needs from the store; *store.SQLite
// satisfies it.
type Source interface {
	GetAPIKey(ctx context.Context, id string) (store.APIKey, error)
	ListAPIKeys(ctx context.Context) ([]store.APIKey, error)
	TouchAPIKeys(ctx context.Context, used map[string]time.Time) error
	APIKeyChangesSince(ctx context.Context, seq int64) ([]store.APIKeyChange, error)
	LatestAPIKeyChange(ctx context.Context) (int64, error)
}

// Options configure a Verifier. Only Source is required.
type Options struct {
	// Source is the store holding the keys. Required.
	Source Source
	// AuthorizationRoutes names the routes on which a key is also accepted
	// in "Authorization: Bearer". Everywhere else Authorization belongs to
	// the app (Flowise and Dify keep their own API keys there) and is
	// passed through untouched. nil or empty: keys are accepted only in
	// Proxy-Authorization.
	AuthorizationRoutes []string
	// Now is the clock for expiry, last-used times and the miss limiter.
	// nil means time.Now.
	Now func() time.Time
	// PollEvery is how often Poll reads the change log, which bounds how
	// long a revoked key keeps working on a replica. Zero means 2s.
	PollEvery time.Duration
	// FlushEvery is how often Poll writes last-used times to the store, in
	// one batch. Zero means 1 minute.
	FlushEvery time.Duration
	// MissLookupsPerSecond and MissBurst bound the store look-ups made for
	// ids not in the cache (keys created since the last poll), for the
	// whole process: an attacker spraying random ids costs at most this
	// many queries. Zero means 5 per second with a burst of 10.
	MissLookupsPerSecond float64
	MissBurst            int
	// NegativeTTL is how long an id the store did not know is refused
	// without asking again; a create of that id ends it at the next poll.
	// Zero means 1 minute.
	NegativeTTL time.Duration
	// MaxNegative bounds the unknown ids remembered; when full the set is
	// emptied (the miss limiter still bounds look-ups). Zero means 10000.
	MaxNegative int
	// LookupTimeout bounds one store look-up on a miss. Zero means 2s.
	LookupTimeout time.Duration
	// Logger receives poll and flush failures. nil means slog.Default().
	Logger *slog.Logger
}

// entry is a cached key, prepared for the hot path.
type entry struct {
	rec  store.APIKey
	hash [32]byte
	user string // "apikey:" + name
	// scope is what the key was issued for, shared by every identity the
	// key authenticates (read only).
	scope *identity.Scope
	// lastUsed is the last use seen here (Unix seconds); flushed is the
	// value last written to the store.
	lastUsed, flushed *atomic.Int64
}

// Verifier authenticates requests by API key from an in-memory cache of
// every key, kept fresh by polling the store's change log. It is safe for
// concurrent use; create it with New, call Sync once at start-up and run
// Poll in a goroutine.
type Verifier struct {
	o        Options
	authzRts map[string]bool
	log      *slog.Logger

	mu     sync.RWMutex
	keys   map[string]*entry
	seq    int64
	loaded bool

	syncMu sync.Mutex // one Sync at a time
	miss   missGuard
}

// New returns a Verifier with an empty cache. It fails if Source is nil.
func New(o Options) (*Verifier, error) {
	if o.Source == nil {
		return nil, errors.New("apikey: Options.Source is nil")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PollEvery <= 0 {
		o.PollEvery = 2 * time.Second
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = time.Minute
	}
	if o.MissLookupsPerSecond <= 0 {
		o.MissLookupsPerSecond = 5
	}
	if o.MissBurst <= 0 {
		o.MissBurst = 10
	}
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = time.Minute
	}
	if o.MaxNegative <= 0 {
		o.MaxNegative = 10000
	}
	if o.LookupTimeout <= 0 {
		o.LookupTimeout = 2 * time.Second
	}
	v := &Verifier{o: o, log: o.Logger, keys: map[string]*entry{}, authzRts: map[string]bool{}}
	if v.log == nil {
		v.log = slog.Default()
	}
	for _, r := range o.AuthorizationRoutes {
		v.authzRts[r] = true
	}
	v.miss = missGuard{rate: o.MissLookupsPerSecond, burst: float64(o.MissBurst), tokens: float64(o.MissBurst),
		ttl: o.NegativeTTL, max: o.MaxNegative, neg: map[string]time.Time{}}
	return v, nil
}

// Authenticate implements the pipeline's Authenticator. It reads
// "Proxy-Authorization: Bearer sekisho_..." always, and
// "Authorization: Bearer sekisho_..." only on the routes in
// Options.AuthorizationRoutes (the route is the pipeline's, in in). Any other Authorization value, and a key
// in Authorization on another route, is the app's business: the result is
// the anonymous identity and no error, and the header is left alone.
//
// When a key is found, the result's CredentialHeader names its header (even if
// the key is refused) so the pipeline removes it before forwarding. An
// error means a key was present and refused; it names the key's id and
// name and the rule that refused it, never the secret.
func (v *Verifier) Authenticate(_ http.ResponseWriter, r *http.Request, in authn.Request) (authn.Result, error) {
	return v.authenticate(r, in, v.authzRts)
}

// Routes is a Verifier with its own list of the routes that take a key in
// Authorization: each config generation has one, so a reload that turns
// auth.authorization_header on or off for a route takes effect with that
// generation, while the keys, their cache and last-used times stay the
// Verifier's.
type Routes struct {
	v     *Verifier
	authz map[string]bool
}

// ForRoutes returns the Verifier with authorizationRoutes in place of
// Options.AuthorizationRoutes.
func (v *Verifier) ForRoutes(authorizationRoutes []string) *Routes {
	m := make(map[string]bool, len(authorizationRoutes))
	for _, r := range authorizationRoutes {
		m[r] = true
	}
	return &Routes{v: v, authz: m}
}

// Authenticate is Verifier.Authenticate with this view's routes.
func (rv *Routes) Authenticate(_ http.ResponseWriter, r *http.Request, in authn.Request) (authn.Result, error) {
	return rv.v.authenticate(r, in, rv.authz)
}

func (v *Verifier) authenticate(r *http.Request, in authn.Request, authzRts map[string]bool) (authn.Result, error) {
	tok, header, n := "", "", 0
	for _, val := range r.Header[HeaderProxyAuthorization] {
		if t, ok := bearerKey(val); ok {
			tok, header, n = t, HeaderProxyAuthorization, n+1
		}
	}
	if authzRts[in.Route] {
		for _, val := range r.Header[HeaderAuthorization] {
			if t, ok := bearerKey(val); ok {
				tok, header, n = t, HeaderAuthorization, n+1
			}
		}
	}
	if n == 0 {
		return authn.Result{}, nil
	}
	refused := authn.Result{CredentialHeader: header} // removed upstream even when refused
	if n > 1 {
		return refused, fmt.Errorf("apikey: %w", ErrAmbiguous)
	}
	t, err := ParseToken(tok)
	if err != nil {
		return refused, fmt.Errorf("apikey: %s: %w", header, err)
	}
	e, err := v.lookup(r.Context(), t.ID)
	if err != nil {
		return refused, err
	}
	h := t.Hash()
	if subtle.ConstantTimeCompare(h[:], e.hash[:]) != 1 {
		return refused, fmt.Errorf("apikey: key %s (%q): %w", e.rec.ID, e.rec.Name, ErrWrongSecret)
	}
	now := v.o.Now()
	if err := v.check(e, now); err != nil {
		return refused, err
	}
	sec := now.Unix()
	for {
		old := e.lastUsed.Load()
		if old >= sec || e.lastUsed.CompareAndSwap(old, sec) {
			break
		}
	}
	return authn.Result{CredentialHeader: header,
		Identity: identity.Identity{Kind: identity.APIKey, User: e.user, Provider: "apikey", SessionID: e.rec.ID, AuthTime: now, Scope: e.scope}}, nil
}

// StillValid reports, from the cache alone (no store read), whether the
// key with this id may still be used at now: nil, or why not (revoked,
// expired, or gone from the store). The gateway asks it for the keys of
// open streams, once revocations have reached this replica.
func (v *Verifier) StillValid(id string, now time.Time) error {
	v.mu.RLock()
	e, ok := v.keys[id]
	v.mu.RUnlock()
	if !ok {
		return fmt.Errorf("apikey: key %s: %w", id, ErrUnknown)
	}
	return v.check(e, now)
}

// check applies the rules after the secret matched: revoked, expired.
// The key's scope (routes, methods, paths) is authz's to decide, with the
// route's policy: the identity carries it.
func (v *Verifier) check(e *entry, now time.Time) error {
	k := &e.rec
	switch {
	case !k.RevokedAt.IsZero():
		return fmt.Errorf("apikey: key %s (%q): %w at %s", k.ID, k.Name, ErrRevoked, k.RevokedAt.Format(time.RFC3339))
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		return fmt.Errorf("apikey: key %s (%q): %w at %s", k.ID, k.Name, ErrExpired, k.ExpiresAt.Format(time.RFC3339))
	}
	return nil
}

// bearerKey returns the token in "Bearer <token>" (scheme in any case) if
// the token is meant to be a sekisho key, that is, starts with Prefix.
func bearerKey(v string) (string, bool) {
	const scheme = "bearer "
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	t := strings.TrimLeft(v[len(scheme):], " ")
	if !strings.HasPrefix(t, Prefix) {
		return "", false
	}
	return t, true
}

// lookup finds the cached entry for id, asking the store (rate-limited,
// with negative caching) only for an id the cache does not hold.
func (v *Verifier) lookup(ctx context.Context, id string) (*entry, error) {
	v.mu.RLock()
	e, ok := v.keys[id]
	v.mu.RUnlock()
	if ok {
		return e, nil
	}
	if !v.miss.allow(id, v.o.Now()) {
		return nil, fmt.Errorf("apikey: key %s: %w", id, ErrUnknown)
	}
	ctx, cancel := context.WithTimeout(ctx, v.o.LookupTimeout)
	defer cancel()
	rec, err := v.o.Source.GetAPIKey(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		v.miss.remember(id, v.o.Now())
		return nil, fmt.Errorf("apikey: key %s: %w", id, ErrUnknown)
	}
	if err != nil {
		return nil, fmt.Errorf("apikey: key %s: %w: %w", id, ErrUnavailable, err)
	}
	e = newEntry(rec, nil)
	v.mu.Lock()
	// A Sync may have stored a newer copy meanwhile; never replace it.
	if cur, ok := v.keys[id]; ok {
		e = cur
	} else {
		v.keys[id] = e
	}
	v.mu.Unlock()
	return e, nil
}

func newEntry(rec store.APIKey, old *entry) *entry {
	e := &entry{rec: rec, user: "apikey:" + rec.Name,
		scope: &identity.Scope{Name: rec.Name, Routes: rec.Routes, Methods: rec.Methods, PathPrefixes: rec.PathPrefixes}}
	copy(e.hash[:], rec.SecretHash)
	if old != nil {
		e.lastUsed, e.flushed = old.lastUsed, old.flushed
	} else {
		e.lastUsed, e.flushed = new(atomic.Int64), new(atomic.Int64)
	}
	return e
}

// Len returns the number of cached keys, for metrics.
func (v *Verifier) Len() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.keys)
}

// Sync brings the cache up to date: the first successful call loads every
// key; later calls re-read the keys named in the change log since the last
// call. On error the cache keeps its last good state.
func (v *Verifier) Sync(ctx context.Context) error {
	v.syncMu.Lock()
	defer v.syncMu.Unlock()
	v.mu.RLock()
	loaded, seq := v.loaded, v.seq
	v.mu.RUnlock()
	if !loaded {
		return v.load(ctx)
	}
	for {
		cs, err := v.o.Source.APIKeyChangesSince(ctx, seq)
		if err != nil {
			return fmt.Errorf("apikey: read changes after seq %d: %w", seq, err)
		}
		if len(cs) == 0 {
			return nil
		}
		done := map[string]bool{}
		for _, c := range cs {
			if done[c.KeyID] {
				continue
			}
			done[c.KeyID] = true
			rec, err := v.o.Source.GetAPIKey(ctx, c.KeyID)
			v.mu.Lock()
			switch {
			case errors.Is(err, store.ErrNotFound):
				delete(v.keys, c.KeyID)
			case err != nil:
				v.mu.Unlock()
				return fmt.Errorf("apikey: re-read key %s: %w", c.KeyID, err)
			default:
				v.keys[c.KeyID] = newEntry(rec, v.keys[c.KeyID])
			}
			v.mu.Unlock()
			v.miss.forget(c.KeyID)
		}
		seq = cs[len(cs)-1].Seq
		v.mu.Lock()
		v.seq = seq
		v.mu.Unlock()
		if len(cs) < store.APIKeyChangeBatch {
			return nil
		}
	}
}

// load replaces the cache with every key in the store.
func (v *Verifier) load(ctx context.Context) error {
	// Read the watermark first: a change after it is applied by the next
	// Sync even if the list below already shows it.
	seq, err := v.o.Source.LatestAPIKeyChange(ctx)
	if err != nil {
		return fmt.Errorf("apikey: load keys: %w", err)
	}
	recs, err := v.o.Source.ListAPIKeys(ctx)
	if err != nil {
		return fmt.Errorf("apikey: load keys: %w", err)
	}
	v.mu.Lock()
	keys := make(map[string]*entry, len(recs))
	for _, rec := range recs {
		keys[rec.ID] = newEntry(rec, v.keys[rec.ID])
	}
	v.keys, v.seq, v.loaded = keys, seq, true
	v.mu.Unlock()
	v.miss.clear()
	return nil
}

// Flush writes last-used times seen since the last flush to the store in
// one batch.
func (v *Verifier) Flush(ctx context.Context) error {
	used := map[string]time.Time{}
	var marks []func()
	v.mu.RLock()
	for id, e := range v.keys {
		if u := e.lastUsed.Load(); u > e.flushed.Load() {
			used[id] = time.Unix(u, 0)
			f := e.flushed
			marks = append(marks, func() { f.Store(u) })
		}
	}
	v.mu.RUnlock()
	if len(used) == 0 {
		return nil
	}
	if err := v.o.Source.TouchAPIKeys(ctx, used); err != nil {
		return fmt.Errorf("apikey: flush last-used times: %w", err)
	}
	for _, m := range marks {
		m()
	}
	return nil
}

// Poll calls Sync every interval (every <= 0 means Options.PollEvery, 2s by
// default) and Flush every Options.FlushEvery until ctx is done, then
// flushes once more. Errors are logged; the cache keeps its last good
// state, so a store outage never re-admits a revoked key.
func (v *Verifier) Poll(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = v.o.PollEvery
	}
	st := time.NewTicker(every)
	defer st.Stop()
	ft := time.NewTicker(v.o.FlushEvery)
	defer ft.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := v.Flush(fctx); err != nil {
				v.log.Warn("api key last-used flush at shutdown failed", "component", "apikey", "err", err)
			}
			cancel()
			return
		case <-st.C:
			if err := v.Sync(ctx); err != nil && ctx.Err() == nil {
				v.log.Warn("api key poll failed; keeping last state", "component", "apikey", "err", err)
			}
		case <-ft.C:
			if err := v.Flush(ctx); err != nil && ctx.Err() == nil {
				v.log.Warn("api key last-used flush failed", "component", "apikey", "err", err)
			}
		}
	}
}

// missGuard rate-limits store look-ups for ids not in the cache (a token
// bucket for the whole process) and remembers ids the store did not know.
type missGuard struct {
	mu     sync.Mutex
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
	ttl    time.Duration
	max    int
	neg    map[string]time.Time // id -> refused until
}

// allow reports whether the store may be asked about id now.
func (g *missGuard) allow(id string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if until, ok := g.neg[id]; ok {
		if now.Before(until) {
			return false
		}
		delete(g.neg, id)
	}
	if !g.last.IsZero() {
		if d := now.Sub(g.last).Seconds(); d > 0 {
			g.tokens = min(g.burst, g.tokens+d*g.rate)
		}
	}
	g.last = now
	if g.tokens < 1 {
		return false
	}
	g.tokens--
	return true
}

func (g *missGuard) remember(id string, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.neg) >= g.max {
		clear(g.neg)
	}
	g.neg[id] = now.Add(g.ttl)
}

func (g *missGuard) forget(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.neg, id)
}

func (g *missGuard) clear() {
	g.mu.Lock()
	defer g.mu.Unlock()
	clear(g.neg)
}
