package route

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Headers sekisho sets for the upstream. Every header that sekisho owns is
// removed from the incoming request first (see stripOwned), whatever its
// case, duplication or spelling with underscores.
const (
	HeaderUser      = "X-Sekisho-User"
	HeaderEmail     = "X-Sekisho-Email"
	HeaderGroups    = "X-Sekisho-Groups"
	HeaderAssertion = "X-Sekisho-Assertion"
	HeaderRequestID = "X-Request-Id"
)

// owned reports whether a request header name belongs to sekisho. Names are
// compared case-insensitively with '_' read as '-', because many app servers
// (WSGI, CGI, PHP, Rack) fold both to the same variable: X_Sekisho_User
// arrives in a Flask app as the same HTTP_X_SEKISHO_USER as X-Sekisho-User.
// It runs for every header of every request, so it compares in place
// instead of making a folded copy of the name.
func owned(name string) bool {
	for _, p := range ownedPrefixes {
		if len(name) >= len(p) && foldEqual(name[:len(p)], p) {
			return true
		}
	}
	for _, n := range ownedNames {
		if len(name) == len(n) && foldEqual(name, n) {
			return true
		}
	}
	return false
}

// ownedPrefixes and ownedNames are lower case, with '-' (see owned). Besides
// sekisho's own headers they hold the identity, client-address and
// URL-override headers that other proxies set and that apps behind them
// trust: a client must never be able to send them through sekisho. The
// README lists them ("What the app receives"); keep the two in step.
var (
	ownedPrefixes = []string{
		"x-sekisho-", "x-forwarded-", // sekisho's own; X-Forwarded-User/-Email/-Groups (oauth2-proxy) too
		"x-auth-request-",       // oauth2-proxy, nginx auth_request
		"x-authentik-",          // authentik
		"x-pomerium-",           // Pomerium
		"cf-access-",            // Cloudflare Access
		"x-amzn-oidc-",          // AWS ALB
		"x-ms-client-principal", // Azure App Service authentication
		"x-ms-token-",           // Azure App Service authentication
		"x-goog-authenticated-", // Google IAP
		"x-webauth-",            // Grafana's and others' auth proxy mode
		"x-consumer-",           // Kong
		"x-authenticated-",      // Kong (X-Authenticated-Userid, -Scope)
		"x-vouch-",              // Vouch Proxy
		"tailscale-",            // Tailscale serve (Tailscale-User-Login, ...)
		"x-ssl-client-",         // client certificates forwarded by nginx, HAProxy
		"ssl-client-",           // the same, without the X-
		"x-client-cert",         // Envoy, Traefik (-Cert, -Cert-Chain, ...)
		"x-envoy-",              // Envoy and Istio sidecars trust these
		"x-middleware-",         // Next.js internal: X-Middleware-Subrequest skips its middleware (CVE-2025-29927)
		"x-invoke-",             // Next.js internal routing
	}
	ownedNames = []string{
		"forwarded", "x-real-ip", "x-request-id", "x-client-ip", "true-client-ip", "x-original-forwarded-for",
		"client-ip", "x-cluster-client-ip", "x-originating-ip", "x-remote-ip", "x-remote-addr", "cf-connecting-ip", "cf-connecting-ipv6", "fastly-client-ip",
		"x-goog-iap-jwt-assertion", "x-serverless-authorization",
		// Authelia, Apache mod_auth and generic header sign-in.
		"remote-user", "remote-groups", "remote-name", "remote-email",
		"x-remote-user", "x-remote-group", "x-remote-groups", "x-remote-email", "x-user", "x-email", "x-user-email", "x-username",
		"gap-auth", "gap-signature", // oauth2-proxy's older names
		// Keycloak Gatekeeper / Louketo.
		"x-auth-userid", "x-auth-username", "x-auth-email", "x-auth-roles", "x-auth-groups", "x-auth-subject", "x-auth-audience",
		"x-credential-identifier", "x-anonymous-consumer", "x-userinfo", // Kong
		"x-client-verify", "x-arr-clientcert", // client certificates (nginx, IIS ARR)
		"x-now-route-matches", // Next.js internal
		// URL and method overrides (IIS, Symfony, Laravel, Zend; Rails,
		// Express method-override): the app would serve another path or
		// method than the one sekisho matched, scoped and checked.
		"x-original-url", "x-rewrite-url", "x-original-uri", "x-original-host", "x-host", "x-http-host-override",
		"x-http-method-override", "x-http-method", "x-method-override",
	}
)

// StripList holds the request headers a config adds to the built-in list
// (config strip_headers): exact names and, written with a trailing "*",
// prefixes. Names compare as owned compares them. The zero value strips
// nothing more.
type StripList struct {
	names, prefixes []string
}

// NewStripList compiles config strip_headers entries. An entry is an HTTP
// header name (RFC 9110 token characters), optionally ending in "*".
func NewStripList(entries []string) (StripList, error) {
	var l StripList
	for i, e := range entries {
		name, prefix := strings.CutSuffix(e, "*")
		if name == "" || !validToken(name) {
			return StripList{}, fmt.Errorf("strip_headers[%d] %q is not a header name (letters, digits and !#$%%&'*+-.^_`|~, optionally ending in *)", i, e)
		}
		folded := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		if prefix {
			l.prefixes = append(l.prefixes, folded)
		} else {
			l.names = append(l.names, folded)
		}
	}
	return l, nil
}

func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func (l *StripList) match(name string) bool {
	for _, p := range l.prefixes {
		if len(name) >= len(p) && foldEqual(name[:len(p)], p) {
			return true
		}
	}
	for _, n := range l.names {
		if len(name) == len(n) && foldEqual(name, n) {
			return true
		}
	}
	return false
}

// foldEqual reports whether name equals want (lower case, same length)
// with ASCII letters compared case-insensitively and '_' read as '-'.
func foldEqual(name, want string) bool {
	for i := 0; i < len(want); i++ {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

// stripOwned deletes every sekisho-owned header from h, and those extra
// lists.
func stripOwned(h http.Header, extra *StripList) {
	for k := range h {
		if owned(k) || extra.match(k) {
			delete(h, k)
		}
	}
}

// ownCookie reports whether a cookie name lies in sekisho's namespace: a
// name that starts with "sekisho", after an optional "__Host-" or
// "__Secure-" prefix, compared case-insensitively (browsers compare the
// prefixes so). Session, CSRF and OIDC flow cookies all do.
func ownCookie(name string) bool {
	for _, p := range [...]string{"__host-", "__secure-"} {
		if len(name) >= len(p) && strings.EqualFold(name[:len(p)], p) {
			name = name[len(p):]
			break
		}
	}
	const own = "sekisho"
	return len(name) >= len(own) && strings.EqualFold(name[:len(own)], own)
}

// stripSetCookies removes from an upstream response every Set-Cookie for
// a cookie in sekisho's namespace (ownCookie) or named in extra, so an app
// can never set, replace or clear the gateway's session in the browser
// (session fixation across routes). It returns how many it removed.
func stripSetCookies(h http.Header, extra []string) int {
	lines := h["Set-Cookie"]
	drop := func(line string) bool {
		name, value, _ := strings.Cut(line, "=")
		name = strings.TrimSpace(name)
		if name == "" {
			// "=sekisho=x" sets a cookie without a name, which browsers
			// send as "sekisho=x": judge it by what it will read as.
			name, _, _ = strings.Cut(value, "=")
			name = strings.TrimSpace(name)
		}
		return ownCookie(name) || slices.Contains(extra, name)
	}
	first := -1
	for i, line := range lines {
		if drop(line) {
			first = i
			break
		}
	}
	if first < 0 {
		return 0 // the common case: nothing copied
	}
	kept := append([]string(nil), lines[:first]...)
	for _, line := range lines[first+1:] {
		if !drop(line) {
			kept = append(kept, line)
		}
	}
	n := len(lines) - len(kept)
	if len(kept) == 0 {
		delete(h, "Set-Cookie")
	} else {
		h["Set-Cookie"] = kept
	}
	return n
}

// stripClearSiteData removes from an app's Clear-Site-Data the directives
// that clear cookies ("cookies", "*"): they would clear the gateway's
// session on the whole site, every route's with it. Cache and storage
// directives stay. It reports whether it removed any.
func stripClearSiteData(h http.Header) bool {
	var kept []string
	removed := false
	for _, v := range h["Clear-Site-Data"] {
		for tok := range strings.SplitSeq(v, ",") {
			switch t := strings.Trim(strings.TrimSpace(tok), `"`); t {
			case "":
			case "cookies", "*":
				removed = true
			default:
				kept = append(kept, `"`+t+`"`)
			}
		}
	}
	switch {
	case !removed:
	case len(kept) == 0:
		delete(h, "Clear-Site-Data")
	default:
		h["Clear-Site-Data"] = []string{strings.Join(kept, ", ")}
	}
	return removed
}

// stripCookies removes sekisho's cookies (ownCookie, and the names given)
// from the Cookie header(s), so the app never sees the gateway's
// credential. Other cookies pass untouched and in order.
func stripCookies(h http.Header, names ...string) {
	lines := h.Values("Cookie")
	if len(lines) == 0 {
		return
	}
	var kept []string
	changed := false
	for _, line := range lines {
		for _, part := range strings.Split(line, ";") {
			p := strings.TrimSpace(part)
			if p == "" {
				continue
			}
			name, _, _ := strings.Cut(p, "=")
			drop := ownCookie(strings.TrimSpace(name))
			for _, n := range names {
				if strings.TrimSpace(name) == n {
					drop = true
					break
				}
			}
			if drop {
				changed = true
				continue
			}
			kept = append(kept, p)
		}
	}
	if !changed {
		return
	}
	if len(kept) == 0 {
		h.Del("Cookie")
		return
	}
	h.Set("Cookie", strings.Join(kept, "; "))
}

// headerSafe drops characters that cannot appear in a header value, so an
// odd identity attribute can never split or break the upstream request.
func headerSafe(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return strings.Map(func(r rune) rune {
				if r < 0x20 || r == 0x7f {
					return -1
				}
				return r
			}, s)
		}
	}
	return s
}
