// Package whoami is the built-in upstream of the quickstart: a page that
// shows what an app behind sekisho receives — the request line, the
// X-Sekisho-* identity headers, the forwarding headers, and whether the
// signed assertion verifies, with its claims.
//
// The server runs it on a loopback listener like any other upstream, so it
// sees exactly what a real app sees. It answers every path and method.
// It never shows the value of a Cookie, Authorization or
// Proxy-Authorization header, nor of any header whose name suggests a
// credential; other headers are listed by name only.
package whoami

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/sekisho/sekisho/pkg/verify"
)

// Options configures the whoami handler.
type Options struct {
	// Verifier checks the X-Sekisho-Assertion header. Nil means the page
	// says "not checked". whoami may sit behind any route, so build the
	// Verifier with verify.Options.InsecureAnyAudience: the page then shows
	// which route (aud) the token was minted for. A Verifier with a fixed
	// Audience also works and reports a token for another route as invalid.
	Verifier *verify.Verifier
	// Now is the clock used to show how long the assertion has left. Nil
	// means time.Now.
	Now func() time.Time
}

// New returns the whoami handler.
func New(opts Options) http.Handler {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &handler{opts: opts}
}

type handler struct{ opts Options }

// Assertion status values.
const (
	statusValid      = "valid"
	statusInvalid    = "invalid"
	statusMissing    = "missing"
	statusNotChecked = "not checked"
)

// previewEnds is how many characters of each end of the token are shown:
// the start is the header, the end tells two tokens apart.
const previewEnds = 10

type header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type claimsView struct {
	Subject   string   `json:"sub"`
	Email     string   `json:"email"`
	Groups    []string `json:"groups"`
	Kind      string   `json:"sekisho_kind"`
	Provider  string   `json:"provider"`
	Issuer    string   `json:"iss"`
	Audience  string   `json:"aud"`
	IssuedAt  string   `json:"iat"`
	Expiry    string   `json:"exp"`
	ExpiresIn string   `json:"expires_in"`
}

type assertionView struct {
	Status string      `json:"status"`
	Error  string      `json:"error,omitempty"`
	Claims *claimsView `json:"claims,omitempty"`
	// Mismatches lists identity headers that disagree with the claims.
	Mismatches []string `json:"mismatches,omitempty"`
}

type view struct {
	Method    string        `json:"method"`
	Host      string        `json:"host"`
	Path      string        `json:"path"`
	RequestID string        `json:"request_id"`
	Identity  []header      `json:"identity_headers"`
	Forwarded []header      `json:"forwarding_headers"`
	Other     []string      `json:"other_headers"`
	Assertion assertionView `json:"assertion"`
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	v := h.build(r)
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	if wantsJSON(r) {
		hd.Set("Content-Type", "application/json")
		if r.Method == http.MethodHead {
			return
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(v)
		return
	}
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	if r.Method == http.MethodHead {
		return
	}
	if err := page.Execute(w, v); err != nil {
		// Headers are sent; all that is left is to stop writing.
		return
	}
}

func (h *handler) build(r *http.Request) view {
	v := view{
		Method:    r.Method,
		Host:      r.Host,
		Path:      r.URL.Path,
		RequestID: r.Header.Get("X-Request-Id"),
		Identity:  []header{},
		Forwarded: []header{},
		Other:     []string{},
	}
	names := make([]string, 0, len(r.Header))
	for name := range r.Header {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		lower := strings.ToLower(name)
		switch {
		case lower == strings.ToLower(verify.HeaderName):
			for _, val := range r.Header.Values(name) {
				v.Identity = append(v.Identity, header{name, preview(val)})
			}
		case strings.HasPrefix(lower, "x-sekisho-"):
			v.Identity = append(v.Identity, shown(name, r.Header.Values(name))...)
		case strings.HasPrefix(lower, "x-forwarded-"), lower == "forwarded", lower == "x-real-ip", lower == "x-request-id":
			v.Forwarded = append(v.Forwarded, shown(name, r.Header.Values(name))...)
		default:
			v.Other = append(v.Other, name)
		}
	}
	v.Assertion = h.check(r)
	return v
}

// shown returns the header's values, redacted if its name suggests a
// credential.
func shown(name string, values []string) []header {
	out := make([]header, 0, len(values))
	for _, val := range values {
		if sensitive(name) {
			val = "[redacted]"
		}
		out = append(out, header{name, val})
	}
	return out
}

// sensitive reports whether a header name suggests it carries a credential.
func sensitive(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"cookie", "authorization", "token", "secret", "password", "api-key", "apikey"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// preview shortens a token for display: enough to tell two apart, not
// enough to replay.
func preview(tok string) string {
	if len(tok) <= 4*previewEnds {
		return fmt.Sprintf("[%d bytes]", len(tok))
	}
	return fmt.Sprintf("%s…%s (%d bytes)", tok[:previewEnds], tok[len(tok)-previewEnds:], len(tok))
}

func (h *handler) check(r *http.Request) assertionView {
	vals := r.Header.Values(verify.HeaderName)
	switch {
	case len(vals) == 0:
		return assertionView{Status: statusMissing}
	case h.opts.Verifier == nil:
		return assertionView{Status: statusNotChecked}
	case len(vals) > 1:
		return assertionView{Status: statusInvalid, Error: fmt.Sprintf("%d %s headers", len(vals), verify.HeaderName)}
	}
	c, err := h.opts.Verifier.Verify(r.Context(), vals[0])
	if err != nil {
		return assertionView{Status: statusInvalid, Error: err.Error()}
	}
	now := h.opts.Now()
	av := assertionView{
		Status: statusValid,
		Claims: &claimsView{
			Subject:   c.Subject,
			Email:     c.Email,
			Groups:    c.Groups,
			Kind:      c.Kind,
			Provider:  c.Provider,
			Issuer:    c.Issuer,
			Audience:  c.Audience,
			IssuedAt:  c.IssuedAt.UTC().Format(time.RFC3339),
			Expiry:    c.Expiry.UTC().Format(time.RFC3339),
			ExpiresIn: c.Expiry.Sub(now).Round(time.Second).String(),
		},
	}
	if u := r.Header.Get("X-Sekisho-User"); u != c.Subject {
		av.Mismatches = append(av.Mismatches, fmt.Sprintf("X-Sekisho-User is %q but sub is %q", u, c.Subject))
	}
	if e := r.Header.Get("X-Sekisho-Email"); e != c.Email {
		av.Mismatches = append(av.Mismatches, fmt.Sprintf("X-Sekisho-Email is %q but email is %q", e, c.Email))
	}
	return av
}

// wantsJSON reports whether the client asked for JSON rather than HTML.
func wantsJSON(r *http.Request) bool {
	accept := strings.ToLower(strings.Join(r.Header.Values("Accept"), ","))
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html")
}
