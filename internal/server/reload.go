package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/authz"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/route"
	"github.com/sekisho/sekisho/internal/session"
)

// Reload applies a new config to the running gateway, whole or not at all.
// The config is checked as `sekisho check` checks it; a setting that takes
// a restart (see restartOnly) refuses the reload. Then the new generation
// is built (unchanged pools and OIDC providers carried over) and swapped
// in atomically: requests already under way finish with the config they
// started with, the next ones get the new one. TLS certificate files are
// read again. Open streams (event streams, WebSockets) whose route or
// policy no longer admits their user are ended; the others go on. Each
// reload is logged, audited and counted, applied or refused.
//
// On error nothing changed; the error lists every problem, each with its
// file:line, and wraps ErrReloadRefused.
func (s *Server) Reload(cfg *config.Config) error {
	return s.ReloadWith(func() (*config.Config, error) { return cfg, nil })
}

// ReloadWith is Reload with the config from load (the command line reads
// the file again), so that a file that does not even load is refused,
// logged, audited and counted like any other refused reload.
func (s *Server) ReloadWith(load func() (*config.Config, error)) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	cur := s.gen.Load()
	s.opts.Secrets.Forget() // a reload reads Secret Manager versions anew ("latest" may have moved)
	cfg, err := load()
	if err == nil {
		err = s.reload(cur, cfg)
	}
	s.metrics.Reloaded(err == nil)
	if err != nil {
		s.log.Error("config reload refused; the config in force is kept", "problems", err.Error())
		s.auditConfig("config reload refused: "+oneLine(err), cur.digest)
		return fmt.Errorf("%w:\n%w", ErrReloadRefused, err)
	}
	next := s.gen.Load()
	s.log.Info("config reloaded", "config", cfg.Source(), "sha256", next.digest, "routes", len(cfg.Routes), "pools", len(cfg.Pools))
	s.auditConfig("config reload applied", next.digest)
	return nil
}

// ConfigDigest is the SHA-256 of the config in force (as decoded, defaults
// applied), as the reload log and audit lines name it.
func (s *Server) ConfigDigest() string { return s.gen.Load().digest }

func (s *Server) reload(cur *generation, cfg *config.Config) error {
	if problems := restartOnly(cur.cfg, cfg); len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	// Checked as `check` checks, the rules compiled against the gateway's
	// own limiter, so counters and bans survive the reload; the build below
	// is the one check would make.
	checked, err := checkKeep(cfg, s.opts.Secrets, s.log, cur, s.limiter)
	if err != nil {
		return err
	}
	sets := checked.sets
	// Session keys are read anew (a rotation), and put in place with the
	// rest below.
	keys, err := s.sessionKeys(cfg)
	if err != nil {
		return err
	}
	next, err := s.build(cfg, sets, checked.waf, cur)
	if err != nil {
		return err
	}
	if s.tlsConfig != nil {
		if err := s.tlsConfig.mgr.Reload(); err != nil {
			next.discard(cur)
			return fmt.Errorf("%s: %w", cfg.Pos("listen", "tls"), err)
		}
	}
	if err := s.keyring.Replace(keys); err != nil {
		next.discard(cur)
		return fmt.Errorf("%s: %w", cfg.Pos("session", "keys"), err)
	}
	s.swap(cur, next)
	return nil
}

// swap puts next in force: its new pools' health checks start, the pools
// it dropped stop, and the open streams are decided again.
func (s *Server) swap(cur, next *generation) {
	s.gen.Store(next)
	s.runMu.Lock()
	if s.runCtx != nil {
		for _, e := range next.pools {
			s.startPool(e)
		}
	}
	s.runMu.Unlock()
	for name, e := range cur.pools {
		if next.pools[name] != e {
			e.close()
		}
	}
	s.recheckStreams(next, "the reloaded config")
}

// startPool runs e's health checks under the Run context; runMu is held.
func (s *Server) startPool(e *poolEntry) {
	if e.stop != nil {
		return
	}
	ctx, stop := context.WithCancel(s.runCtx)
	e.stop = stop
	go e.pool.Start(ctx)
}

// auditConfig writes the audit line of a reload.
func (s *Server) auditConfig(reason, digest string) {
	s.audit.Log(&audit.Entry{Time: s.opts.Now().UTC(), RequestID: "config", Decision: "config",
		Reason: reason + " (config sha256 " + digest + ")"})
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// liveStreams keeps the open streams the pipeline let through, so that a
// reload or a revocation can end those that are no longer allowed.
type liveStreams struct {
	mu   sync.Mutex
	open map[*route.Stream]struct{}
}

// Track implements route.StreamTracker.
func (l *liveStreams) Track(st *route.Stream) func() {
	l.mu.Lock()
	if l.open == nil {
		l.open = map[*route.Stream]struct{}{}
	}
	l.open[st] = struct{}{}
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		delete(l.open, st)
		l.mu.Unlock()
	}
}

// list returns the open streams.
func (l *liveStreams) list() []*route.Stream {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*route.Stream, 0, len(l.open))
	for st := range l.open {
		out = append(out, st)
	}
	return out
}

// recheckStreams decides every open stream again under g: a stream whose
// route is gone (or whose host and path now pick another route) or whose
// policy no longer admits its user is ended, with an audit line.
func (s *Server) recheckStreams(g *generation, by string) {
	now := s.opts.Now()
	for _, st := range s.streams.list() {
		rt, ok := g.pipeline.Router.Match(st.Host, st.Path)
		var why string
		switch {
		case !ok || rt.Name != st.Route:
			why = fmt.Sprintf("%s has no route %q for this stream any more", by, st.Route)
		default:
			if d := rt.Policy.DecideRequest(st.Identity, authz.Request{Method: st.Method, Path: st.Path, Now: now}); !d.Allow {
				why = fmt.Sprintf("%s no longer admits the user on route %q: %s", by, st.Route, d.Reason)
			}
		}
		if why != "" {
			s.endStream(st, why)
		}
	}
}

// sweepRevoked ends the open streams of revoked sessions (sign-out, sign-
// out everywhere, `sekisho user disable`) and of revoked or expired API
// keys, once their revocation reached this replica.
func (s *Server) sweepRevoked() {
	now := s.opts.Now()
	for _, st := range s.streams.list() {
		id := st.Identity
		var why string
		switch id.Kind {
		case identity.Session:
			if s.revoked.IsRevoked(session.Session{ID: id.SessionID, User: id.User, IssuedAt: id.AuthTime}) {
				why = "the session was revoked"
			}
		case identity.APIKey:
			if err := s.apikeys.StillValid(id.SessionID, now); err != nil {
				why = "the API key is no longer valid: " + err.Error()
			}
		}
		if why != "" {
			s.endStream(st, why)
		}
	}
}

// errStreamEnded is the cause a stream ended by the gateway carries.
var errStreamEnded = errors.New("stream ended by the gateway")

func (s *Server) endStream(st *route.Stream, why string) {
	s.log.Info("ending an open stream", "route", st.Route, "user", st.Identity.User, "why", why)
	s.audit.Log(&audit.Entry{Time: s.opts.Now().UTC(), RequestID: st.RequestID, Route: st.Route, Host: st.Host, Path: st.Path,
		User: st.Identity.User, Kind: string(st.Identity.Kind), Provider: st.Identity.Provider,
		Decision: "deny", Reason: "open stream ended: " + why})
	st.End(fmt.Errorf("%w: %s", errStreamEnded, why))
}

// watchStreams ends streams whose credential was revoked, every interval
// until ctx ends.
func (s *Server) watchStreams(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sweepRevoked()
		}
	}
}
