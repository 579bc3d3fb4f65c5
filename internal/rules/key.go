package rules

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// keyPart is one part of a rate-limit key.
type keyPart struct {
	kind string // all, ip, path, user, apikey, header, cookie
	name string // header or cookie name; canonical header key for header
}

// parseKey checks a rule's key parts. Empty means ["ip"].
func parseKey(parts []string, identityOK bool) ([]keyPart, error) {
	if len(parts) == 0 {
		return []keyPart{{kind: "ip"}}, nil
	}
	var errs []error
	if len(parts) > MaxKeyParts {
		errs = append(errs, fmt.Errorf("key has %d parts; at most %d may be combined", len(parts), MaxKeyParts))
	}
	seen := map[string]bool{}
	var out []keyPart
	for _, p := range parts {
		kind, name, hasName := strings.Cut(p, ":")
		kp := keyPart{kind: kind}
		switch {
		case (kind == "header" || kind == "cookie") && hasName:
			if !validHeaderName(name) {
				errs = append(errs, fmt.Errorf("key %q: %q is not a valid %s name", p, name, kind))
			}
			kp.name = name
			if kind == "header" {
				kp.name = http.CanonicalHeaderKey(name)
			}
		case hasName:
			errs = append(errs, fmt.Errorf("key %q: only header: and cookie: take a name", p))
		case kind == "all", kind == "ip", kind == "path":
		case kind == "user", kind == "apikey":
			if !identityOK {
				errs = append(errs, fmt.Errorf("key %q is known only after sign-in: set phase: identity", p))
			}
		case kind == "header" || kind == "cookie":
			errs = append(errs, fmt.Errorf("key %q needs a name: %s:NAME", p, kind))
		default:
			errs = append(errs, fmt.Errorf("key %q is not one of all, ip, path, user, apikey, header:NAME, cookie:NAME", p))
		}
		id := kp.kind + ":" + strings.ToLower(kp.name)
		if seen[id] {
			errs = append(errs, fmt.Errorf("key %q is given twice", p))
		}
		seen[id] = true
		out = append(out, kp)
	}
	if seen["all:"] && len(parts) > 1 {
		errs = append(errs, errors.New(`key "all" counts every request together; it cannot be combined with other parts`))
	}
	return out, errors.Join(errs...)
}

// maxKeyValue is the longest value kept verbatim in a key; longer values
// (a client's header can be as long as it likes) are replaced by a digest.
const maxKeyValue = 64

// escapeKeyValue makes v safe inside a key: '%', '|', '=', '~' and bytes
// outside printable ASCII are percent-escaped, so a value can never forge
// another part's separator; values over maxKeyValue become "~" and a digest,
// which no escaped value can equal since '~' is always escaped.
func escapeKeyValue(v string) string {
	if len(v) > maxKeyValue {
		sum := sha256.Sum256([]byte(v))
		return "~" + base64.RawURLEncoding.EncodeToString(sum[:18])
	}
	clean := true
	for i := 0; i < len(v); i++ {
		if needsEscape(v[i]) {
			clean = false
			break
		}
	}
	if clean {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if needsEscape(c) {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func needsEscape(c byte) bool {
	return c <= ' ' || c >= 0x7f || c == '%' || c == '|' || c == '=' || c == '~'
}

// buildKey returns the rate-limit key of c for the request:
// "<base>|ip=10.1.2.3|user=alice".
func (c *compiled) buildKey(in *Input, ip string) string {
	var b strings.Builder
	b.WriteString(c.keyBase)
	for _, p := range c.key {
		b.WriteByte('|')
		switch p.kind {
		case "all":
			b.WriteString("all")
			continue
		case "ip":
			b.WriteString("ip=")
			b.WriteString(ip)
			continue
		}
		var v string
		switch p.kind {
		case "path":
			v = in.Path
		case "user":
			if in.Identity != nil {
				v = in.Identity.User
			}
		case "apikey":
			v = in.APIKeyID
		case "header":
			if in.Header != nil {
				v = strings.Join(in.Header.Values(p.name), ", ")
			}
		case "cookie":
			if in.Cookie != nil {
				v = in.Cookie(p.name)
			}
		}
		b.WriteString(p.kind)
		if p.name != "" {
			b.WriteByte(':')
			b.WriteString(escapeKeyValue(strings.ToLower(p.name)))
		}
		b.WriteByte('=')
		b.WriteString(escapeKeyValue(v))
	}
	return b.String()
}
