package session

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sekisho/sekisho/internal/identity"
)

// MaxCookieBytes is the largest session cookie sekisho emits or accepts,
// counted as len(name) + 1 + len(value). Seal refuses to produce more; Read
// refuses longer values before decoding them.
const MaxCookieBytes = 1024

// Defaults for Options.
const (
	// DefaultLifetime is the absolute session lifetime when Options.Lifetime is 0.
	DefaultLifetime = 12 * time.Hour
	// DefaultIdleTimeout is the idle timeout when Options.IdleTimeout is 0.
	DefaultIdleTimeout = time.Hour
	// DefaultClockSkew is the allowance for future-dated sessions (clocks of
	// several replicas) when Options.ClockSkew is 0.
	DefaultClockSkew = time.Minute
	// SecureCookieName is the default cookie name when Options.Secure is true.
	// The __Host- prefix makes browsers refuse the cookie unless it is Secure,
	// has Path=/ and no Domain, so a sibling subdomain cannot plant it.
	SecureCookieName = "__Host-sekisho"
	// DomainCookieName is the default cookie name when Options.Secure is
	// true and Options.SignInDomain is set: a cookie with a Domain cannot
	// have the __Host- prefix, and __Secure- still makes browsers refuse it
	// unless it is Secure.
	DomainCookieName = "__Secure-sekisho"
	// InsecureCookieName is the default cookie name when Options.Secure is false.
	InsecureCookieName = "sekisho"
)

// The reasons Read and Open give for not returning a session. Every error
// they return wraps exactly one of these; test with errors.Is. Callers treat
// them all as "anonymous" and log the reason.
var (
	// ErrNoSession: the request carries no session cookie.
	ErrNoSession = errors.New("no session cookie")
	// ErrInvalid: the cookie is malformed, oversized, duplicated, forged,
	// sealed with an unknown key or for another cookie name, or dated in the future.
	ErrInvalid = errors.New("invalid session cookie")
	// ErrExpired: the absolute lifetime or the idle timeout has passed.
	ErrExpired = errors.New("session expired")
	// ErrRevoked: the session or all of its user's earlier sessions were revoked.
	ErrRevoked = errors.New("session revoked")
	// ErrWrongHost: the session is authentic but bound to another host (or
	// to a sign-in domain the request's host is not under): a cookie
	// replayed from one host of the gateway on another.
	ErrWrongHost = errors.New("session bound to another host")
)

// Options configure a Codec. Only Keyring is required.
type Options struct {
	// Keyring seals and opens cookies. Required.
	Keyring *Keyring
	// Secure marks the cookie Secure (HTTPS only). Set it whenever the
	// listener serves HTTPS; false is only for plain-HTTP development.
	Secure bool
	// CookieName is the cookie's name. "" means SecureCookieName when Secure
	// (DomainCookieName with a SignInDomain) and InsecureCookieName
	// otherwise. A name with the __Host- or __Secure- prefix requires
	// Secure; __Host- cannot be used with a SignInDomain.
	CookieName string
	// SignInDomain, such as "example.com", shares one sign-in among the
	// domain and every host under it: a session issued on such a host is
	// bound to the domain and its cookie is set with Domain=SignInDomain,
	// so the browser sends it to all of them. A session issued on a host
	// outside the domain stays bound to that one host. "" (the default):
	// every session is bound to the host it was issued on and its cookie
	// has no Domain.
	SignInDomain string
	// Lifetime is the absolute session lifetime counted from IssuedAt; the
	// user signs in again after it. 0 means DefaultLifetime (12h).
	Lifetime time.Duration
	// IdleTimeout ends a session not seen for this long. 0 means
	// DefaultIdleTimeout (1h); it cannot be turned off, only made as long as
	// Lifetime.
	IdleTimeout time.Duration
	// ClockSkew is how far in the future IssuedAt and LastSeen may be (clock
	// differences between replicas). 0 means DefaultClockSkew (1m).
	ClockSkew time.Duration
	// Now is the clock. nil means time.Now.
	Now func() time.Time
	// Revocations is consulted on every Read. nil means nothing is revoked.
	Revocations *Revocations
}

// Codec issues, reads and clears session cookies. It is safe for concurrent use.
type Codec struct {
	keyring     *Keyring
	name        string
	domain      string // canonical SignInDomain, or ""
	ad          []byte // additional data: binds the cookie name
	secure      bool
	lifetime    time.Duration
	idle        time.Duration
	refreshAge  time.Duration
	skew        time.Duration
	now         func() time.Time
	revocations *Revocations
	opened      openedCache
}

// openedCache remembers the sessions of recently opened cookie values. A
// browser sends the same value on every request until the cookie is
// re-issued, and opening it (base64, AEAD, decoding) was about a tenth of
// the gateway's own work per request. Only authentic values are cached, so
// an attacker cannot fill the cache with garbage, and the cache is only a
// shortcut past decryption: the time rules and revocation are checked on
// every request as before. The cache belongs to one set of keys (ring):
// when Keyring.Replace puts others in place, it is empty again, so a
// cookie sealed with a key that was dropped is never taken from it.
type openedCache struct {
	mu   sync.RWMutex
	m    map[string]Session
	ring *ring
}

// maxOpened bounds openedCache; when full it starts again empty, which costs
// one decryption per active session and keeps the bound simple.
const maxOpened = 8192

func (oc *openedCache) get(value string, set *ring) (Session, bool) {
	oc.mu.RLock()
	defer oc.mu.RUnlock()
	if oc.ring != set {
		return Session{}, false
	}
	s, ok := oc.m[value]
	return s, ok
}

func (oc *openedCache) put(value string, s Session, set *ring) {
	oc.mu.Lock()
	if oc.m == nil || len(oc.m) >= maxOpened || oc.ring != set {
		oc.m, oc.ring = make(map[string]Session), set
	}
	oc.m[value] = s
	oc.mu.Unlock()
}

// NewCodec checks opts and returns a Codec.
func NewCodec(opts Options) (*Codec, error) {
	if opts.Keyring == nil {
		return nil, errors.New("session: Options.Keyring is required")
	}
	c := &Codec{
		keyring:     opts.Keyring,
		name:        opts.CookieName,
		secure:      opts.Secure,
		lifetime:    opts.Lifetime,
		idle:        opts.IdleTimeout,
		skew:        opts.ClockSkew,
		now:         opts.Now,
		revocations: opts.Revocations,
	}
	if opts.SignInDomain != "" {
		d, err := signInDomain(opts.SignInDomain)
		if err != nil {
			return nil, err
		}
		c.domain = d
	}
	if c.name == "" {
		switch {
		case !c.secure:
			c.name = InsecureCookieName
		case c.domain != "":
			c.name = DomainCookieName
		default:
			c.name = SecureCookieName
		}
	}
	if !validCookieName(c.name) {
		return nil, fmt.Errorf("session: cookie name %q is not a valid cookie name", c.name)
	}
	if !c.secure && (strings.HasPrefix(c.name, "__Host-") || strings.HasPrefix(c.name, "__Secure-")) {
		return nil, fmt.Errorf("session: cookie name %q needs Secure (browsers drop __Host-/__Secure- cookies without it)", c.name)
	}
	if c.domain != "" && strings.HasPrefix(c.name, "__Host-") {
		return nil, fmt.Errorf("session: cookie name %q cannot be used with sign-in domain %q (browsers drop __Host- cookies that have a Domain; use __Secure-)", c.name, c.domain)
	}
	switch {
	case c.lifetime < 0:
		return nil, fmt.Errorf("session: lifetime %s is negative", c.lifetime)
	case c.lifetime == 0:
		c.lifetime = DefaultLifetime
	}
	switch {
	case c.idle < 0:
		return nil, fmt.Errorf("session: idle timeout %s is negative", c.idle)
	case c.idle == 0:
		c.idle = DefaultIdleTimeout
	}
	switch {
	case c.skew < 0:
		return nil, fmt.Errorf("session: clock skew %s is negative", c.skew)
	case c.skew == 0:
		c.skew = DefaultClockSkew
	}
	if c.lifetime < time.Second || c.idle < time.Second {
		return nil, fmt.Errorf("session: lifetime %s and idle timeout %s must be at least 1s", c.lifetime, c.idle)
	}
	if c.now == nil {
		c.now = time.Now
	}
	// Refresh when LastSeen is older than a tenth of the idle timeout, but at
	// least a minute, and at most half of it, so a refresh always comes in time.
	c.refreshAge = min(max(c.idle/10, time.Minute), c.idle/2)
	c.ad = []byte("sekisho session v1\x00" + c.name)
	return c, nil
}

func validCookieName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// CookieName returns the name of the session cookie.
func (c *Codec) CookieName() string { return c.name }

// CookieNames returns CookieName and its variants with the __Host- and
// __Secure- prefixes and without a prefix: every name the session cookie
// has had under some configuration. A gateway strips them all from requests
// to upstreams, so no session cookie ever reaches an app, whatever the
// configuration was when it was set.
func (c *Codec) CookieNames() []string {
	base := c.name
	for _, p := range [...]string{"__Host-", "__Secure-"} {
		if b, ok := strings.CutPrefix(base, p); ok {
			base = b
			break
		}
	}
	return []string{c.name, "__Host-" + base, "__Secure-" + base, base}
}

// SignInDomain returns the canonical sign-in domain, or "" when sessions
// are bound to single hosts.
func (c *Codec) SignInDomain() string { return c.domain }

// nowSec is the clock truncated to whole seconds, in UTC.
func (c *Codec) nowSec() time.Time { return time.Unix(c.now().Unix(), 0).UTC() }

// New starts a session for id with a fresh ID and IssuedAt = LastSeen = now,
// bound to host (pass r.Host of the request that signs the user in): to the
// sign-in domain when host is under it, otherwise to host's canonical form.
// A zero id.AuthTime means now. It does not set a cookie; call Issue.
func (c *Codec) New(id identity.Identity, host string) Session {
	now := c.nowSec()
	auth := now
	if !id.AuthTime.IsZero() {
		auth = time.Unix(id.AuthTime.Unix(), 0).UTC()
	}
	return Session{
		ID:       NewID(),
		User:     id.User,
		Email:    id.Email,
		Groups:   append([]string(nil), id.Groups...),
		Provider: id.Provider,
		Host:     c.bindTo(host),
		AuthTime: auth,
		IssuedAt: now,
		LastSeen: now,
	}
}

// bindTo returns what a session issued on host is bound to (Session.Host).
func (c *Codec) bindTo(host string) string {
	h := CanonicalHost(host)
	if c.domain != "" && underDomain(h, c.domain) {
		return "." + c.domain
	}
	return h
}

// Seal returns the cookie value for s. It fails if s.ID is not a session ID
// or the cookie would exceed MaxCookieBytes (too many or too long groups);
// it never returns an oversized value.
func (c *Codec) Seal(s Session) (string, error) {
	pt, err := s.encode(make([]byte, 0, 128))
	if err != nil {
		return "", fmt.Errorf("session: seal: %w", err)
	}
	size := len(c.name) + 1 + base64.RawURLEncoding.EncodedLen(len(pt)+Overhead)
	if size > MaxCookieBytes {
		return "", fmt.Errorf("session: seal: cookie for user %q would be %d bytes, over the %d-byte limit (%d groups; map fewer groups into the session)",
			s.User, size, MaxCookieBytes, len(s.Groups))
	}
	return base64.RawURLEncoding.EncodeToString(c.keyring.Seal(pt, c.ad)), nil
}

// Open decodes and checks a cookie value sent to host (a Host header):
// authenticity, cookie name, the host binding, clock skew, absolute
// lifetime, idle timeout and revocation. The error wraps ErrInvalid,
// ErrWrongHost, ErrExpired or ErrRevoked.
func (c *Codec) Open(value, host string) (Session, error) {
	if len(c.name)+1+len(value) > MaxCookieBytes {
		return Session{}, fmt.Errorf("%w: %d bytes, over the %d-byte limit", ErrInvalid, len(value), MaxCookieBytes)
	}
	if value == "" {
		return Session{}, fmt.Errorf("%w: empty value", ErrInvalid)
	}
	set := c.keyring.ring.Load() // one set of keys for the whole Open
	if s, ok := c.opened.get(value, set); ok {
		if err := c.check(s, host); err != nil {
			return Session{}, err
		}
		s.Groups = slices.Clone(s.Groups) // the cached copy stays as it was opened
		return s, nil
	}
	sealed, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil {
		return Session{}, fmt.Errorf("%w: not base64url", ErrInvalid)
	}
	pt, err := c.keyring.open(set, sealed, c.ad)
	if err != nil {
		return Session{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	s, err := decodeSession(pt)
	if err != nil {
		return Session{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	cached := s
	cached.Groups = slices.Clone(s.Groups)
	c.opened.put(strings.Clone(value), cached, set)
	if err := c.check(s, host); err != nil {
		return Session{}, err
	}
	return s, nil
}

// check applies the host binding, the time rules and revocation to an
// authentic session sent to host.
func (c *Codec) check(s Session, host string) error {
	if err := c.checkHost(s, host); err != nil {
		return err
	}
	now := c.now()
	latest := now.Add(c.skew)
	switch {
	case s.IssuedAt.After(latest):
		return fmt.Errorf("%w: issued %s in the future", ErrInvalid, s.IssuedAt.Sub(now))
	case s.LastSeen.After(latest):
		return fmt.Errorf("%w: last seen %s in the future", ErrInvalid, s.LastSeen.Sub(now))
	case s.LastSeen.Before(s.IssuedAt):
		return fmt.Errorf("%w: last seen before issued", ErrInvalid)
	case !now.Before(s.IssuedAt.Add(c.lifetime)):
		return fmt.Errorf("%w: absolute lifetime %s passed", ErrExpired, c.lifetime)
	case now.Sub(s.LastSeen) > c.idle:
		return fmt.Errorf("%w: idle for %s, over %s", ErrExpired, now.Sub(s.LastSeen).Truncate(time.Second), c.idle)
	case c.revocations.IsRevoked(s):
		return ErrRevoked
	}
	return nil
}

// checkHost refuses a session sent to a host it is not bound to. A session
// bound to a sign-in domain is accepted only while that is still the
// codec's domain, on the domain and on hosts under it.
func (c *Codec) checkHost(s Session, host string) error {
	h := CanonicalHost(host)
	if d, ok := strings.CutPrefix(s.Host, "."); ok {
		if d != c.domain {
			return fmt.Errorf("%w: session of sign-in domain %q, which is not this gateway's (%q)", ErrWrongHost, d, c.domain)
		}
		if !underDomain(h, d) {
			return fmt.Errorf("%w: session of sign-in domain %q sent to host %q outside it", ErrWrongHost, d, h)
		}
		return nil
	}
	if s.Host != h {
		return fmt.Errorf("%w: session issued on host %q sent to host %q", ErrWrongHost, s.Host, h)
	}
	return nil
}

// Read returns the request's session, checked against the request's Host
// header (r.Host, the host the router matched the route on). A request
// without the cookie gives ErrNoSession; otherwise errors are as for Open.
//
// Two or more cookies with the session's name are refused as ErrInvalid
// rather than tried in turn: a second cookie is how an attacker on a sibling
// subdomain (or over plain HTTP) would plant their own session to log the
// victim in as the attacker, and picking "the right one" is guesswork. Such
// injection cannot happen with the __Host- name, which browsers protect.
func (c *Codec) Read(r *http.Request) (Session, error) {
	var value string
	n := 0
	for _, line := range r.Header["Cookie"] {
		for part := range strings.SplitSeq(line, ";") {
			name, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			if name != c.name {
				continue
			}
			n++
			value = v
		}
	}
	switch {
	case n == 0:
		return Session{}, ErrNoSession
	case n > 1:
		return Session{}, fmt.Errorf("%w: %d cookies named %q (possible cookie injection)", ErrInvalid, n, c.name)
	}
	// Browsers never quote our values; accept the quoted form like net/http does.
	if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
		value = value[1 : len(value)-1]
	}
	return c.Open(value, r.Host)
}

// NeedsRefresh reports whether s, just returned by Read, should be re-issued
// so its idle timeout slides forward: true once LastSeen is older than a tenth
// of the idle timeout (at least a minute, at most half of it). Re-issuing on
// every request would cost a seal and a Set-Cookie per request.
func (c *Codec) NeedsRefresh(s Session) bool {
	return c.now().Sub(s.LastSeen) >= c.refreshAge
}

// Refresh sets s.LastSeen to now, issues the cookie again and returns the
// updated session.
func (c *Codec) Refresh(w http.ResponseWriter, s Session) (Session, error) {
	s.LastSeen = c.nowSec()
	if err := c.Issue(w, s); err != nil {
		return Session{}, err
	}
	return s, nil
}

// Issue sets the session cookie on w: Path=/, HttpOnly, SameSite=Lax, Secure
// when configured, Max-Age the remaining absolute lifetime, and
// Domain=SignInDomain for a session bound to the sign-in domain (no Domain
// otherwise, so the browser sends it to the issuing host only). It fails
// without touching w if s cannot be sealed, has already expired or is
// bound to a sign-in domain that is not the codec's.
func (c *Codec) Issue(w http.ResponseWriter, s Session) error {
	domain := ""
	if d, ok := strings.CutPrefix(s.Host, "."); ok {
		if d != c.domain {
			return fmt.Errorf("session: issue: session of sign-in domain %q, which is not this gateway's (%q)", d, c.domain)
		}
		domain = d
	}
	remaining := s.IssuedAt.Add(c.lifetime).Sub(c.now())
	if remaining < time.Second {
		return fmt.Errorf("session: issue: %w: absolute lifetime %s passed", ErrExpired, c.lifetime)
	}
	value, err := c.Seal(s)
	if err != nil {
		return err
	}
	http.SetCookie(w, c.cookie(value, domain, int(remaining/time.Second)))
	return nil
}

// Clear deletes the session cookie on w (Max-Age=0, same attributes). With
// a sign-in domain it deletes both the domain's cookie and a host-only one
// (a session issued on a host outside the domain): a browser ignores the
// one that does not apply.
func (c *Codec) Clear(w http.ResponseWriter) {
	if c.domain != "" {
		http.SetCookie(w, c.cookie("", c.domain, -1))
	}
	http.SetCookie(w, c.cookie("", "", -1))
}

func (c *Codec) cookie(value, domain string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     c.name,
		Value:    value,
		Path:     "/",
		Domain:   domain,
		MaxAge:   maxAge,
		Secure:   c.secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}
