package oidc

import (
	"net/mail"
	"strings"
)

// Limits of an address (RFC 5321 4.5.3.1, with the 254-octet path limit).
const (
	maxAddress = 254
	maxLocal   = 64
	maxDomain  = 253
	maxLabel   = 63
)

// emailAddress returns the lower-cased address when s is exactly one plain
// email address, and false otherwise. The email claim becomes the user name
// and is matched by emails and domains policies, so anything else (a bare
// name like "alice" that would pass for a local account, a display-name
// form "Alice <a@example.com>", a quoted or commented local part, two @,
// a domain literal or a trailing dot) must not.
//
// Accepted: net/mail parses s as one address with no display name, and the
// parsed address is s itself; the local part is 1-64 ASCII characters of
// RFC 5322 dot-atom (letters, digits, !#$%&'*+-/=?^_`{|}~ and single inner
// dots); the domain is at most 253 characters of at least two DNS labels,
// each 1-63 of letters, digits and inner hyphens, the last not all digits
// (so not an IP address). Non-ASCII addresses (SMTPUTF8, U-label domains)
// are refused: they invite look-alikes of a policy's addresses.
//
// The whole address is lower-cased: policies compare emails and domains
// without case, and a provider that changes the case of the local part must
// not make the user a different one.
func emailAddress(s string) (string, bool) {
	if s == "" || len(s) > maxAddress || strings.Count(s, "@") != 1 {
		return "", false
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "", false
	}
	local, domain, _ := strings.Cut(s, "@")
	if !dotAtom(local) || !dnsName(domain) {
		return "", false
	}
	return strings.ToLower(s), true
}

// dotAtom reports whether local is a 1-64 character ASCII dot-atom.
func dotAtom(local string) bool {
	if local == "" || len(local) > maxLocal {
		return false
	}
	for atom := range strings.SplitSeq(local, ".") {
		if atom == "" {
			return false
		}
		for _, c := range []byte(atom) {
			if !isAtext(c) {
				return false
			}
		}
	}
	return true
}

// isAtext reports whether c is an RFC 5322 atext character.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// dnsName reports whether domain is a host name of at least two labels of
// letters, digits and inner hyphens, without a trailing dot, whose last
// label is not all digits.
func dnsName(domain string) bool {
	if len(domain) > maxDomain {
		return false
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > maxLabel || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range []byte(l) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return strings.ContainsFunc(labels[len(labels)-1], func(r rune) bool { return r < '0' || r > '9' })
}
