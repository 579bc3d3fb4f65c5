package clientip

import (
	"fmt"
	"net/netip"
	"strings"
)

// fwdElem is what ClientIP needs of one Forwarded element.
type fwdElem struct {
	forVal string
	hasFor bool
}

// parseForwarded appends the elements of one Forwarded header line (RFC 7239
// section 4) to out. Parameter names are case-insensitive; values are tokens
// or quoted strings; whitespace around ";" and "," is tolerated, around "="
// it is not. Empty elements are dropped. A duplicate "for" in one element,
// a missing value, an unclosed quote, a control character, or anything else
// off the grammar is an error.
func parseForwarded(line string, out []fwdElem) ([]fwdElem, error) {
	var cur fwdElem
	pairs := 0
	i := 0
	bad := func(why string) ([]fwdElem, error) {
		return nil, fmt.Errorf("clientip: %w: Forwarded: %s at byte %d", ErrMalformed, why, i)
	}
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i == len(line) || line[i] == ',' {
			if pairs > 0 {
				out = append(out, cur)
			}
			if i == len(line) {
				return out, nil
			}
			cur, pairs = fwdElem{}, 0
			i++
			continue
		}
		if line[i] == ';' {
			i++
			continue
		}
		start := i
		for i < len(line) && isTchar(line[i]) {
			i++
		}
		if i == start {
			return bad(fmt.Sprintf("unexpected %q", line[i]))
		}
		name := line[start:i]
		if i == len(line) || line[i] != '=' {
			return bad(fmt.Sprintf("parameter %q without =value", name))
		}
		i++
		var val string
		if i < len(line) && line[i] == '"' {
			v, n, ok := unquote(line[i:])
			if !ok {
				return bad("bad quoted string")
			}
			val = v
			i += n
		} else {
			vs := i
			for i < len(line) && isTchar(line[i]) {
				i++
			}
			if i == vs {
				return bad(fmt.Sprintf("parameter %q with empty value", name))
			}
			val = line[vs:i]
		}
		if strings.EqualFold(name, "for") {
			if cur.hasFor {
				return bad(`duplicate "for"`)
			}
			cur.forVal, cur.hasFor = val, true
		}
		pairs++
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i < len(line) && line[i] != ';' && line[i] != ',' {
			return bad(fmt.Sprintf("unexpected %q after value", line[i]))
		}
	}
}

// unquote reads a quoted-string at the start of s and returns its value and
// the number of bytes it took. It allocates only if the string holds a
// quoted-pair.
func unquote(s string) (val string, n int, ok bool) {
	var b []byte
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			if b == nil {
				return s[1:i], i + 1, true
			}
			return string(b), i + 1, true
		case c == '\\':
			if i+1 == len(s) || !qdByte(s[i+1]) {
				return "", 0, false
			}
			if b == nil {
				b = append([]byte(nil), s[1:i]...)
			}
			i++
			b = append(b, s[i])
		case !qdByte(c):
			return "", 0, false
		default:
			if b != nil {
				b = append(b, c)
			}
		}
	}
	return "", 0, false
}

// qdByte reports whether c may appear in a quoted string: HTAB, SP, VCHAR,
// obs-text. The caller handles '"' and '\\'.
func qdByte(c byte) bool {
	return c == '\t' || (c >= 0x20 && c != 0x7f)
}

// isTchar reports whether c is an RFC 9110 token character.
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// parseNode parses a Forwarded "for" value (RFC 7239 section 6): an IPv4
// address or a bracketed IPv6 address, optionally with ":port" (digits or an
// obfuscated "_port"). "unknown" and obfuscated identifiers ("_x") are
// ErrNoAddress; anything else off the grammar is ErrMalformed.
func parseNode(v string) (netip.Addr, error) {
	if strings.EqualFold(v, "unknown") || strings.HasPrefix(v, "_") {
		return netip.Addr{}, fmt.Errorf("clientip: %w: Forwarded for=%q", ErrNoAddress, v)
	}
	host, port := v, ""
	if strings.HasPrefix(v, "[") {
		end := strings.IndexByte(v, ']')
		if end < 0 {
			return netip.Addr{}, malformedNode(v)
		}
		host, port = v[1:end], v[end+1:]
		if port != "" && port[0] != ':' {
			return netip.Addr{}, malformedNode(v)
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.Addr{}, malformedNode(v)
		}
		if port != "" && !validPort(port[1:]) {
			return netip.Addr{}, malformedNode(v)
		}
		return a.Unmap(), nil
	}
	if i := strings.IndexByte(v, ':'); i >= 0 {
		host, port = v[:i], v[i+1:]
		if !validPort(port) {
			return netip.Addr{}, malformedNode(v)
		}
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Is4() {
		return netip.Addr{}, malformedNode(v)
	}
	return a, nil
}

func malformedNode(v string) error {
	return fmt.Errorf("clientip: %w: Forwarded for=%q is not an address", ErrMalformed, v)
}

// validPort reports whether p is 1-5 digits or an obfuscated port ("_" then
// letters, digits, ".", "_", "-").
func validPort(p string) bool {
	if p == "" {
		return false
	}
	if p[0] == '_' {
		if len(p) == 1 {
			return false
		}
		for i := 1; i < len(p); i++ {
			c := p[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
				return false
			}
		}
		return true
	}
	if len(p) > 5 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}
