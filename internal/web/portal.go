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
	OIDC       Endpoint
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

// Serve dispatches on the normalised path (r.URL.Path) and says what it did.
func (p *Portal) Serve(w http.ResponseWriter, r *http.Request) Outcome {
	if p.OIDC != nil && p.OIDCPrefix != "" && strings.HasPrefix(r.URL.Path, p.OIDCPrefix) {
		return p.OIDC.Serve(w, r)
	}
	switch r.URL.Path {
	case "/.sekisho/healthz":
		secureHeaders(w)
		w.Header().Set("Content-Type", "application/json")
		if p.Health != nil {
			if err := p.Health(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				json.NewEncoder(w).Encode(struct {
					Status string `json:"status"`
					Reason string `json:"reason"`
				}{"unhealthy", err.Error()})
				return Outcome{Reason: "health check"}
			}
		}
		w.Write([]byte(`{"status":"ok"}` + "\n"))
		return Outcome{Reason: "health check"}
	case "/.sekisho/jwks.json":
		if p.JWKS == nil {
			return p.notFound(w, r)
		}
		p.JWKS.ServeHTTP(w, r)
		return Outcome{Reason: "key set"}
	case "/.sekisho/login":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return p.loginForm(w, r, http.StatusOK, "", "", "sign-in page")
		case http.MethodPost:
			return p.login(w, r)
		}
		return p.methodNotAllowed(w, r, "GET, POST")
	case "/.sekisho/logout":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return p.logoutForm(w, r)
		case http.MethodPost:
			return p.logout(w, r)
		}
		return p.methodNotAllowed(w, r, "GET, POST")
	}
	return p.notFound(w, r)
}

func (p *Portal) log() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

func (p *Portal) notFound(w http.ResponseWriter, r *http.Request) Outcome {
	Error(w, r, http.StatusNotFound, "There is no such page on this gateway.")
	return Outcome{Reason: "unknown gateway path"}
}

func (p *Portal) methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) Outcome {
	w.Header().Set("Allow", allow)
	Error(w, r, http.StatusMethodNotAllowed, "This method is not allowed here.")
	return Outcome{Reason: "method not allowed"}
}

// next returns the validated post-login target from the rd parameter.
func next(r *http.Request) string {
	n, _ := redirect.SafeNext(r.FormValue("rd"), redirect.Options{})
	return n
}

// loginForm renders the sign-in page (with msg, after a failed attempt)
// and returns reason as the outcome.
func (p *Portal) loginForm(w http.ResponseWriter, r *http.Request, status int, username, msg, reason string) Outcome {
	token, err := p.csrfToken(w, r)
	if err != nil {
		p.log().Error("csrf token", "err", err)
		Error(w, r, http.StatusInternalServerError, "The sign-in page could not be prepared.")
		return Outcome{Reason: reason + " (the page could not be prepared: " + err.Error() + ")"}
	}
	var providers []ProviderLink
	if p.Providers != nil {
		providers = p.Providers(next(r))
	}
	Render(w, r, status, "login.html", map[string]any{
		"Title": "Sign in", "CSRF": token, "Next": next(r), "Username": username,
		"Error": msg, "LocalEnabled": p.Local != nil, "Providers": providers,
	})
	return Outcome{Reason: reason}
}

func (p *Portal) login(w http.ResponseWriter, r *http.Request) Outcome {
	info := reqinfo.From(r.Context()) // the request's id and client address
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		Error(w, r, http.StatusBadRequest, "The sign-in form could not be read.")
		return Outcome{Reason: "sign-in form unreadable"}
	}
	if !p.csrfOK(r) {
		return p.loginForm(w, r, http.StatusForbidden, "", "Your sign-in form expired. Please try again.", "sign-in refused: CSRF check failed")
	}
	if p.Local == nil {
		return p.loginForm(w, r, http.StatusForbidden, "", "Password sign-in is not enabled.", "sign-in refused: local accounts are disabled")
	}
	username := strings.TrimSpace(r.PostFormValue("username"))
	id, err := p.Local.Login(r.Context(), username, r.PostFormValue("password"), info.ClientIP.String())
	if err != nil {
		var locked *local.LockedError
		if errors.As(err, &locked) {
			RetryAfter(w, locked.RetryAfter.Seconds())
			return p.loginForm(w, r, http.StatusTooManyRequests, username, locked.Message(), "sign-in refused: locked out after repeated failures")
		}
		if !errors.Is(err, local.ErrBadCredentials) {
			p.log().Error("sign-in", "request_id", info.ID, "err", err)
			// The accounts could not be read (the database is down): the
			// gateway is unavailable for new sign-ins, not broken.
			RetryAfter(w, 5)
			return p.loginForm(w, r, http.StatusServiceUnavailable, username, "Sign-in is not available right now. Try again in a moment.", "sign-in unavailable: "+err.Error())
		}
		return p.loginForm(w, r, http.StatusUnauthorized, username, "Wrong username or password.", "sign-in failed: "+err.Error())
	}
	s := p.Sessions.New(id, r.Host)
	if err := p.Sessions.Issue(w, s); err != nil {
		p.log().Error("issue session", "user", id.User, "err", err)
		Error(w, r, http.StatusInternalServerError, "Your session could not be created. Ask an administrator to check the gateway log.")
		return Outcome{Reason: "sign-in failed: session could not be issued"}
	}
	secureHeaders(w)
	http.Redirect(w, r, next(r), http.StatusSeeOther)
	return Outcome{Reason: "signed in", User: id.User, Kind: string(identity.Session), Provider: id.Provider}
}

func (p *Portal) logoutForm(w http.ResponseWriter, r *http.Request) Outcome {
	token, err := p.csrfToken(w, r)
	if err != nil {
		Error(w, r, http.StatusInternalServerError, "The sign-out page could not be prepared.")
		return Outcome{Reason: "sign-out page could not be prepared: " + err.Error()}
	}
	out := Outcome{Reason: "sign-out page"}
	if s, err := p.Sessions.Read(r); err == nil {
		out.User, out.Kind, out.Provider = s.User, string(identity.Session), s.Provider
	}
	Render(w, r, 0, "logout.html", map[string]any{"Title": "Sign out", "CSRF": token, "User": out.User, "Next": next(r), "SignIn": redirect.LoginURL(next(r))})
	return out
}

func (p *Portal) logout(w http.ResponseWriter, r *http.Request) Outcome {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil || !p.csrfOK(r) {
		Error(w, r, http.StatusForbidden, "Your sign-out form expired. Please try again.")
		return Outcome{Reason: "sign-out refused: CSRF check failed"}
	}
	var out Outcome
	if s, err := p.Sessions.Read(r); err == nil {
		out.User, out.Kind, out.Provider = s.User, string(identity.Session), s.Provider
		if p.Logout != nil {
			if err := p.Logout(r.Context(), s); err != nil {
				p.log().Error("revoke session", "user", s.User, "err", err)
				p.Sessions.Clear(w)
				Error(w, r, http.StatusInternalServerError, "Your cookie was removed, but the session could not be revoked everywhere. Ask an administrator to check the gateway log.")
				out.Reason = "sign-out: cookie cleared, revocation failed"
				return out
			}
		}
	}
	p.Sessions.Clear(w)
	out.Reason = "signed out"
	secureHeaders(w)
	if s, err := p.Sessions.Read(r); err == nil && p.EndSession != nil {
		// RP-initiated logout: end the provider's session too when it can.
		if u, err := p.EndSession(r, s); err != nil {
			p.log().Warn("end provider session", "provider", s.Provider, "err", err)
		} else if u != "" {
			http.Redirect(w, r, u, http.StatusSeeOther)
			out.Reason = "signed out here and at " + s.Provider
			return out
		}
	}
	target := "/.sekisho/login"
	if n := next(r); n != "/" {
		target = redirect.LoginURL(n) // "sign in as someone else" comes back to the page
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
	return out
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
