// Package authn finds who made a request. Each credential kind (session
// cookie, API key, bearer token, IAP assertion) is an Authenticator, and
// Chain tries them in order.
package authn

import (
	"errors"
	"net/http"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/session"
)

// Sessions authenticates by the sealed session cookie. A stale-but-valid
// session gets a refreshed cookie (sliding idle timeout), written to w,
// bound to the same host or sign-in domain as before. A cookie bound to
// another host than the request's (session.ErrWrongHost: replayed from
// another app of the gateway) is a refused credential, so the browser is
// sent to sign in on this host.
type Sessions struct {
	Codec *session.Codec
	// Refresh, when set, is told of each session whose cookie is refreshed,
	// so the provider's tokens can be refreshed too. It must not block.
	Refresh func(session.Session)
}

// Authenticate returns the session's identity, the anonymous identity when
// there is no cookie, or an error saying why a cookie was refused.
func (s *Sessions) Authenticate(w http.ResponseWriter, r *http.Request, _ Request) (Result, error) {
	sess, err := s.Codec.Read(r)
	if errors.Is(err, session.ErrNoSession) {
		return Result{}, nil
	}
	if err != nil {
		return Result{}, err
	}
	if s.Codec.NeedsRefresh(sess) {
		if fresh, err := s.Codec.Refresh(w, sess); err == nil {
			sess = fresh
		}
		if s.Refresh != nil && sess.Provider != "local" {
			s.Refresh(sess)
		}
	}
	return Result{Identity: sess.Identity()}, nil
}

// Request is what an authenticator is told of a request besides the HTTP
// request itself: what the pipeline decided before authenticating.
type Request struct {
	// Route is the name of the route the request was matched to; the
	// routes decide where a credential may be read (auth.authorization_header)
	// and which bearer issuers count.
	Route string
}

// Result is what an authenticator found.
type Result struct {
	// Identity is who made the request; the zero value: anonymous.
	Identity identity.Identity
	// CredentialHeader names the request header that carried one of
	// sekisho's own credentials (an API key, a bearer token, an IAP
	// assertion), which the pipeline removes before forwarding; set also
	// when the credential was refused. "": none.
	CredentialHeader string
}

// Authenticator finds who made a request: the anonymous identity and no
// error when the request carries none of its credentials, an error when it
// carries one that is refused. It may write headers (a refreshed session
// cookie).
type Authenticator interface {
	Authenticate(w http.ResponseWriter, r *http.Request, in Request) (Result, error)
}

// Chain tries each authenticator in order. The first refused credential
// ends the search with its error (a request that presents a bad API key is
// refused, even if it also has a session cookie); the first identity found
// wins; otherwise the caller is anonymous. Explicit credentials (API keys,
// bearer tokens) belong before the session cookie.
type Chain []Authenticator

// Authenticate implements Authenticator.
func (c Chain) Authenticate(w http.ResponseWriter, r *http.Request, in Request) (Result, error) {
	for _, a := range c {
		res, err := a.Authenticate(w, r, in)
		if err != nil {
			return Result{CredentialHeader: res.CredentialHeader}, err
		}
		if res.Identity.Authenticated() {
			return res, nil
		}
	}
	return Result{}, nil
}
