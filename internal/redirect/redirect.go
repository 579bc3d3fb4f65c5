// Package redirect validates where a browser may be sent after login (the
// "rd" or "next" parameter), so that sekisho's login page is never an open
// redirect.
//
// A target is accepted only in one of two shapes:
//
//   - a same-origin absolute path: "/" then anything a path, query and
//     fragment may hold ("/chat?id=1#end"), but not "//" or "/\" at the
//     start, which browsers read as another host;
//   - a full URL "https://host[:port]/..." ("http://" only with
//     Options.AllowHTTP) whose host Options.AllowedHost accepts.
//
// Everything else falls back to "/": other schemes ("javascript:", "data:"),
// "https:evil.com" (no "//"), "https:///evil.com", relative paths, userinfo
// ("https://good.com@evil.com"), percent-escapes, "_" or anything but
// letters, digits, ".", "-", ":", "[" and "]" in the host, backslashes
// anywhere, any whitespace or control or format character anywhere (a
// browser strips tabs and newlines, so "/\t/evil.com" would become
// "//evil.com"), text that is not UTF-8, values over MaxLen bytes, and
// targets under the reserved prefix "/.sekisho/" (which would loop through
// login or logout). A target holding "%" is decoded once and the decoded form
// must pass the checks for control characters, backslashes and a leading
// "//" too, so "/%5Cevil.com" and "/%09/evil.com" are refused.
package redirect

import (
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sekisho/sekisho/internal/pathnorm"
)

// MaxLen is the longest redirect target SafeNext accepts, in bytes.
const MaxLen = 2048

// Fallback is the target SafeNext returns when it refuses one.
const Fallback = "/"

// reserved is sekisho's own path prefix (without the trailing slash).
const reserved = "/.sekisho"

// Options says which full URLs SafeNext accepts. The zero value accepts
// same-origin paths only.
type Options struct {
	// AllowedHost reports whether a full URL may point at host: the
	// lower-cased host name without port (an IPv6 literal without
	// brackets). Any port is accepted. It should compare exactly against
	// the gateway's configured hosts. Nil: full URLs are refused and only
	// same-origin paths are accepted.
	AllowedHost func(host string) bool

	// AllowHTTP also accepts "http://" URLs (only "https://" otherwise).
	// Default false; meant for local development only.
	AllowHTTP bool
}

// SafeNext validates raw, a post-login redirect target taken from the
// request. It returns raw and true if raw is safe to put in a Location
// header, or Fallback ("/") and false if it is not. The rules are in the
// package documentation.
func SafeNext(raw string, opts Options) (string, bool) {
	if len(raw) == 0 || len(raw) > MaxLen || !utf8.ValidString(raw) {
		return Fallback, false
	}
	if !cleanText(raw, true) || !shapeOK(raw, opts, true) {
		return Fallback, false
	}
	if strings.IndexByte(raw, '%') >= 0 {
		dec, err := url.PathUnescape(raw)
		if err != nil || !utf8.ValidString(dec) || !cleanText(dec, false) || !shapeOK(dec, opts, false) {
			return Fallback, false
		}
	}
	return raw, true
}

// cleanText reports whether s holds no backslash and no control character;
// for the raw form also no whitespace and no format character (such as
// U+200B or U+202E) anywhere. A decoded form may hold spaces ("%20").
func cleanText(s string, raw bool) bool {
	for _, r := range s {
		if r == '\\' || unicode.IsControl(r) {
			return false
		}
		if raw && (unicode.IsSpace(r) || unicode.Is(unicode.Cf, r)) {
			return false
		}
	}
	return true
}

// shapeOK checks the shape of s: a same-origin path or an allowed full URL.
// The raw form is parsed fully; the decoded form only gets the checks that
// decoding can change (a leading "//" on a path).
func shapeOK(s string, opts Options, raw bool) bool {
	if s[0] == '/' {
		if len(s) > 1 && s[1] == '/' {
			return false
		}
		if !raw {
			return true
		}
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
			return false
		}
		return notReserved(u.EscapedPath())
	}
	if !raw {
		// The raw form was a full URL; decoding cannot change its scheme or
		// host, which may not hold "%".
		return true
	}
	return fullURLOK(s, opts)
}

func fullURLOK(s string, opts Options) bool {
	if opts.AllowedHost == nil {
		return false
	}
	var rest string
	switch {
	case hasPrefixFold(s, "https://"):
		rest = s[len("https://"):]
	case opts.AllowHTTP && hasPrefixFold(s, "http://"):
		rest = s[len("http://"):]
	default:
		return false
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	if authority == "" {
		return false
	}
	for i := 0; i < len(authority); i++ {
		if !hostByte(authority[i]) {
			return false // '@' (userinfo), '%', '_', non-ASCII, ...
		}
	}
	u, err := url.Parse(s)
	if err != nil || u.User != nil || u.Opaque != "" || u.Host != authority {
		return false
	}
	host := u.Hostname()
	if host == "" || (u.Port() == "" && strings.HasSuffix(u.Host, ":")) {
		return false
	}
	if !opts.AllowedHost(strings.ToLower(host)) {
		return false
	}
	p := u.EscapedPath()
	if p == "" {
		return true
	}
	return notReserved(p)
}

// hostByte reports whether c may appear in the authority of an accepted
// full URL: a DNS name, an IPv4 literal, a bracketed IPv6 literal, a port.
func hostByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '.' || c == '-' || c == ':' || c == '[' || c == ']'
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// notReserved reports whether the escaped path p, once normalised the way the
// gateway will normalise it, lies outside "/.sekisho/" (compared without
// regard to case). A path the gateway would refuse is refused here too.
func notReserved(p string) bool {
	clean, _, err := pathnorm.Normalize(p)
	if err != nil {
		return false
	}
	if len(clean) < len(reserved) || !strings.EqualFold(clean[:len(reserved)], reserved) {
		return true
	}
	return len(clean) > len(reserved) && clean[len(reserved)] != '/'
}

// LoginURL returns the path of sekisho's login page that sends the browser
// on to next after login: "/.sekisho/login?rd=<next, query-escaped>", or
// "/.sekisho/login" when next is empty. next is not validated here; the
// login handler runs it through SafeNext when it comes back.
func LoginURL(next string) string {
	if next == "" {
		return reserved + "/login"
	}
	return reserved + "/login?rd=" + url.QueryEscape(next)
}
