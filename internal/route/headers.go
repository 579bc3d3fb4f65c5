package route

import (
	"net/http"
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

// ownedPrefixes and ownedNames are lower case, with '-' (see owned).
var (
	ownedPrefixes = []string{"x-sekisho-", "x-forwarded-"}
	ownedNames    = []string{"forwarded", "x-real-ip", "x-request-id", "x-client-ip", "true-client-ip", "x-original-forwarded-for",
		"x-goog-authenticated-user-email", "x-goog-authenticated-user-id", "x-goog-iap-jwt-assertion"}
)

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

// stripOwned deletes every sekisho-owned header from h.
func stripOwned(h http.Header) {
	for k := range h {
		if owned(k) {
			delete(h, k)
		}
	}
}

// stripCookies removes the named cookies (sekisho's session and CSRF
// cookies) from the Cookie header(s), so the app never sees the gateway's
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
			drop := false
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
