package oidc

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/redirect"
	"github.com/sekisho/sekisho/internal/reqinfo"
	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/store"
	"github.com/sekisho/sekisho/internal/web"
)

// Paths the Handler serves (under web.Prefix).
const (
	// PathPrefix is where every OIDC endpoint lives.
	PathPrefix = "/.sekisho/oidc/"
	// CallbackPath is the redirect URI's path; register
	// scheme://host/.sekisho/oidc/callback at the provider.
	CallbackPath = "/.sekisho/oidc/callback"
	// SignedOutPath is the post-logout redirect URI's path.
	SignedOutPath = "/.sekisho/oidc/signed-out"
)

// maxMaxAge bounds the max_age a start request may ask for.
const maxMaxAge = 366 * 24 * time.Hour

// ProviderInfo is what the sign-in page shows for one provider.
type ProviderInfo struct {
	// Name is the configured name.
	Name string
	// Label is the button text.
	Label string
}

// Handler serves the OIDC endpoints under PathPrefix: start, callback and
// the signed-out page. It is safe for concurrent use.
type Handler struct {
	providers map[string]*provider
	order     []ProviderInfo
	sessions  *session.Codec
	keyring   *session.Keyring
	tokens    store.OIDCTokens
	lifetime  time.Duration
	origin    func(*http.Request) (string, string)
	secure    bool
	stateTTL  time.Duration
	now       func() time.Time
	log       *slog.Logger
	used      usedStates
}

// New checks opts and returns a Handler. It makes no network call:
// discovery happens at the first sign-in.
func New(opts Options) (*Handler, error) {
	var errs []error
	if len(opts.Providers) == 0 {
		errs = append(errs, errors.New("oidc: at least one provider is required"))
	}
	if opts.Sessions == nil || opts.Keyring == nil || opts.Origin == nil {
		errs = append(errs, errors.New("oidc: Options.Sessions, Keyring and Origin are required"))
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{{"Timeout", &opts.Timeout, DefaultTimeout}, {"StateTTL", &opts.StateTTL, DefaultStateTTL},
		{"DiscoveryTTL", &opts.DiscoveryTTL, DefaultDiscoveryTTL}, {"RetryAfter", &opts.RetryAfter, DefaultRetryAfter},
		{"SessionLifetime", &opts.SessionLifetime, session.DefaultLifetime}} {
		switch {
		case *d.v < 0:
			errs = append(errs, fmt.Errorf("oidc: %s %s is negative", d.name, *d.v))
		case *d.v == 0:
			*d.v = d.def
		}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	h := &Handler{
		providers: map[string]*provider{}, sessions: opts.Sessions, keyring: opts.Keyring, tokens: opts.Tokens,
		lifetime: opts.SessionLifetime, origin: opts.Origin, secure: opts.SecureCookies, stateTTL: opts.StateTTL,
		now: opts.Now, log: opts.Logger.With("component", "oidc"),
	}
	for _, po := range opts.Providers {
		p, err := checkProvider(po)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := h.providers[p.Name]; dup {
			errs = append(errs, fmt.Errorf("oidc provider %q: defined twice", p.Name))
			continue
		}
		h.providers[p.Name] = newProvider(p, &opts, h.log)
		h.order = append(h.order, ProviderInfo{Name: p.Name, Label: p.Label})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return h, nil
}

// Providers lists the providers in configuration order, for the sign-in page.
func (h *Handler) Providers() []ProviderInfo { return append([]ProviderInfo(nil), h.order...) }

// Reachable reports whether the named provider is taken to be reachable, for
// a metric. It turns false when a call to the provider fails with a
// connection error, a timeout, a 5xx answer or a broken discovery document
// (discovery, code exchange, refresh, keys; not a 5xx to a code exchange,
// which anyone can provoke with a garbage code), and true again when a call
// succeeds; while false, sekisho probes the provider's discovery document at
// most every Options.RetryAfter, and starting a sign-in with it (or the
// provider's part of a sign-out) shows the "unreachable" page instead of
// sending the browser there. Signed-in sessions are unaffected. A provider
// not contacted yet is reachable; an unknown name is not.
func (h *Handler) Reachable(name string) bool {
	p, ok := h.providers[name]
	return ok && p.reachable()
}

// StartURL is the path that starts signing in with provider and returns to
// next (validated again when the flow starts).
func StartURL(provider, next string) string {
	u := PathPrefix + url.PathEscape(provider) + "/start"
	if next != "" {
		u += "?rd=" + url.QueryEscape(next)
	}
	return u
}

// Serve serves GET PathPrefix{provider}/start, GET CallbackPath and GET
// SignedOutPath (r.URL.Path must be the normalised path), and says what it
// did (web.Endpoint).
func (h *Handler) Serve(w http.ResponseWriter, r *http.Request) web.Outcome {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		web.Error(w, r, http.StatusMethodNotAllowed, "This method is not allowed here.")
		return web.Outcome{Reason: "oidc: method not allowed"}
	}
	switch path := r.URL.Path; {
	case path == CallbackPath:
		return h.callback(w, r)
	case path == SignedOutPath:
		return h.signedOut(w, r)
	case strings.HasPrefix(path, PathPrefix) && strings.HasSuffix(path, "/start"):
		return h.start(w, r, strings.TrimSuffix(strings.TrimPrefix(path, PathPrefix), "/start"))
	}
	web.Error(w, r, http.StatusNotFound, "There is no such page on this gateway.")
	return web.Outcome{Reason: "unknown gateway path"}
}

// redirectURI is the callback URL on the host the browser used.
func (h *Handler) redirectURI(r *http.Request) string {
	scheme, host := h.origin(r)
	return scheme + "://" + host + CallbackPath
}

func (h *Handler) start(w http.ResponseWriter, r *http.Request, name string) web.Outcome {
	p, ok := h.providers[name]
	if !ok {
		web.Error(w, r, http.StatusNotFound, "There is no such sign-in provider on this gateway.")
		return web.Outcome{Reason: "oidc start: unknown provider"}
	}
	q := r.URL.Query()
	next, _ := redirect.SafeNext(q.Get("rd"), redirect.Options{})
	var maxAge int64
	if v := q.Get("max_age"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || time.Duration(n)*time.Second > maxMaxAge {
			web.Error(w, r, http.StatusBadRequest, "The sign-in link is malformed.")
			return web.Outcome{Reason: "oidc start: bad max_age"}
		}
		maxAge = n
	}
	d, err := p.ready(r.Context())
	if err != nil {
		return h.unreachable(w, r, p, err)
	}
	fs := flowState{Provider: name, State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(),
		Next: next, RedirectURI: h.redirectURI(r), MaxAge: maxAge, ReAuth: q.Has("max_age"), Created: h.now().Unix()}
	cname, value, err := h.sealState(fs)
	if err != nil {
		return h.fail(w, r, http.StatusInternalServerError, "oidc start: seal flow cookie: "+err.Error(), "The sign-in could not be started.")
	}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(fs.Verifier), oauth2.SetAuthURLParam("nonce", fs.Nonce)}
	for k, v := range p.opts.AuthParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	if p.opts.Preset == PresetGoogle && len(p.opts.AllowedDomains) == 1 {
		opts = append(opts, oauth2.SetAuthURLParam("hd", p.opts.AllowedDomains[0])) // a hint; the hd claim is checked
	}
	if fs.ReAuth {
		opts = append(opts, oauth2.SetAuthURLParam("max_age", strconv.FormatInt(maxAge, 10)), oauth2.SetAuthURLParam("prompt", "login"))
	}
	http.SetCookie(w, &http.Cookie{Name: cname, Value: value, Path: "/", MaxAge: int(h.stateTTL / time.Second),
		Secure: h.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, p.oauth2Config(d, fs.RedirectURI).AuthCodeURL(fs.State, opts...), http.StatusFound)
	return web.Outcome{Reason: "oidc: sign-in started with " + name, Provider: name}
}

func (h *Handler) callback(w http.ResponseWriter, r *http.Request) (out web.Outcome) {
	provider := "" // once known, every outcome names it
	defer func() {
		if out.Provider == "" {
			out.Provider = provider
		}
	}()
	cb, err := parseCallback(r.URL.RawQuery)
	if err != nil {
		return h.fail(w, r, http.StatusBadRequest, "oidc callback: "+err.Error(), "The sign-in response is malformed. Start signing in again.")
	}
	if cb.State == "" {
		return h.fail(w, r, http.StatusBadRequest, "oidc callback: no state", "The sign-in response has no state. Start signing in again.")
	}
	fs, err := h.openState(r, cb.State)
	if err != nil {
		msg := "This sign-in was started in another browser, or it has expired. Start signing in again."
		if errors.Is(err, errFlowStale) {
			msg = "This sign-in took too long and has expired. Start signing in again."
		}
		return h.fail(w, r, http.StatusBadRequest, "oidc callback: "+err.Error(), msg)
	}
	h.clearState(w, cb.State)
	if !h.used.add(cb.State, time.Unix(fs.Created, 0).Add(h.stateTTL+DefaultClockSkew), h.now()) {
		return h.fail(w, r, http.StatusBadRequest, "oidc callback: "+errFlowReplayed.Error(), "This sign-in response was already used. Start signing in again.")
	}
	p, ok := h.providers[fs.Provider]
	if !ok {
		return h.fail(w, r, http.StatusBadRequest, "oidc callback: provider "+fs.Provider+" is no longer configured", "This sign-in provider is no longer offered. Start signing in again.")
	}
	provider = p.opts.Name
	label := p.opts.Label
	if cb.Error != "" {
		reason := fmt.Sprintf("oidc callback: %s answered error=%s (%s)", p.opts.Name, cb.Error, safeText(cb.ErrorDescription))
		if cb.Error == "access_denied" {
			return h.fail(w, r, http.StatusForbidden, reason, "The sign-in was cancelled or refused at "+label+".")
		}
		return h.fail(w, r, http.StatusBadGateway, reason, label+" could not sign you in (error: "+cb.Error+"). Try again, or ask an administrator.")
	}
	if cb.Code == "" {
		return h.fail(w, r, http.StatusBadRequest, "oidc callback: no code", "The sign-in response is malformed. Start signing in again.")
	}
	if fs.RedirectURI != h.redirectURI(r) {
		return h.fail(w, r, http.StatusBadRequest, "oidc callback: on another host than the sign-in started", "The sign-in response came to another address. Start signing in again.")
	}
	d, err := p.discover(r.Context())
	if err != nil {
		return h.unreachable(w, r, p, err)
	}
	tok, err := p.exchange(r.Context(), d, fs.RedirectURI, cb.Code, fs.Verifier)
	if errors.Is(err, ErrUnreachable) {
		return h.unreachable(w, r, p, err)
	}
	if err != nil {
		return h.fail(w, r, http.StatusBadGateway, "oidc callback: code exchange refused: "+safeText(err.Error()), label+" refused to complete the sign-in. Start signing in again.")
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return h.fail(w, r, http.StatusBadGateway, "oidc callback: token response has no id_token", label+" did not return an identity. Ask an administrator to check the provider's configuration.")
	}
	idt, err := p.verify(r.Context(), d, rawID)
	if errors.Is(err, ErrUnreachable) {
		return h.unreachable(w, r, p, err)
	}
	if err != nil {
		return h.fail(w, r, http.StatusBadGateway, "oidc callback: ID token refused: "+safeText(err.Error()), "The identity "+label+" returned could not be verified. Start signing in again.")
	}
	id, err := h.checkToken(p, idt, fs)
	if err != nil {
		var refused *refusal
		if errors.As(err, &refused) {
			return h.fail(w, r, refused.status, "oidc callback: "+err.Error(), refused.message)
		}
		return h.fail(w, r, http.StatusBadGateway, "oidc callback: "+err.Error(), "The identity "+label+" returned could not be verified. Start signing in again.")
	}
	s := h.sessions.New(id, r.Host)
	if err := h.sessions.Issue(w, s); err != nil {
		return h.fail(w, r, http.StatusInternalServerError, "oidc callback: issue session: "+err.Error(),
			"Your session could not be created (too many groups for the session cookie?). Ask an administrator to check the gateway log.")
	}
	h.keepTokens(r.Context(), p, s, idt.Subject, tok.RefreshToken, rawID)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, fs.Next, http.StatusSeeOther)
	return web.Outcome{Reason: "signed in with " + p.opts.Name, User: id.User, Kind: string(identity.Session)}
}

// refusal is a verified token that sekisho will not accept, with what the
// user is told.
type refusal struct {
	status  int
	message string
	cause   error
}

func (e *refusal) Error() string { return e.cause.Error() }

// idToken is what checkToken needs of a verified ID token.
type idToken interface {
	Claims(v any) error
}

// checkToken applies sekisho's own checks to a verified ID token: nonce,
// auth_time against the flow's max_age, the google hosted domain, and maps
// the claims to an identity.
func (h *Handler) checkToken(p *provider, idt idToken, fs flowState) (identity.Identity, error) {
	var raw jsonRaw
	if err := idt.Claims(&raw); err != nil {
		return identity.Identity{}, fmt.Errorf("read ID token claims: %w", err)
	}
	c, err := readClaims(raw, p.opts.GroupsClaim)
	if err != nil {
		return identity.Identity{}, err
	}
	if _, ok := emailAddress(c.Email); c.Email != "" && !ok {
		h.log.Warn("email claim is not one plain address: ignored, the user is provider:sub",
			"provider", p.opts.Name, "sub", safeText(c.Subject), "email", strconv.Quote(safeText(c.Email)))
	}
	if subtle.ConstantTimeCompare([]byte(c.Nonce), []byte(fs.Nonce)) != 1 {
		return identity.Identity{}, errors.New("ID token nonce does not match the sign-in flow's")
	}
	now := h.now()
	if fs.ReAuth {
		limit := time.Duration(fs.MaxAge)*time.Second + DefaultClockSkew
		if c.AuthTime.IsZero() || now.Sub(c.AuthTime) > limit {
			return identity.Identity{}, &refusal{status: http.StatusForbidden,
				message: p.opts.Label + " did not ask you to sign in again, and this app needs a recent sign-in. Sign out of " + p.opts.Label + " and try again.",
				cause:   fmt.Errorf("ID token auth_time %s is older than the max_age %ds asked", c.AuthTime.Format(time.RFC3339), fs.MaxAge)}
		}
	}
	if err := checkHostedDomain(p.opts, c); err != nil {
		return identity.Identity{}, &refusal{status: http.StatusForbidden,
			message: "This " + p.opts.Label + " account is not allowed here: sign in with an account of " + strings.Join(p.opts.AllowedDomains, ", ") + ".",
			cause:   err}
	}
	return identityFor(p.opts, c, now), nil
}

// jsonRaw collects the claims JSON as is.
type jsonRaw []byte

// UnmarshalJSON keeps a copy of the JSON.
func (j *jsonRaw) UnmarshalJSON(b []byte) error {
	*j = append((*j)[:0], b...)
	return nil
}

// fail answers with a user-facing message and records the internal reason.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, reason, message string) web.Outcome {
	h.log.Info("sign-in refused", "request_id", reqinfo.From(r.Context()).ID, "reason", reason)
	w.Header().Set("Cache-Control", "no-store")
	web.Error(w, r, status, message)
	return web.Outcome{Decision: "deny", Reason: reason}
}

// unreachable answers 503 naming the provider.
func (h *Handler) unreachable(w http.ResponseWriter, r *http.Request, p *provider, err error) web.Outcome {
	h.log.Warn("provider unreachable", "request_id", reqinfo.From(r.Context()).ID, "provider", p.opts.Name, "err", err)
	w.Header().Set("Retry-After", "30")
	web.Error(w, r, http.StatusServiceUnavailable,
		"Sign-in with "+p.opts.Label+" is unavailable: the gateway cannot reach it. Try again in a few minutes. If you are already signed in, your session keeps working.")
	return web.Outcome{Decision: "deny", Reason: "oidc: " + err.Error(), Provider: p.opts.Name}
}
