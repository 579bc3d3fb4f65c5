package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/sekisho/sekisho/internal/authn/local"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/redirect"
	"github.com/sekisho/sekisho/internal/reqinfo"
	"github.com/sekisho/sekisho/internal/session"
)

// PasswordLogin checks a user name and password (local accounts).
// A *local.LockedError means "locked out, try later"; any other error means
// the credentials were refused.
type PasswordLogin interface {
	Login(ctx context.Context, username, password, clientIP string) (identity.Identity, error)
}

// Portal serves sekisho's own endpoints under /.sekisho/ on every host.
type Portal struct {
	// Sessions issues and reads the session cookie. Required.
	Sessions *session.Codec
	// Local signs in with local accounts; nil hides the password form.
	Local PasswordLogin
	// Logout revokes a session everywhere (this replica and the store).
	// nil: the cookie is only cleared.
	Logout func(ctx context.Context, s session.Session) error
	// JWKS serves the assertion key set. nil: 404.
	JWKS http.Handler
	// OIDC serves sign-in with OpenID Connect providers: requests under
	// OIDCPrefix go to it. nil: none.
	OIDC       http.Handler
	OIDCPrefix string
	// Providers lists the sign-in buttons for the page, each starting a
	// sign-in that returns to next. nil: none.
	Providers func(next string) []ProviderLink
	// EndSession returns the provider's logout URL for a session from an
	// OIDC provider ("" when there is none: local sign-out only). nil: none.
	EndSession func(r *http.Request, s session.Session) (string, error)
	// SecureCookies marks the CSRF cookie Secure with the __Host- prefix.
	SecureCookies bool
	// Logger receives internal causes. nil: slog.Default().
	Logger *slog.Logger
	// Health reports whether this replica should get traffic: while it
	// returns an error, /.sekisho/healthz answers 503 with the error's
	// message as the reason, so a load balancer moves traffic away (the
	// audit log cannot be written). Anyone may ask healthz: the message
	// must name no internal detail. nil: always healthy.
	Health func() error
}

// ProviderLink is a sign-in button on the sign-in page.
type ProviderLink struct{ Label, URL string }

// Prefix is the reserved path prefix; nothing under it reaches an upstream.
const Prefix = "/.sekisho/"

// maxFormBytes bounds a sign-in form body.
const maxFormBytes = 16 << 10

// ServeHTTP dispatches on the normalised path (r.URL.Path).
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	info := reqinfo.From(r.Context())
	info.Decision = "gateway"
	if p.OIDC != nil && p.OIDCPrefix != "" && strings.HasPrefix(r.URL.Path, p.OIDCPrefix) {
		p.OIDC.ServeHTTP(w, r)
		return
	}
	switch r.URL.Path {
	case "/.sekisho/healthz":
		secureHeaders(w)
		w.Header().Set("Content-Type", "application/json")
		info.Reason = "health check"
		if p.Health != nil {
			if err := p.Health(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				json.NewEncoder(w).Encode(struct {
					Status string `json:"status"`
					Reason string `json:"reason"`
				}{"unhealthy", err.Error()})
				return
			}
		}
		w.Write([]byte(`{"status":"ok"}` + "\n"))
	case "/.sekisho/jwks.json":
		if p.JWKS == nil {
			p.notFound(w, r)
			return
		}
		info.Reason = "key set"
		p.JWKS.ServeHTTP(w, r)
	case "/.sekisho/login":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			p.loginForm(w, r, http.StatusOK, "", "")
		case http.MethodPost:
			p.login(w, r)
		default:
			p.methodNotAllowed(w, r, "GET, POST")
		}
	case "/.sekisho/logout":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			p.logoutForm(w, r)
		case http.MethodPost:
			p.logout(w, r)
		default:
			p.methodNotAllowed(w, r, "GET, POST")
		}
	default:
		p.notFound(w, r)
	}
}

func (p *Portal) log() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

func (p *Portal) notFound(w http.ResponseWriter, r *http.Request) {
	reqinfo.From(r.Context()).Reason = "unknown gateway path"
	Error(w, r, http.StatusNotFound, "There is no such page on this gateway.")
}

func (p *Portal) methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	Error(w, r, http.StatusMethodNotAllowed, "This method is not allowed here.")
}

// next returns the validated post-login target from the rd parameter.
func next(r *http.Request) string {
	n, _ := redirect.SafeNext(r.FormValue("rd"), redirect.Options{})
	return n
}

func (p *Portal) loginForm(w http.ResponseWriter, r *http.Request, status int, username, msg string) {
	token, err := p.csrfToken(w, r)
	if err != nil {
		p.log().Error("csrf token", "err", err)
		Error(w, r, http.StatusInternalServerError, "The sign-in page could not be prepared.")
		return
	}
	if info := reqinfo.From(r.Context()); info.Reason == "" {
		info.Reason = "sign-in page"
	}
	var providers []ProviderLink
	if p.Providers != nil {
		providers = p.Providers(next(r))
	}
	Render(w, r, status, "login.html", map[string]any{
		"Title": "Sign in", "CSRF": token, "Next": next(r), "Username": username,
		"Error": msg, "LocalEnabled": p.Local != nil, "Providers": providers,
	})
}

func (p *Portal) login(w http.ResponseWriter, r *http.Request) {
	info := reqinfo.From(r.Context())
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		info.Reason = "sign-in form unreadable"
		Error(w, r, http.StatusBadRequest, "The sign-in form could not be read.")
		return
	}
	if !p.csrfOK(r) {
		info.Reason = "sign-in refused: CSRF check failed"
		p.loginForm(w, r, http.StatusForbidden, "", "Your sign-in form expired. Please try again.")
		return
	}
	if p.Local == nil {
		info.Reason = "sign-in refused: local accounts are disabled"
		p.loginForm(w, r, http.StatusForbidden, "", "Password sign-in is not enabled.")
		return
	}
	username := strings.TrimSpace(r.PostFormValue("username"))
	id, err := p.Local.Login(r.Context(), username, r.PostFormValue("password"), info.ClientIP.String())
	if err != nil {
		var locked *local.LockedError
		if errors.As(err, &locked) {
			info.Reason = "sign-in refused: locked out after repeated failures"
			RetryAfter(w, locked.RetryAfter.Seconds())
			p.loginForm(w, r, http.StatusTooManyRequests, username, locked.Message())
			return
		}
		if !errors.Is(err, local.ErrBadCredentials) {
			info.Reason = "sign-in unavailable: " + err.Error()
			p.log().Error("sign-in", "request_id", info.ID, "err", err)
			// The accounts could not be read (the database is down): the
			// gateway is unavailable for new sign-ins, not broken.
			RetryAfter(w, 5)
			p.loginForm(w, r, http.StatusServiceUnavailable, username, "Sign-in is not available right now. Try again in a moment.")
			return
		}
		info.Reason = "sign-in failed: " + err.Error()
		p.loginForm(w, r, http.StatusUnauthorized, username, "Wrong username or password.")
		return
	}
	s := p.Sessions.New(id, r.Host)
	if err := p.Sessions.Issue(w, s); err != nil {
		info.Reason = "sign-in failed: session could not be issued"
		p.log().Error("issue session", "user", id.User, "err", err)
		Error(w, r, http.StatusInternalServerError, "Your session could not be created. Ask an administrator to check the gateway log.")
		return
	}
	info.User, info.Kind, info.Provider = id.User, string(identity.Session), id.Provider
	info.Reason = "signed in"
	secureHeaders(w)
	http.Redirect(w, r, next(r), http.StatusSeeOther)
}

func (p *Portal) logoutForm(w http.ResponseWriter, r *http.Request) {
	token, err := p.csrfToken(w, r)
	if err != nil {
		Error(w, r, http.StatusInternalServerError, "The sign-out page could not be prepared.")
		return
	}
	info := reqinfo.From(r.Context())
	user := ""
	if s, err := p.Sessions.Read(r); err == nil {
		user = s.User
		info.User, info.Kind, info.Provider = s.User, string(identity.Session), s.Provider
	}
	info.Reason = "sign-out page"
	Render(w, r, 0, "logout.html", map[string]any{"Title": "Sign out", "CSRF": token, "User": user, "Next": next(r), "SignIn": redirect.LoginURL(next(r))})
}

func (p *Portal) logout(w http.ResponseWriter, r *http.Request) {
	info := reqinfo.From(r.Context())
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil || !p.csrfOK(r) {
		info.Reason = "sign-out refused: CSRF check failed"
		Error(w, r, http.StatusForbidden, "Your sign-out form expired. Please try again.")
		return
	}
	if s, err := p.Sessions.Read(r); err == nil {
		info.User, info.Kind, info.Provider = s.User, string(identity.Session), s.Provider
		if p.Logout != nil {
			if err := p.Logout(r.Context(), s); err != nil {
				p.log().Error("revoke session", "user", s.User, "err", err)
				info.Reason = "sign-out: cookie cleared, revocation failed"
				p.Sessions.Clear(w)
				Error(w, r, http.StatusInternalServerError, "Your cookie was removed, but the session could not be revoked everywhere. Ask an administrator to check the gateway log.")
				return
			}
		}
	}
	p.Sessions.Clear(w)
	info.Reason = "signed out"
	secureHeaders(w)
	if s, err := p.Sessions.Read(r); err == nil && p.EndSession != nil {
		// RP-initiated logout: end the provider's session too when it can.
		if u, err := p.EndSession(r, s); err != nil {
			p.log().Warn("end provider session", "provider", s.Provider, "err", err)
		} else if u != "" {
			info.Reason = "signed out here and at " + s.Provider
			http.Redirect(w, r, u, http.StatusSeeOther)
			return
		}
	}
	target := "/.sekisho/login"
	if n := next(r); n != "/" {
		target = redirect.LoginURL(n) // "sign in as someone else" comes back to the page
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// CSRF protection for the sign-in and sign-out forms: a random token in a
// cookie that must equal the form's hidden field (double submit), plus a
// refusal of cross-site form posts (Origin / Sec-Fetch-Site). Login CSRF
// would otherwise let another site sign a victim into the attacker's account.

func (p *Portal) csrfName() string {
	if p.SecureCookies {
		return "__Host-sekisho-csrf"
	}
	return "sekisho-csrf"
}

func (p *Portal) csrfToken(w http.ResponseWriter, r *http.Request) (string, error) {
	if c, err := r.Cookie(p.csrfName()); err == nil && len(c.Value) == 43 {
		if _, err := base64.RawURLEncoding.DecodeString(c.Value); err == nil {
			return c.Value, nil
		}
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	t := base64.RawURLEncoding.EncodeToString(b[:])
	http.SetCookie(w, &http.Cookie{Name: p.csrfName(), Value: t, Path: "/", HttpOnly: true, Secure: p.SecureCookies, SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	return t, nil
}

func (p *Portal) csrfOK(r *http.Request) bool {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		if !sameOrigin(o, r) {
			return false
		}
	}
	c, err := r.Cookie(p.csrfName())
	form := r.PostFormValue("csrf")
	if err != nil || c.Value == "" || form == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(c.Value), []byte(form)) == 1
}

// sameOrigin compares an Origin header with the request's own host.
func sameOrigin(origin string, r *http.Request) bool {
	_, rest, ok := strings.Cut(origin, "://")
	return ok && strings.EqualFold(rest, r.Host)
}
