package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/store"
	"github.com/sekisho/sekisho/internal/web"
)

// Errors of Refresh and EndSession.
var (
	// ErrNotOIDC: the session was not made by one of this handler's providers.
	ErrNotOIDC = errors.New("session is not from a configured OIDC provider")
	// ErrNoRefreshToken: no refresh token is kept for the session (the
	// provider gave none, Options.Tokens is nil, or the row expired).
	ErrNoRefreshToken = errors.New("no refresh token for the session")
	// ErrRefreshRefused: the provider refused the refresh token (revoked,
	// user disabled): end the session.
	ErrRefreshRefused = errors.New("provider refused the refresh token")
)

// keptTokens is the sealed blob stored per session.
type keptTokens struct {
	RefreshToken string `json:"rt,omitempty"`
	IDToken      string `json:"it,omitempty"`
}

func tokensAD(sessionID string) []byte { return []byte("sekisho oidc tokens v1\x00" + sessionID) }

// keepTokens stores the refresh and ID tokens of a new session; a failure is
// logged, not fatal (the session works, without refresh and id_token_hint).
func (h *Handler) keepTokens(ctx context.Context, p *provider, s session.Session, subject, refreshToken, idToken string) {
	if h.tokens == nil {
		return
	}
	if err := h.putTokens(ctx, p, s, subject, keptTokens{RefreshToken: refreshToken, IDToken: idToken}); err != nil {
		h.log.Error("keep provider tokens", "provider", p.opts.Name, "err", err)
	}
}

func (h *Handler) putTokens(ctx context.Context, p *provider, s session.Session, subject string, kt keptTokens) error {
	pt, err := json.Marshal(kt)
	if err != nil {
		return err
	}
	return h.tokens.PutOIDCTokens(ctx, store.OIDCTokenRecord{
		SessionID: s.ID, Provider: p.opts.Name, Subject: subject,
		Sealed:    h.keyring.Seal(pt, tokensAD(s.ID)),
		ExpiresAt: s.IssuedAt.Add(h.lifetime),
	})
}

// loadTokens returns the session's kept tokens and the provider's subject;
// no row gives ErrNoRefreshToken.
func (h *Handler) loadTokens(ctx context.Context, s session.Session) (keptTokens, string, error) {
	if h.tokens == nil {
		return keptTokens{}, "", ErrNoRefreshToken
	}
	rec, err := h.tokens.GetOIDCTokens(ctx, s.ID)
	if errors.Is(err, store.ErrNotFound) {
		return keptTokens{}, "", ErrNoRefreshToken
	}
	if err != nil {
		return keptTokens{}, "", err
	}
	if rec.Provider != s.Provider {
		return keptTokens{}, "", fmt.Errorf("stored tokens of the session belong to provider %q, not %q", rec.Provider, s.Provider)
	}
	pt, err := h.keyring.Open(rec.Sealed, tokensAD(s.ID))
	if err != nil {
		return keptTokens{}, "", fmt.Errorf("stored tokens of the session: %w", err)
	}
	var kt keptTokens
	if err := json.Unmarshal(pt, &kt); err != nil {
		return keptTokens{}, "", fmt.Errorf("stored tokens of the session: %w", err)
	}
	return kt, rec.Subject, nil
}

// Refresh uses the session's refresh token to re-read the user's email and
// groups from the provider (a new ID token, when the provider returns one;
// its sub must be unchanged). It returns the updated session with the same
// ID, IssuedAt and AuthTime (a refresh is not a sign-in); the caller issues
// it. The new refresh token (rotation) replaces the stored one.
//
// Errors: ErrNotOIDC, ErrNoRefreshToken (keep the session as it is),
// ErrUnreachable (keep it: an outage must not sign everyone out),
// ErrRefreshRefused (end it: the provider no longer vouches for the user).
func (h *Handler) Refresh(ctx context.Context, s session.Session) (session.Session, error) {
	p, ok := h.providers[s.Provider]
	if !ok {
		return s, ErrNotOIDC
	}
	kt, subject, err := h.loadTokens(ctx, s)
	if err != nil {
		return s, err
	}
	if kt.RefreshToken == "" {
		return s, ErrNoRefreshToken
	}
	d, err := p.discover(ctx)
	if err != nil {
		return s, err
	}
	tok, err := p.refresh(ctx, d, kt.RefreshToken)
	if errors.Is(err, ErrUnreachable) {
		return s, err
	}
	if err != nil {
		if h.tokens != nil {
			h.tokens.DeleteOIDCTokens(ctx, s.ID)
		}
		return s, fmt.Errorf("%w: %s: %v", ErrRefreshRefused, p.opts.Name, safeText(err.Error()))
	}
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		idt, err := p.verify(ctx, d, raw)
		if errors.Is(err, ErrUnreachable) {
			return s, err // keys unavailable: an outage, not a refusal
		}
		if err != nil {
			return s, fmt.Errorf("%w: %s returned an ID token that does not verify: %v", ErrRefreshRefused, p.opts.Name, err)
		}
		var rawClaims jsonRaw
		if err := idt.Claims(&rawClaims); err != nil {
			return s, err
		}
		c, err := readClaims(rawClaims, p.opts.GroupsClaim)
		if err != nil {
			return s, fmt.Errorf("%w: %v", ErrRefreshRefused, err)
		}
		id := identityFor(p.opts, c, h.now())
		if id.User != s.User {
			return s, fmt.Errorf("%w: refreshed ID token names %q, the session is %q", ErrRefreshRefused, id.User, s.User)
		}
		if err := checkHostedDomain(p.opts, c); err != nil {
			return s, fmt.Errorf("%w: %v", ErrRefreshRefused, err)
		}
		s.Email, s.Groups = id.Email, id.Groups
		subject = c.Subject
		kt.IDToken = raw
	}
	if tok.RefreshToken != "" {
		kt.RefreshToken = tok.RefreshToken
	}
	if err := h.putTokens(ctx, p, s, subject, kt); err != nil {
		h.log.Error("keep refreshed provider tokens", "provider", p.opts.Name, "err", err)
	}
	return s, nil
}

// EndSession forgets the session's provider tokens and returns where to send
// the browser after sekisho has cleared and revoked its own session: the
// provider's end_session_endpoint (with id_token_hint, client_id and
// post_logout_redirect_uri scheme://host/.sekisho/oidc/signed-out) when
// discovery lists one, otherwise sekisho's signed-out page saying that the
// user is still signed in at the provider. r is the logout request (for the
// host). It returns ErrNotOIDC for sessions of other providers (local).
// It never fails because the provider is down: that gives the local page,
// saying that the provider cannot be reached, so the browser is not sent to
// a dead provider.
func (h *Handler) EndSession(r *http.Request, s session.Session) (string, error) {
	p, ok := h.providers[s.Provider]
	if !ok {
		return "", ErrNotOIDC
	}
	ctx := r.Context()
	kt, _, err := h.loadTokens(ctx, s)
	if err != nil && !errors.Is(err, ErrNoRefreshToken) {
		h.log.Warn("read provider tokens for logout", "provider", p.opts.Name, "err", err)
	}
	if h.tokens != nil {
		if err := h.tokens.DeleteOIDCTokens(ctx, s.ID); err != nil {
			h.log.Warn("delete provider tokens", "provider", p.opts.Name, "err", err)
		}
	}
	local := SignedOutPath + "?provider=" + url.QueryEscape(p.opts.Name)
	d, err := p.ready(ctx)
	if err != nil {
		return local + "&unreachable=1", nil
	}
	if d.endSession == "" {
		return local, nil
	}
	u, err := url.Parse(d.endSession)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		h.log.Warn("bad end_session_endpoint", "provider", p.opts.Name, "endpoint", d.endSession)
		return local, nil
	}
	scheme, host := h.origin(r)
	q := u.Query()
	if kt.IDToken != "" {
		q.Set("id_token_hint", kt.IDToken)
	}
	q.Set("client_id", p.opts.ClientID)
	q.Set("post_logout_redirect_uri", scheme+"://"+host+SignedOutPath)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// signedOut is the page after sign-out. With ?provider=NAME it says the user
// is still signed in at that provider (no RP-initiated logout).
func (h *Handler) signedOut(w http.ResponseWriter, r *http.Request) web.Outcome {
	msg := "You are signed out of sekisho and of your sign-in provider."
	q := r.URL.Query()
	if p, ok := h.providers[q.Get("provider")]; ok {
		msg = "You are signed out of sekisho only. You are still signed in at " + p.opts.Label +
			", which does not support signing out from here: sign out there too, or close the browser, before someone else uses this computer."
		if q.Get("unreachable") == "1" {
			msg = "You are signed out of sekisho only. " + p.opts.Label + " cannot be reached right now, so you are still signed in there: " +
				"sign out there later, or close the browser, before someone else uses this computer."
		}
	}
	web.Render(w, r, 0, "error.html", map[string]any{"Title": "Signed out", "Message": msg})
	return web.Outcome{Reason: "signed-out page"}
}

// ReAuthURL returns the path that sends the browser through provider again,
// demanding a sign-in within maxAge (max_age and prompt=login), and back to
// next. ok is false if provider is not one of this handler's (a local
// account: send it to the password form instead).
func (h *Handler) ReAuthURL(provider, next string, maxAge time.Duration) (string, bool) {
	if _, ok := h.providers[provider]; !ok {
		return "", false
	}
	secs := int64(maxAge / time.Second)
	return StartURL(provider, next) + sep(next) + "max_age=" + strconv.FormatInt(max(secs, 0), 10), true
}

func sep(next string) string {
	if next == "" {
		return "?"
	}
	return "&"
}

// NeedsReAuth reports whether id signed in longer ago than maxAge (a route's
// max_age) at now; maxAge <= 0 means the route asks nothing. A zero
// AuthTime always needs re-authentication.
func NeedsReAuth(id identity.Identity, maxAge time.Duration, now time.Time) bool {
	if maxAge <= 0 {
		return false
	}
	return id.AuthTime.IsZero() || now.Sub(id.AuthTime) > maxAge
}
