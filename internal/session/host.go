package session

import (
	"fmt"
	"net"
	"strings"
)

// CanonicalHost lower-cases a Host header and removes the port, IPv6
// brackets and one trailing dot: the form a session is bound to, and the
// one the router matches routes on (route.CanonicalHost calls this), so a
// session is bound to exactly what picks the app.
func CanonicalHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.Trim(h, "[]"), ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// underDomain reports whether the canonical host h is domain or a host
// under it, on a label boundary: "a.example.com" is under "example.com",
// "evilexample.com" and "example.com.evil.net" are not.
func underDomain(h, domain string) bool {
	if len(h) == len(domain) {
		return h == domain
	}
	return len(h) > len(domain) && h[len(h)-len(domain)-1] == '.' && strings.HasSuffix(h, domain)
}

// signInDomain checks Options.SignInDomain and returns its canonical form
// (lower case). It must be a DNS name of at least two labels, without a
// leading dot, wildcard, port or trailing dot.
func signInDomain(d string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("session: sign-in domain %q %s (write a parent domain such as example.com)", d, why)
	}
	if len(d) > 253 {
		return bad("is longer than 253 bytes")
	}
	labels := strings.Split(strings.ToLower(d), ".")
	if len(labels) < 2 {
		return bad("has fewer than two labels")
	}
	for _, l := range labels {
		if l == "" {
			return bad("has an empty label (a leading, trailing or double dot)")
		}
		if len(l) > 63 {
			return bad("has a label longer than 63 bytes")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return bad(fmt.Sprintf("contains %q, which is not a letter, digit or hyphen", c))
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return bad("has a label that starts or ends with a hyphen")
		}
	}
	return strings.Join(labels, "."), nil
}
