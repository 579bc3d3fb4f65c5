package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// DefaultUpgrades are the protocols a client may upgrade a request to when
// ProxyOptions.Upgrades is nil: WebSocket only.
var DefaultUpgrades = []string{"websocket"}

// h2cUpgrade is never relayed: an upstream that switches to cleartext
// HTTP/2 on a relayed upgrade would then serve every request inside the
// tunnel, past the gateway's checks (h2c smuggling).
const h2cUpgrade = "h2c"

// CheckUpgrades reports what is wrong with a list of protocols for
// ProxyOptions.Upgrades: an empty or malformed token, or "h2c", which is
// never relayed. NewProxy drops such entries (and logs an error); config
// validation should call this to refuse them with the route's name.
func CheckUpgrades(protocols []string) error {
	var errs []error
	for i, p := range protocols {
		name, _, _ := strings.Cut(p, "/")
		switch {
		case !httpguts.ValidHeaderFieldName(name):
			errs = append(errs, fmt.Errorf("upgrade %d: %q is not a protocol name", i+1, p))
		case strings.EqualFold(name, h2cUpgrade):
			errs = append(errs, fmt.Errorf("upgrade %d: %q: cleartext HTTP/2 upgrades are never relayed (they would tunnel requests past the gateway)", i+1, p))
		}
	}
	return errors.Join(errs...)
}

// upgradeFilter holds the protocols a proxy relays upgrades to, by name,
// lower case.
type upgradeFilter []string

func newUpgradeFilter(protocols []string) (upgradeFilter, error) {
	if protocols == nil {
		protocols = DefaultUpgrades
	}
	err := CheckUpgrades(protocols)
	var f upgradeFilter
	for _, p := range protocols {
		name, _, _ := strings.Cut(p, "/")
		if httpguts.ValidHeaderFieldName(name) && !strings.EqualFold(name, h2cUpgrade) {
			f = append(f, strings.ToLower(name))
		}
	}
	return f, err
}

// allows reports whether the Upgrade token tok (protocol-name["/"version])
// names an allowed protocol.
func (f upgradeFilter) allows(tok string) bool {
	name, _, _ := strings.Cut(tok, "/")
	for _, p := range f {
		if strings.EqualFold(name, p) {
			return true
		}
	}
	return false
}

// apply makes the outbound header h ask for at most one upgrade, to an
// allowed protocol: the first one the client offered. A request that
// offers none (h2c, an unknown protocol, or an Upgrade header without
// "Connection: upgrade") leaves without Upgrade and the "upgrade" token of
// Connection, as an ordinary request, as nginx does. HTTP2-Settings always
// goes. It reports whether an upgrade is left.
func (f upgradeFilter) apply(h http.Header) bool {
	delete(h, "Http2-Settings")
	if h["Upgrade"] == nil {
		return false
	}
	keep := ""
	if hasToken(h["Connection"], "upgrade") {
	offers:
		for _, v := range h["Upgrade"] {
			for tok := range strings.SplitSeq(v, ",") {
				if tok = strings.TrimSpace(tok); f.allows(tok) {
					keep = tok
					break offers
				}
			}
		}
	}
	if keep != "" {
		h["Upgrade"] = []string{keep}
		return true
	}
	delete(h, "Upgrade")
	var conn []string
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" && !strings.EqualFold(tok, "upgrade") {
				conn = append(conn, tok)
			}
		}
	}
	if conn == nil {
		delete(h, "Connection")
	} else {
		h["Connection"] = []string{strings.Join(conn, ", ")}
	}
	return false
}

// hasToken reports whether the comma-separated values vs hold tok,
// compared case-insensitively.
func hasToken(vs []string, tok string) bool {
	return httpguts.HeaderValuesContainsToken(vs, tok)
}
