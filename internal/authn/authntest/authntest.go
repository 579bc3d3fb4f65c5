// Package authntest calls authenticators as the pipeline does, for tests.
package authntest

import (
	"context"
	"net/http"

	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/identity"
)

// Call is what the pipeline tells an authenticator (the route) and, once
// Authenticate ran, what the authenticator reported back.
type Call struct {
	authn.Request
	// CredentialHeader is the result's, set by Authenticate.
	CredentialHeader string
}

type callKey struct{}

// With returns r carrying c, for Authenticate.
func With(r *http.Request, c *Call) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), callKey{}, c))
}

// Authenticate runs a on r with the Call r carries (With), records the
// credential header in it, and returns the identity.
func Authenticate(a authn.Authenticator, w http.ResponseWriter, r *http.Request) (identity.Identity, error) {
	c, _ := r.Context().Value(callKey{}).(*Call)
	if c == nil {
		c = &Call{}
	}
	res, err := a.Authenticate(w, r, c.Request)
	c.CredentialHeader = res.CredentialHeader
	return res.Identity, err
}
