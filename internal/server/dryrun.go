package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"log/slog"
	"time"

	"github.com/sekisho/sekisho/internal/apikey"
	"github.com/sekisho/sekisho/internal/audit"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/gcpauth"
	"github.com/sekisho/sekisho/internal/metrics"
	"github.com/sekisho/sekisho/internal/ratelimit"
	"github.com/sekisho/sekisho/internal/rules"
	"github.com/sekisho/sekisho/internal/secret"
	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/store"
	"github.com/sekisho/sekisho/internal/waf"
)

// dryBuild builds the config's generation as serve and reload do, through
// the same build, on a stand-in for what outlives a config: throwaway
// session and assertion keys, no store, a discarded audit log. Nothing is
// started, written nor contacted (built-in upstreams are not started), so
// `check` finds what only building would.
func dryBuild(cfg *config.Config, secrets secret.Resolver, sets map[string]*rules.Set, inspector waf.Inspector, limiter ratelimit.Limiter) error {
	g, done, err := dryGeneration(cfg, secrets, sets, inspector, limiter)
	if err != nil {
		return err
	}
	done()
	g.discard(nil)
	return nil
}

// dryGeneration is dryBuild's generation, kept for `policy test`; done
// releases its stand-ins.
func dryGeneration(cfg *config.Config, secrets secret.Resolver, sets map[string]*rules.Set, inspector waf.Inspector, limiter ratelimit.Limiter) (_ *generation, done func(), err error) {
	discard := slog.New(slog.DiscardHandler)
	s := &Server{cfg: cfg, opts: Options{Logger: discard, Secrets: secrets, Now: time.Now}, log: discard,
		streams: &liveStreams{}, idTokens: &gcpauth.IDTokens{}, dry: true, limiter: limiter}
	key := make([]byte, session.KeySize)
	rand.Read(key)
	if err := s.newSessions([][]byte{key}); err != nil {
		return nil, nil, err
	}
	sk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	if err := s.newSigner([]*ecdsa.PrivateKey{sk}); err != nil {
		return nil, nil, err
	}
	s.audit = audit.New(io.Discard)
	done = func() { s.audit.Close() }
	s.metrics = metrics.New(nil)
	if s.apikeys, err = apikey.New(apikey.Options{Source: noKeys{}, Logger: discard}); err != nil {
		done()
		return nil, nil, err
	}
	g, err := s.build(cfg, sets, inspector, nil)
	if err != nil {
		done()
		return nil, nil, err
	}
	return g, done, nil
}

// noKeys is an API-key source with no key, for dryBuild.
type noKeys struct{}

func (noKeys) GetAPIKey(context.Context, string) (store.APIKey, error) {
	return store.APIKey{}, store.ErrNotFound
}
func (noKeys) ListAPIKeys(context.Context) ([]store.APIKey, error)      { return nil, nil }
func (noKeys) TouchAPIKeys(context.Context, map[string]time.Time) error { return nil }
func (noKeys) LatestAPIKeyChange(context.Context) (int64, error)        { return 0, nil }
func (noKeys) APIKeyChangesSince(context.Context, int64) ([]store.APIKeyChange, error) {
	return nil, nil
}
