package oidc

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// flowState is what the flow cookie carries between start and callback.
type flowState struct {
	Provider    string `json:"p"`
	State       string `json:"s"`
	Nonce       string `json:"n"`
	Verifier    string `json:"v"`
	Next        string `json:"r"`
	RedirectURI string `json:"u"`
	MaxAge      int64  `json:"m,omitempty"` // seconds, when ReAuth
	ReAuth      bool   `json:"a,omitempty"` // the route asked for a sign-in within MaxAge
	Created     int64  `json:"t"`           // Unix seconds
}

// stateLen is the length of a state: 32 random bytes, base64url.
const stateLen = 43

// maxCallbackQuery bounds the callback's query string.
const maxCallbackQuery = 8 << 10

// randomToken returns 32 random bytes, base64url without padding.
func randomToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// validState reports whether s has the shape randomToken gives.
func validState(s string) bool {
	if len(s) != stateLen {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil && len(b) == 32
}

// cookieName is the flow cookie for state s: one cookie per flow, so two
// tabs can sign in at once. s must be a validState.
func (h *Handler) cookieName(state string) string {
	prefix := "sekisho-oidc-"
	if h.secure {
		prefix = "__Host-sekisho-oidc-"
	}
	return prefix + state[:12]
}

func stateAD(name string) []byte { return []byte("sekisho oidc flow v1\x00" + name) }

// sealState returns the cookie value for fs.
func (h *Handler) sealState(fs flowState) (name, value string, err error) {
	pt, err := json.Marshal(fs)
	if err != nil {
		return "", "", err
	}
	name = h.cookieName(fs.State)
	return name, base64.RawURLEncoding.EncodeToString(h.keyring.Seal(pt, stateAD(name))), nil
}

// Reasons a callback's state is refused.
var (
	errNoFlow       = errors.New("no sign-in flow cookie for this state in this browser")
	errFlowInvalid  = errors.New("flow cookie is malformed or forged")
	errFlowMismatch = errors.New("flow cookie belongs to another state")
	errFlowStale    = errors.New("sign-in flow is older than the state lifetime")
	errFlowReplayed = errors.New("state was already used")
)

// openState finds and checks the flow cookie for the callback's state: the
// cookie must open with the keyring (bound to its name), carry exactly this
// state, and be younger than the state lifetime.
func (h *Handler) openState(r *http.Request, state string) (flowState, error) {
	name := h.cookieName(state)
	var value string
	n := 0
	for _, c := range r.Cookies() {
		if c.Name == name {
			value, n = c.Value, n+1
		}
	}
	switch {
	case n == 0:
		return flowState{}, errNoFlow
	case n > 1:
		return flowState{}, fmt.Errorf("%w: %d cookies named %s", errFlowInvalid, n, name)
	}
	fs, err := h.decodeState(name, value)
	if err != nil {
		return flowState{}, err
	}
	if subtle.ConstantTimeCompare([]byte(fs.State), []byte(state)) != 1 {
		return flowState{}, errFlowMismatch
	}
	age := h.now().Sub(time.Unix(fs.Created, 0))
	if age > h.stateTTL || age < -DefaultClockSkew {
		return flowState{}, fmt.Errorf("%w: started %s ago", errFlowStale, age.Truncate(time.Second))
	}
	return fs, nil
}

// decodeState opens a flow cookie value sealed under name.
func (h *Handler) decodeState(name, value string) (flowState, error) {
	if len(value) > 2048 {
		return flowState{}, fmt.Errorf("%w: %d bytes", errFlowInvalid, len(value))
	}
	sealed, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil {
		return flowState{}, fmt.Errorf("%w: not base64url", errFlowInvalid)
	}
	pt, err := h.keyring.Open(sealed, stateAD(name))
	if err != nil {
		return flowState{}, fmt.Errorf("%w: %v", errFlowInvalid, err)
	}
	var fs flowState
	if err := json.Unmarshal(pt, &fs); err != nil || !validState(fs.State) {
		return flowState{}, fmt.Errorf("%w: bad content", errFlowInvalid)
	}
	return fs, nil
}

// clearState deletes the flow cookie.
func (h *Handler) clearState(w http.ResponseWriter, state string) {
	http.SetCookie(w, &http.Cookie{Name: h.cookieName(state), Value: "", Path: "/", MaxAge: -1,
		Secure: h.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// callbackParams are the parts of the callback query sekisho reads.
type callbackParams struct {
	State, Code, Error, ErrorDescription string
}

// parseCallback parses the callback's raw query strictly: it must be valid
// query syntax, at most maxCallbackQuery bytes, with each of state, code,
// error and error_description at most once; state, when present, must have
// the shape sekisho's states have; error must be an RFC 6749 error code; the
// code only VSCHAR.
func parseCallback(raw string) (callbackParams, error) {
	if len(raw) > maxCallbackQuery {
		return callbackParams{}, fmt.Errorf("callback query is %d bytes, over %d", len(raw), maxCallbackQuery)
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return callbackParams{}, fmt.Errorf("callback query: %v", err)
	}
	get := func(k string) (string, error) {
		v := q[k]
		if len(v) > 1 {
			return "", fmt.Errorf("callback query has %d %q parameters", len(v), k)
		}
		if len(v) == 0 {
			return "", nil
		}
		return v[0], nil
	}
	var p callbackParams
	var errs []error
	for _, f := range []struct {
		key string
		dst *string
	}{{"state", &p.State}, {"code", &p.Code}, {"error", &p.Error}, {"error_description", &p.ErrorDescription}} {
		v, err := get(f.key)
		errs = append(errs, err)
		*f.dst = v
	}
	if err := errors.Join(errs...); err != nil {
		return callbackParams{}, err
	}
	if p.State != "" && !validState(p.State) {
		return callbackParams{}, errors.New("callback state is not a sekisho state")
	}
	if p.Error != "" && !errorCode(p.Error) {
		return callbackParams{}, errors.New("callback error is not an OAuth error code")
	}
	if !vschar(p.Code) {
		return callbackParams{}, errors.New("callback code has characters outside RFC 6749's VSCHAR (%x20-7E)")
	}
	return p, nil
}

// vschar reports whether s holds only RFC 6749 VSCHAR (%x20-7E), the
// characters an authorization code may have (Appendix A.11).
func vschar(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// errorCode reports whether s is an RFC 6749 error value: 1-64 characters
// of %x20-21 / %x23-5B / %x5D-7E (we also refuse space, to keep logs tidy).
func errorCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// usedStates remembers states already redeemed on this replica until they
// would be stale anyway, so each callback URL works once.
type usedStates struct {
	mu   sync.Mutex
	seen map[string]time.Time // state -> when it stops mattering
	high int                  // prune when the set reaches this size
}

// add records state as used until expires and reports whether it was new.
// Expired entries are dropped as the set grows.
func (u *usedStates) add(state string, expires, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.seen == nil {
		u.seen = map[string]time.Time{}
	}
	if len(u.seen) >= max(u.high, 1024) {
		for s, e := range u.seen {
			if now.After(e) {
				delete(u.seen, s)
			}
		}
		u.high = 2 * len(u.seen) // amortised: a full scan per doubling
	}
	if _, ok := u.seen[state]; ok {
		return false
	}
	u.seen[state] = expires
	return true
}

// safeText shortens provider-supplied text for a log line.
func safeText(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
