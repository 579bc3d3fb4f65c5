package web

import "net/http"

// Outcome is what one of sekisho's own endpoints (sign-in, sign-out,
// health, the key set, OIDC) did with a request, for its audit line: the
// handlers return it rather than write it into the request's context.
type Outcome struct {
	// Decision is "gateway" (the default when "") or "deny" (a refused
	// sign-in).
	Decision string
	// Reason says what happened ("signed in", "sign-in refused: ...").
	Reason string
	// User, Kind and Provider name the identity involved, once known.
	User, Kind, Provider string
}

// Endpoint is one of sekisho's own endpoints: it answers the request and
// says what it did.
type Endpoint interface {
	Serve(w http.ResponseWriter, r *http.Request) Outcome
}

// EndpointFunc is a function that is an Endpoint.
type EndpointFunc func(w http.ResponseWriter, r *http.Request) Outcome

// Serve implements Endpoint.
func (f EndpointFunc) Serve(w http.ResponseWriter, r *http.Request) Outcome { return f(w, r) }
