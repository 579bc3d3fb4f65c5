package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// ErrUnreachable wraps every failure to talk to a provider (connection,
// timeout, a 5xx answer, a broken discovery document): the user is told the
// provider is unreachable, and existing sessions are unaffected.
var ErrUnreachable = errors.New("provider unreachable")

// provider is one configured provider at run time, with its lazily read
// discovery document and what sekisho knows of its reachability.
type provider struct {
	opts    ProviderOptions
	client  *http.Client // the injected transport with the call timeout
	timeout time.Duration
	ttl     time.Duration
	retry   time.Duration
	now     func() time.Time
	log     *slog.Logger

	mu      sync.Mutex
	disc    *discovered
	discAt  time.Time
	heardAt time.Time  // the last call that succeeded
	downErr error      // not nil: unreachable, until a call succeeds
	downAt  time.Time  // the last call that failed while down
	probing *probeCall // the discovery read or probe in flight
}

// probeCall is one discovery read (or probe) in flight; everyone who needs
// it waits for the same one.
type probeCall struct {
	done chan struct{}
	disc *discovered // set before done is closed
	err  error
}

// discovered is what discovery tells about a provider.
type discovered struct {
	endpoint   oauth2.Endpoint
	verifier   *gooidc.IDTokenVerifier
	endSession string // "" when the provider does not support RP-initiated logout
}

func newProvider(p ProviderOptions, o *Options, log *slog.Logger) *provider {
	base := o.HTTPClient
	if base == nil {
		base = &http.Client{}
	}
	return &provider{
		opts:    p,
		client:  &http.Client{Transport: base.Transport, CheckRedirect: base.CheckRedirect, Timeout: o.Timeout},
		timeout: o.Timeout,
		ttl:     o.DiscoveryTTL,
		retry:   o.RetryAfter,
		now:     o.Now,
		log:     log,
	}
}

// ctx returns a context that carries the provider's HTTP client (for
// go-oidc and oauth2) and is bounded by the call timeout.
func (p *provider) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	ctx := gooidc.ClientContext(parent, p.client)
	return context.WithTimeout(ctx, p.timeout)
}

// discover returns the provider's discovery for a call to it (code
// exchange, refresh): the cached one while younger than the TTL, whatever
// the reachability (the call itself tells), else a new read.
func (p *provider) discover(ctx context.Context) (*discovered, error) { return p.get(ctx, false) }

// ready returns the provider's discovery before the browser is sent there
// (sign-in start, RP-initiated logout): it fails while the provider is
// unreachable, and probes it first when nothing was heard from it for
// RetryAfter, so a browser is not sent to a provider that is down.
func (p *provider) ready(ctx context.Context) (*discovered, error) { return p.get(ctx, true) }

// get is discover (live false) and ready (live true). After a failure it
// fails fast, without a network call, until RetryAfter has passed; then one
// read of the discovery document (a probe) decides, shared by every caller
// and bounded by the call timeout: so an outage costs at most one timeout
// per RetryAfter, a flood of sign-ins probes once, and the gateway starts
// whether or not the provider is up. A caller that gives up (ctx) stops
// waiting; the probe goes on and still counts.
func (p *provider) get(ctx context.Context, live bool) (*discovered, error) {
	p.mu.Lock()
	now := p.now()
	fresh := p.disc != nil && now.Sub(p.discAt) < p.ttl
	switch {
	case fresh && !live,
		fresh && p.downErr == nil && now.Sub(p.heardAt) < p.retry:
		d := p.disc
		p.mu.Unlock()
		return d, nil
	case p.downErr != nil && now.Sub(p.downAt) < p.retry:
		err := p.downErr
		p.mu.Unlock()
		return nil, err
	}
	c := p.probing
	if c == nil {
		c = &probeCall{done: make(chan struct{})}
		p.probing = c
		go p.probe(context.WithoutCancel(ctx), c, !fresh)
	}
	p.mu.Unlock()
	select {
	case <-c.done:
		return c.disc, c.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %s: gave up waiting for discovery: %v", ErrUnreachable, p.opts.Issuer, context.Cause(ctx))
	}
}

// probe reads the discovery document: all of it (full: a new verifier and
// key cache) when the cached one is missing or stale, else just a check that
// it is served, and records the outcome.
func (p *provider) probe(ctx context.Context, c *probeCall, full bool) {
	defer close(c.done)
	var d *discovered
	var err error
	if full {
		d, err = p.fetch(ctx)
	} else {
		err = p.ping(ctx)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.probing = nil
	if err != nil {
		c.err = p.failedLocked(fmt.Errorf("%w: discovery of %s: %v", ErrUnreachable, p.opts.Issuer, err))
		return
	}
	if full {
		p.disc, p.discAt = d, p.now()
	}
	c.disc = p.disc
	p.heardLocked()
}

// reachable reports false from a failed call until one succeeds.
func (p *provider) reachable() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.downErr == nil
}

// heard records a call that succeeded: the provider is reachable.
func (p *provider) heard() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.heardLocked()
}

func (p *provider) heardLocked() {
	if p.downErr != nil {
		p.log.Info("provider reachable again: sign-ins resume", "provider", p.opts.Name)
	}
	p.downErr, p.heardAt = nil, p.now()
}

// failed records err, the outcome of a call made for parent: when it wraps
// ErrUnreachable the provider is unreachable from now on, until a call
// succeeds. A caller that gave up (parent done: the browser went away) tells
// nothing about the provider, so it cannot mark it down. failed returns err.
func (p *provider) failed(parent context.Context, err error) error {
	if err == nil || !errors.Is(err, ErrUnreachable) || parent.Err() != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failedLocked(err)
}

func (p *provider) failedLocked(err error) error {
	if p.downErr == nil {
		p.log.Warn("provider unreachable: new sign-ins get the unreachable page until it answers again",
			"provider", p.opts.Name, "err", err)
	}
	p.downErr, p.downAt = err, p.now()
	return err
}

// maxDiscovery bounds the discovery document a probe reads.
const maxDiscovery = 1 << 20

// ping checks that the discovery document is served and names our issuer,
// keeping the cached discovery and its key cache.
func (p *provider) ping(parent context.Context) error {
	ctx, cancel := context.WithTimeout(parent, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(p.opts.Issuer, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("discovery answered %s", resp.Status)
	}
	var doc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDiscovery)).Decode(&doc); err != nil {
		return fmt.Errorf("discovery document: %v", err)
	}
	if doc.Issuer != p.opts.Issuer {
		return fmt.Errorf("discovery document names issuer %q", doc.Issuer)
	}
	return nil
}

func (p *provider) fetch(parent context.Context) (*discovered, error) {
	ctx, cancel := p.ctx(parent)
	defer cancel()
	gp, err := gooidc.NewProvider(ctx, p.opts.Issuer) // checks that the document's issuer is ours
	if err != nil {
		return nil, err
	}
	var extra struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := gp.Claims(&extra); err != nil {
		return nil, fmt.Errorf("discovery document: %w", err)
	}
	ep := gp.Endpoint()
	if ep.AuthURL == "" || ep.TokenURL == "" {
		return nil, errors.New("discovery document lacks authorization_endpoint or token_endpoint")
	}
	// The verifier checks signature (keys from jwks_uri, fetched with the
	// provider's client; algorithms as discovery lists them, never "none"),
	// issuer, audience and expiry at our clock.
	v := gp.Verifier(&gooidc.Config{ClientID: p.opts.ClientID, Now: p.now})
	return &discovered{endpoint: ep, verifier: v, endSession: extra.EndSession}, nil
}

// oauth2Config is the client configuration for one flow.
func (p *provider) oauth2Config(d *discovered, redirectURL string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     p.opts.ClientID,
		ClientSecret: string(p.opts.ClientSecret),
		Endpoint:     d.endpoint,
		RedirectURL:  redirectURL,
		Scopes:       p.opts.Scopes,
	}
}

// exchange trades the code for tokens. A refusal by the provider
// (*oauth2.RetrieveError) is returned as is; a connection error or a
// timeout wraps ErrUnreachable and marks the provider down. A 5xx answer is
// returned as a refusal and marks nothing: anyone can start a flow and
// bring a garbage code, and a provider that answers such a code with a 5xx
// must not let them keep sign-in "unreachable" for everyone. A provider
// that is really down fails its discovery probe too.
func (p *provider) exchange(parent context.Context, d *discovered, redirectURL, code, verifier string) (*oauth2.Token, error) {
	ctx, cancel := p.ctx(parent)
	defer cancel()
	tok, err := p.oauth2Config(d, redirectURL).Exchange(ctx, code, oauth2.VerifierOption(verifier))
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode >= 500 {
		return nil, fmt.Errorf("token endpoint answered %d to the code exchange: %w", re.Response.StatusCode, err)
	}
	return tok, p.outcome(parent, classify(err))
}

// verify checks an ID token's signature, issuer, audience and expiry. A
// failure to fetch the provider's keys wraps ErrUnreachable and marks the
// provider down.
func (p *provider) verify(parent context.Context, d *discovered, raw string) (*gooidc.IDToken, error) {
	ctx, cancel := p.ctx(parent)
	defer cancel()
	idt, err := d.verifier.Verify(ctx, raw)
	if err != nil && strings.Contains(err.Error(), "fetching keys") { // go-oidc does not wrap it
		return nil, p.failed(parent, fmt.Errorf("%w: keys of %s: %v", ErrUnreachable, p.opts.Issuer, err))
	}
	return idt, err
}

// refresh uses a refresh token; errors as for exchange.
func (p *provider) refresh(parent context.Context, d *discovered, refreshToken string) (*oauth2.Token, error) {
	ctx, cancel := p.ctx(parent)
	defer cancel()
	src := p.oauth2Config(d, "").TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Unix(1, 0)})
	tok, err := src.Token()
	return tok, p.outcome(parent, classify(err))
}

// outcome records the outcome of a token endpoint call: any answer but a
// 5xx (a refusal too) shows the provider is reachable.
func (p *provider) outcome(parent context.Context, err error) error {
	if !errors.Is(err, ErrUnreachable) {
		p.heard()
		return err
	}
	return p.failed(parent, err)
}

func classify(err error) error {
	if err == nil {
		return nil
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.Response != nil && re.Response.StatusCode >= 500 {
			return fmt.Errorf("%w: token endpoint answered %d", ErrUnreachable, re.Response.StatusCode)
		}
		return err
	}
	return fmt.Errorf("%w: %v", ErrUnreachable, err)
}
