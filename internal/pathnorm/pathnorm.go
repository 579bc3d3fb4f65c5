// Package pathnorm turns a request's escaped path into the one canonical form
// that route matching, rule matching and the upstream all see.
//
// The gateway matches routes and rules on the path it returns, and sends the
// same path to the upstream, so that "/api/../admin" cannot mean one thing to
// sekisho and another to the app. Normalize is given r.URL.EscapedPath() and
// makes these choices, in this order:
//
//   - An empty path, or one that does not start with "/", is an error. The
//     caller decides what "" (treat as "/") and "*" (OPTIONS *) mean before
//     calling Normalize.
//   - Percent-escapes of unreserved characters (RFC 3986: ALPHA DIGIT - . _ ~)
//     are decoded; every other escape is kept, with its hex in upper case, so
//     "%3b" and "%3B" are the same path and "%2e%2E" is "..".
//   - An encoded slash "%2F" or encoded backslash "%5C" is an error: the app
//     may decode it and see a different path ("/api%2F..%2Fadmin") than the
//     one sekisho matched.
//   - A raw backslash is an error: some servers read it as a separator.
//   - A semicolon, raw or encoded ("%3B"), is an error. Servlet containers
//     (Tomcat, Jetty, Undertow) and Spring cut path parameters out of each
//     segment, so "/public/..;/admin" is "/public/..;" to sekisho but
//     "/admin" to them, and a segment "a;b" is "a"; some decode "%3B" first
//     and do the same. With no ';' at all, the path sekisho matches, the
//     path an API key is scoped to and the path the app reads are one path.
//   - A control character (U+0000-U+001F, U+007F-U+009F), raw or encoded, is
//     an error; so is "%" not followed by two hex digits.
//   - The decoded path must be valid UTF-8: overlong forms such as "%C0%AE"
//     (an old spelling of ".") are an error, never decoded to ASCII.
//   - Empty segments ("//") are collapsed; "." segments are dropped; ".."
//     removes the segment before it and is clamped at the root ("/../a" is
//     "/a"), as browsers and path.Clean do.
//   - A trailing slash is kept, and a path ending in a "." or ".." segment
//     ends in "/" ("/a/b/.." is "/a/"), as in RFC 3986 section 5.2.4. An
//     app may treat "/a" and "/a/" differently, so they stay different.
//   - Raw bytes outside ASCII (never present in EscapedPath output, but
//     accepted) and raw ASCII characters that are not allowed unescaped in
//     a path (space, '"', '<', '>', '^', '`', '{', '|', '}', '[', ']') are
//     percent-encoded in the escaped form.
//
// Normalize is idempotent: normalising its output returns that output. A path
// that is already in normal form is returned as is, without allocating.
package pathnorm

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Errors returned by Normalize, wrapped with the byte offset they were found
// at. Test with errors.Is. The caller answers each with 400 Bad Request.
var (
	ErrEmpty            = errors.New("empty path")
	ErrNotAbsolute      = errors.New(`path does not start with "/"`)
	ErrEncodedSlash     = errors.New(`encoded slash "%2F" in path`)
	ErrEncodedBackslash = errors.New(`encoded backslash "%5C" in path`)
	ErrBackslash        = errors.New(`backslash in path`)
	ErrSemicolon        = errors.New(`semicolon in path (path parameters are refused: servlet containers read "/a/..;/b" as "/b")`)
	ErrControl          = errors.New("control character in path")
	ErrBadEscape        = errors.New("invalid percent-encoding in path")
	ErrInvalidUTF8      = errors.New("path is not valid UTF-8 after decoding")
)

const upperhex = "0123456789ABCDEF"

// Normalize returns the normal form of escapedPath (as from
// r.URL.EscapedPath()): clean is the decoded path to match routes and rules
// on, and escaped is the same path escaped for the upstream URL. Set
// URL.Path = clean, and URL.RawPath = escaped when the two differ (url.URL
// then sends escaped as is). Unescaping escaped always gives clean.
//
// On error both strings are empty; the error names what is wrong and where.
// The choices Normalize makes are listed in the package documentation.
func Normalize(escapedPath string) (clean string, escaped string, err error) {
	if escapedPath == "" {
		return "", "", ErrEmpty
	}
	if escapedPath[0] != '/' {
		return "", "", ErrNotAbsolute
	}
	if isNormal(escapedPath) {
		return escapedPath, escapedPath, nil
	}
	return normalizeSlow(escapedPath)
}

// isNormal reports whether p (which starts with "/") is already in normal
// form: only characters allowed raw in a path, no escapes, no empty, "." or
// ".." segment except an empty last one (the trailing slash).
func isNormal(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '/' {
			if !rawOK[c] {
				return false
			}
			continue
		}
		// A segment starts at i+1: reject "", "." and "..", except an
		// empty last segment.
		n := len(p) - (i + 1)
		if n == 0 {
			return true
		}
		switch p[i+1] {
		case '/':
			return false
		case '.':
			if n == 1 || p[i+2] == '/' {
				return false
			}
			if p[i+2] == '.' && (n == 2 || p[i+3] == '/') {
				return false
			}
		}
	}
	return true
}

// rawOK is keepRaw as a table, for the fast path; ';' is sent to the slow
// path, which refuses it.
var rawOK = func() (t [256]bool) {
	for c := range 256 {
		t[c] = keepRaw(byte(c)) && c != ';'
	}
	return t
}()

// keepRaw reports whether c may appear unescaped in the escaped form of a
// path segment: unreserved characters, sub-delims, ':' and '@' (RFC 3986
// pchar). '/' is handled by the caller.
func keepRaw(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', // unreserved
		'!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', // sub-delims
		':', '@':
		return true
	}
	return false
}

func isUnreserved(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func fail(err error, off int) (string, string, error) {
	return "", "", fmt.Errorf("pathnorm: %w at byte %d", err, off)
}

// normalizeSlow decodes and resolves p segment by segment into two buffers
// that always hold the same segments: clean (decoded) and esc (escaped).
func normalizeSlow(p string) (string, string, error) {
	clean := make([]byte, 0, len(p))
	esc := make([]byte, 0, len(p)+8)
	trailing := false
	i := 1 // p[0] == '/'
	for {
		// One segment: p[i:j], followed by '/' or the end.
		cl0, es0 := len(clean), len(esc)
		clean = append(clean, '/')
		esc = append(esc, '/')
		j := i
		for ; j < len(p) && p[j] != '/'; j++ {
			c := p[j]
			switch {
			case c == '%':
				if j+2 >= len(p) {
					return fail(ErrBadEscape, j)
				}
				hi, ok1 := unhex(p[j+1])
				lo, ok2 := unhex(p[j+2])
				if !ok1 || !ok2 {
					return fail(ErrBadEscape, j)
				}
				d := hi<<4 | lo
				switch {
				case d == '/':
					return fail(ErrEncodedSlash, j)
				case d == '\\':
					return fail(ErrEncodedBackslash, j)
				case d == ';':
					return fail(ErrSemicolon, j)
				case d < 0x20 || d == 0x7f:
					return fail(ErrControl, j)
				case isUnreserved(d):
					clean = append(clean, d)
					esc = append(esc, d)
				default:
					clean = append(clean, d)
					esc = append(esc, '%', upperhex[d>>4], upperhex[d&15])
				}
				j += 2
			case c == '\\':
				return fail(ErrBackslash, j)
			case c == ';':
				return fail(ErrSemicolon, j)
			case c < 0x20 || c == 0x7f:
				return fail(ErrControl, j)
			case keepRaw(c):
				clean = append(clean, c)
				esc = append(esc, c)
			default:
				clean = append(clean, c)
				esc = append(esc, '%', upperhex[c>>4], upperhex[c&15])
			}
		}
		last := j >= len(p)
		switch seg := string(clean[cl0+1:]); seg {
		case "", ".":
			clean, esc = clean[:cl0], esc[:es0]
			trailing = last
		case "..":
			clean, esc = clean[:cl0], esc[:es0]
			if k := lastSlash(clean); k >= 0 {
				clean = clean[:k]
			}
			if k := lastSlash(esc); k >= 0 {
				esc = esc[:k]
			}
			trailing = last
		default:
			trailing = false
		}
		if last {
			break
		}
		i = j + 1
	}
	if trailing || len(clean) == 0 {
		clean = append(clean, '/')
		esc = append(esc, '/')
	}
	if err := checkText(clean); err != nil {
		return "", "", err
	}
	cs := string(clean)
	if string(esc) == cs {
		return cs, cs, nil
	}
	return cs, string(esc), nil
}

func lastSlash(b []byte) int {
	for k := len(b) - 1; k >= 0; k-- {
		if b[k] == '/' {
			return k
		}
	}
	return -1
}

// checkText rejects a decoded path that is not valid UTF-8 or holds a C1
// control character (C0 and DEL were rejected while decoding). Offsets are
// into the decoded path.
func checkText(b []byte) error {
	for k := 0; k < len(b); {
		if b[k] < utf8.RuneSelf {
			k++
			continue
		}
		r, size := utf8.DecodeRune(b[k:])
		if r == utf8.RuneError && size <= 1 {
			return fmt.Errorf("pathnorm: %w at decoded byte %d", ErrInvalidUTF8, k)
		}
		if unicode.IsControl(r) {
			return fmt.Errorf("pathnorm: %w at decoded byte %d", ErrControl, k)
		}
		k += size
	}
	return nil
}

// HasPrefix reports whether the normalised path lies under prefix, on a
// segment boundary: prefix "/api" matches "/api" and "/api/x" but not
// "/apix". A prefix ending in "/" (including "/" itself, which matches every
// path) matches by plain string prefix, so "/api/" matches "/api/x" but not
// "/api". An empty prefix matches nothing.
func HasPrefix(path, prefix string) bool {
	if prefix == "" || !strings.HasPrefix(path, prefix) {
		return false
	}
	if prefix[len(prefix)-1] == '/' || len(path) == len(prefix) {
		return true
	}
	// ';' counts as a boundary too: servlet containers (Tomcat, Jetty) and
	// Spring read "/admin;jsessionid=x" as "/admin", so a stricter route on
	// /admin must not lose such a request to a looser route on "/".
	return path[len(prefix)] == '/' || path[len(prefix)] == ';'
}
