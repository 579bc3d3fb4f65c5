// Package reqinfo carries what the gateway learned about a request (its id,
// the client's address) through the context, so error pages, audit lines and
// upstream errors all name the same request id.
//
// Only the pipeline writes an Info: it is the pipeline's record of the
// request for the audit line. Authenticators get the route as an
// authn.Request and return their findings as an authn.Result; sekisho's own
// endpoints return a web.Outcome; handlers read the request's id and client
// address from here, and write nothing.
package reqinfo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
)

// Info is set once per request by the pipeline.
type Info struct {
	// ID is the request id sent to the client (X-Request-Id), the upstream
	// and the audit log.
	ID string
	// ClientIP is the client's address after trusted-proxy resolution.
	ClientIP netip.Addr
	// Route is the name of the matched route, "" before routing.
	Route string
	// Path is the normalised path, "" if the path was refused.
	Path string
	// User, Kind and Provider name the identity, once known.
	User, Kind, Provider string
	// Rule names the security rule that decided ("100 office only"), ""
	// when none did; RuleAction is what it did (deny, throttle, ...), and
	// Preview is set when a preview rule matched (it logged, not acted).
	Rule, RuleAction string
	Preview          bool
	// RuleNotes are what rules that did not answer the request said (an
	// allow rule, preview hits); the audit line appends them to Reason.
	RuleNotes string
	// Decision and Reason are what the gateway decided, for the audit line.
	// Handlers of sekisho's own endpoints (sign-in) fill them in too.
	Decision, Reason string
}

type key struct{}

// With returns ctx carrying info.
func With(ctx context.Context, info *Info) context.Context {
	return context.WithValue(ctx, key{}, info)
}

// IsKey reports whether k is the context key With stores an Info under. A
// context type of its own that carries the request's Info (to save a
// context.WithValue per request) answers Value(k) for it.
func IsKey(k any) bool {
	_, ok := k.(key)
	return ok
}

// Lookup returns the request's Info and whether one was set.
func Lookup(ctx context.Context) (*Info, bool) {
	i, ok := ctx.Value(key{}).(*Info)
	return i, ok
}

// From returns the request's Info, or an empty one if none was set.
func From(ctx context.Context) *Info {
	if i, ok := ctx.Value(key{}).(*Info); ok {
		return i
	}
	return &Info{}
}

// NewID returns a random 16-hex-digit request id.
func NewID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
