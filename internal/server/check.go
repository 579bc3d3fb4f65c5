package server

import (
	"errors"
	"fmt"

	"github.com/sekisho/sekisho/internal/assert"
	"github.com/sekisho/sekisho/internal/certs"
	"github.com/sekisho/sekisho/internal/clientip"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/secret"
	"github.com/sekisho/sekisho/internal/session"
)

// Check runs what `serve` runs before listening, minus anything with a side
// effect: validation, secret references, session and assertion keys given in
// the config, TLS files, trusted proxies. It creates no file, opens no
// database and contacts no server. Every problem is listed.
func Check(cfg *config.Config, secrets secret.Resolver) error {
	if err := cfg.Validate(); err != nil {
		return err
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
	return errors.Join(errs...)
}
