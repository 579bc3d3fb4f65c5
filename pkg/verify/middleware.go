package verify

import (
	"context"
	"net/http"
)

type claimsKey struct{}

// Middleware verifies the X-Sekisho-Assertion header of each request and
// calls next with the claims in the request context (see ClaimsFromContext).
// A request without exactly one valid assertion gets 401 and never reaches
// next; the reason is not told to the client.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vals := r.Header.Values(HeaderName)
		if len(vals) != 1 {
			http.Error(w, "missing or invalid sekisho assertion", http.StatusUnauthorized)
			return
		}
		c, err := v.Verify(r.Context(), vals[0])
		if err != nil {
			http.Error(w, "missing or invalid sekisho assertion", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), c)))
	})
}

// NewContext returns ctx carrying c, as Middleware stores it.
func NewContext(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// ClaimsFromContext returns the claims Middleware verified for this request,
// or nil and false if there are none.
func ClaimsFromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok && c != nil
}
