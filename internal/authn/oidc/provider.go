package oidc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// ErrUnreachable wraps every failure to talk to a provider (connection,
// timeout, a broken discovery document): the user is told the provider is
// unreachable, and existing sessions are unaffected.
var ErrUnreachable = errors.New("provider unreachable")

// provider is one configured provider at run time, with its lazily read
// discovery document.
type provider struct {
	opts    ProviderOptions
	client  *http.Client // the injected transport with the call timeout
	timeout time.Duration
	ttl     time.Duration
	retry   time.Duration
	now     func() time.Time

	mu        sync.Mutex
	disc      *discovered
	discAt    time.Time
	lastErr   error
	lastErrAt time.Time
}

// discovered is what discovery tells about a provider.
type discovered struct {
	endpoint   oauth2.Endpoint
	verifier   *gooidc.IDTokenVerifier
	endSession string // "" when the provider does not support RP-initiated logout
}

func newProvider(p ProviderOptions, o *Options) *provider {
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
	}
}

// ctx returns a context that carries the provider's HTTP client (for
// go-oidc and oauth2) and is bounded by the call timeout.
func (p *provider) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	ctx := gooidc.ClientContext(parent, p.client)
	return context.WithTimeout(ctx, p.timeout)
}

// discover returns the provider's discovery, reading it when it was never
// read or is older than the TTL. After a failure it fails fast, without a
// network call, until RetryAfter has passed; so a provider outage costs each
// sign-in at most one timeout per RetryAfter, and the gateway starts
// whether or not the provider is up.
func (p *provider) discover(parent context.Context) (*discovered, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if p.disc != nil && now.Sub(p.discAt) < p.ttl {
		return p.disc, nil
	}
	if p.lastErr != nil && now.Sub(p.lastErrAt) < p.retry {
		return nil, p.lastErr
	}
	d, err := p.fetch(parent)
	if err != nil {
		p.lastErr = fmt.Errorf("%w: discovery of %s: %v", ErrUnreachable, p.opts.Issuer, err)
		p.lastErrAt = now
		return nil, p.lastErr
	}
	p.disc, p.discAt, p.lastErr = d, now, nil
	return d, nil
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
// (*oauth2.RetrieveError) is returned as is; anything else (connection,
// timeout) wraps ErrUnreachable.
func (p *provider) exchange(parent context.Context, d *discovered, redirectURL, code, verifier string) (*oauth2.Token, error) {
	ctx, cancel := p.ctx(parent)
	defer cancel()
	tok, err := p.oauth2Config(d, redirectURL).Exchange(ctx, code, oauth2.VerifierOption(verifier))
	return tok, classify(err)
}

// verify checks an ID token's signature, issuer, audience and expiry.
func (p *provider) verify(parent context.Context, d *discovered, raw string) (*gooidc.IDToken, error) {
	ctx, cancel := p.ctx(parent)
	defer cancel()
	return d.verifier.Verify(ctx, raw)
}

// refresh uses a refresh token.
func (p *provider) refresh(parent context.Context, d *discovered, refreshToken string) (*oauth2.Token, error) {
	ctx, cancel := p.ctx(parent)
	defer cancel()
	src := p.oauth2Config(d, "").TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Unix(1, 0)})
	tok, err := src.Token()
	return tok, classify(err)
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
