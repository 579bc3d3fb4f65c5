// Package clientip finds the address of the client behind a request, and the
// scheme and host it used, believing X-Forwarded-For, Forwarded,
// X-Forwarded-Proto and X-Forwarded-Host only when the TCP peer is a
// configured trusted proxy. A client that is not behind a trusted proxy
// cannot change what this package reports by sending those headers.
//
// How the client address is found, when the peer is trusted:
//
//   - Each header is read as one list over all its header lines, in order,
//     and walked from the right (the entry the nearest proxy appended),
//     skipping addresses that are trusted; the first untrusted address is
//     the client. If every entry is trusted, the leftmost is the client.
//     Empty list elements are ignored (RFC 9110 section 5.6.1).
//   - Entries left of the client are never looked at in X-Forwarded-For: a
//     client may put anything there. A malformed entry that the walk reaches,
//     "unknown", or an RFC 7239 obfuscated identifier ("_hidden") is an
//     error: the caller answers 400 rather than guess, and never falls back
//     to an address the client could have chosen.
//   - Forwarded is parsed whole: past a syntax error (an unclosed quote) the
//     element boundaries to its right cannot be trusted, so any syntax error
//     in it is an error. An element without "for=" reached by the walk is an
//     error too.
//   - Precedence: when only one of the two headers is present, it is used.
//     When both are, both are walked and must name the same client;
//     otherwise the result is ErrConflict. A proxy that maintains only one
//     of them (nginx's $proxy_add_x_forwarded_for, for one) passes the other
//     through from the client untouched, so "Forwarded wins" or "XFF wins"
//     would each let a client choose its address behind some proxy. A
//     deployment whose proxies write both headers gets the same answer
//     from each.
//
// Addresses are returned without zone, and IPv4-mapped IPv6 addresses
// (::ffff:192.0.2.1) as IPv4, both for matching trusted prefixes and for the
// result.
package clientip

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// Errors returned by ClientIP; test with errors.Is. The caller answers each
// with 400 Bad Request (ErrBadPeer, which only a misconfigured listener can
// produce, with 500).
var (
	ErrBadPeer   = errors.New("request's RemoteAddr is not an IP address")
	ErrMalformed = errors.New("malformed forwarding header")
	ErrNoAddress = errors.New("forwarding header hides the client address")
	ErrConflict  = errors.New("X-Forwarded-For and Forwarded name different clients")
)

// Resolver knows which peers are trusted proxies. Its methods are safe for
// concurrent use. A nil *Resolver trusts nobody.
type Resolver struct {
	prefixes []netip.Prefix // masked, unmapped, sorted; v4 before v6
}

// New returns a Resolver that trusts the given proxies: each entry is a
// CIDR prefix ("10.0.0.0/8", "2001:db8::/32") or a bare address ("10.1.2.3",
// "::1"). An IPv4-mapped IPv6 entry is taken as its IPv4 form. An entry with
// host bits set ("10.0.0.1/8"), a zone, or surrounding whitespace is an error
// that names the entry and its index. An empty list trusts nobody: the TCP
// peer is always the client.
func New(trusted []string) (*Resolver, error) {
	r := &Resolver{}
	var errs []error
	for i, s := range trusted {
		p, err := parseTrusted(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("clientip: trusted proxy %d %q: %w", i, s, err))
			continue
		}
		r.prefixes = append(r.prefixes, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(r.prefixes, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return r, nil
}

func parseTrusted(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errors.New("empty entry")
	}
	if strings.TrimSpace(s) != s {
		return netip.Prefix{}, errors.New("surrounding whitespace")
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, errors.New("not an IP address or CIDR prefix")
		}
		if a.Zone() != "" {
			return netip.Prefix{}, errors.New("zones are not allowed")
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errors.New("not an IP address or CIDR prefix")
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("host bits set: did you mean %s?", p.Masked())
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, errors.New("IPv4-mapped prefix shorter than /96")
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, nil
}

// Trusted reports whether a is a trusted proxy. a is unmapped and its zone
// dropped first. The zero Addr is never trusted.
func (r *Resolver) Trusted(a netip.Addr) bool {
	if r == nil || !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range r.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Peer returns the TCP peer of req (its RemoteAddr, "ip:port" or a bare
// IP), unmapped and without zone.
func Peer(req *http.Request) (netip.Addr, error) {
	if ap, err := netip.ParseAddrPort(req.RemoteAddr); err == nil {
		return ap.Addr().Unmap().WithZone(""), nil
	}
	if a, err := netip.ParseAddr(req.RemoteAddr); err == nil {
		return a.Unmap().WithZone(""), nil
	}
	return netip.Addr{}, fmt.Errorf("clientip: %w: %q", ErrBadPeer, req.RemoteAddr)
}

func (r *Resolver) peerTrusted(req *http.Request) bool {
	p, err := Peer(req)
	return err == nil && r.Trusted(p)
}

// ClientIP returns the address of the client that sent req: the TCP peer,
// unless the peer is a trusted proxy, in which case the forwarding headers
// are walked as the package documentation describes. An error means the
// request must be refused; the returned Addr is then the zero Addr.
func (r *Resolver) ClientIP(req *http.Request) (netip.Addr, error) {
	peer, err := Peer(req)
	if err != nil {
		return netip.Addr{}, err
	}
	if !r.Trusted(peer) {
		return peer, nil
	}
	fa, fok, err := r.walkForwarded(req.Header.Values("Forwarded"))
	if err != nil {
		return netip.Addr{}, err
	}
	xa, xok, err := r.walkXFF(req.Header.Values("X-Forwarded-For"))
	if err != nil {
		return netip.Addr{}, err
	}
	switch {
	case fok && xok:
		if fa != xa {
			return netip.Addr{}, fmt.Errorf("clientip: %w: X-Forwarded-For gives %s, Forwarded gives %s", ErrConflict, xa, fa)
		}
		return fa, nil
	case fok:
		return fa, nil
	case xok:
		return xa, nil
	}
	return peer, nil
}

// walkXFF walks X-Forwarded-For lines from the right. ok is false when the
// header holds no element at all.
func (r *Resolver) walkXFF(lines []string) (client netip.Addr, ok bool, err error) {
	var leftmost netip.Addr
	for li := len(lines) - 1; li >= 0; li-- {
		s := lines[li]
		for {
			i := strings.LastIndexByte(s, ',')
			elem := trimOWS(s[i+1:])
			if elem != "" {
				a, err := parseXFFElem(elem)
				if err != nil {
					return netip.Addr{}, false, err
				}
				if !r.Trusted(a) {
					return a, true, nil
				}
				leftmost, ok = a, true
			}
			if i < 0 {
				break
			}
			s = s[:i]
		}
	}
	return leftmost, ok, nil
}

// parseXFFElem parses one X-Forwarded-For element: an IP address, optionally
// with a port ("192.0.2.1:443", "[2001:db8::1]:443") or in brackets.
func parseXFFElem(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		if ap, err2 := netip.ParseAddrPort(s); err2 == nil {
			a, err = ap.Addr(), nil
		} else if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
			a, err = netip.ParseAddr(s[1 : len(s)-1])
			if err == nil && !a.Is6() {
				err = errors.New("not IPv6")
			}
		}
	}
	switch {
	case err == nil && a.Zone() == "":
		return a.Unmap(), nil
	case strings.EqualFold(s, "unknown") || strings.HasPrefix(s, "_"):
		return netip.Addr{}, fmt.Errorf("clientip: %w: X-Forwarded-For element %q", ErrNoAddress, s)
	}
	return netip.Addr{}, fmt.Errorf("clientip: %w: X-Forwarded-For element %q is not an IP address", ErrMalformed, s)
}

// walkForwarded walks Forwarded elements from the right. ok is false when
// the header holds no element at all.
func (r *Resolver) walkForwarded(lines []string) (client netip.Addr, ok bool, err error) {
	if len(lines) == 0 {
		return netip.Addr{}, false, nil
	}
	var buf [8]fwdElem
	elems := buf[:0]
	for _, line := range lines {
		if elems, err = parseForwarded(line, elems); err != nil {
			return netip.Addr{}, false, err
		}
	}
	var leftmost netip.Addr
	for i := len(elems) - 1; i >= 0; i-- {
		e := elems[i]
		if !e.hasFor {
			return netip.Addr{}, false, fmt.Errorf("clientip: %w: Forwarded element %d has no for=", ErrNoAddress, i)
		}
		a, err := parseNode(e.forVal)
		if err != nil {
			return netip.Addr{}, false, err
		}
		if !r.Trusted(a) {
			return a, true, nil
		}
		leftmost, ok = a, true
	}
	return leftmost, ok, nil
}

// Proto returns the scheme the client used: "https" when req came over TLS
// to sekisho; otherwise, from a trusted peer only, the rightmost
// X-Forwarded-Proto value if it is "http" or "https" (any case); otherwise
// "http". Forwarded's proto= is not read.
func (r *Resolver) Proto(req *http.Request) string {
	if req.TLS != nil {
		return "https"
	}
	if r.peerTrusted(req) && strings.EqualFold(lastElem(req.Header.Values("X-Forwarded-Proto")), "https") {
		return "https"
	}
	return "http"
}

// Host returns the host the client asked for: from a trusted peer, the
// rightmost X-Forwarded-Host value if it is a plausible host[:port]
// (letters, digits, ".", "-", "_", ":", "[", "]"; at most 261 bytes);
// otherwise req.Host. The value is returned as sent: compare it without
// regard to case.
func (r *Resolver) Host(req *http.Request) string {
	if r.peerTrusted(req) {
		if v := lastElem(req.Header.Values("X-Forwarded-Host")); validHost(v) {
			return v
		}
	}
	return req.Host
}

// lastElem returns the rightmost non-empty element of a comma-separated
// header list spread over lines, without surrounding whitespace.
func lastElem(lines []string) string {
	for li := len(lines) - 1; li >= 0; li-- {
		s := lines[li]
		for {
			i := strings.LastIndexByte(s, ',')
			if e := trimOWS(s[i+1:]); e != "" {
				return e
			}
			if i < 0 {
				break
			}
			s = s[:i]
		}
	}
	return ""
}

func validHost(s string) bool {
	if s == "" || len(s) > 261 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']':
		default:
			return false
		}
	}
	return true
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
