package server

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/sekisho/sekisho/internal/assert"
	"github.com/sekisho/sekisho/internal/certs"
	"github.com/sekisho/sekisho/internal/clientip"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/ratelimit"
	"github.com/sekisho/sekisho/internal/rules"
	"github.com/sekisho/sekisho/internal/secret"
	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/waf"
)

// Check runs what `serve` runs before listening, minus anything with a side
// effect: validation, secret references, session and assertion keys given in
// the config, TLS files, trusted proxies. It creates no file, opens no
// database and contacts no server. Every problem is listed.
func Check(cfg *config.Config, secrets secret.Resolver) error {
	_, err := CheckKeep(cfg, secrets, nil)
	return err
}

// Checked is a config that passed Check, with what checking it compiled:
// the WAF (slow to compile: the Core Rule Set) and the rule sets. New takes
// it in Options.Checked so that serve compiles nothing twice.
type Checked struct {
	cfg *config.Config
	waf waf.Inspector
	// sets are compiled against limiter, a fresh in-memory one: fit for
	// policy tests and for serve without Redis, not for serve with it.
	sets    map[string]*rules.Set
	limiter *ratelimit.Memory
}

// CheckKeep is Check that keeps what it compiled for New. logger receives
// the WAF's log when the gateway runs; nil discards it.
func CheckKeep(cfg *config.Config, secrets secret.Resolver, logger *slog.Logger) (*Checked, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var errs []error
	for i, ref := range cfg.Session.Keys {
		raw, err := secrets.Resolve(ref)
		if err == nil {
			_, err = session.ParseKey(string(raw))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("session.keys[%d] (%s): %w", i, ref, err))
		}
	}
	for i, ref := range cfg.Assertion.Keys {
		raw, err := secrets.Resolve(ref)
		if err == nil {
			_, err = assert.ParseKeyPEM(raw)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("assertion.keys[%d] (%s): %w", i, ref, err))
		}
	}
	if cfg.TLSOn() {
		if err := certs.Check(certOptions(cfg, nil)); err != nil {
			errs = append(errs, fmt.Errorf("listen.tls: %w", err))
		}
	}
	if _, err := clientip.New(cfg.Listen.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("listen.trusted_proxies: %w", err))
	}
	// Rules compile exactly as serve compiles them; an in-memory limiter
	// stands in for Redis (check contacts no server).
	inspector, err := newWAF(cfg, logger.With("component", "waf"))
	if err != nil {
		errs = append(errs, err)
	}
	mem, err := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	if err != nil {
		return nil, err
	}
	sets, err := ruleSets(cfg, mem, inspector)
	if err != nil {
		errs = append(errs, err)
	}
	if cfg.Redis != nil {
		if raw, err := secrets.Resolve(cfg.Redis.URL); err != nil {
			errs = append(errs, fmt.Errorf("redis.url: %w", err))
		} else if _, err := redis.ParseURL(string(raw)); err != nil {
			errs = append(errs, fmt.Errorf("redis.url (%s): not a redis:// or rediss:// URL", cfg.Redis.URL))
		}
	}
	for i, p := range cfg.OIDC.Providers {
		if _, err := secrets.Resolve(p.ClientSecret); err != nil {
			errs = append(errs, fmt.Errorf("oidc.providers[%d] %q: client_secret: %w", i, p.Name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Checked{cfg: cfg, waf: inspector, sets: sets, limiter: mem}, nil
}
