package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// problems collects validation errors, each prefixed with its file:line.
type problems struct {
	c    *Config
	errs []error
}

func (p *problems) add(at []any, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: %s", p.c.pos(at...), fmt.Sprintf(format, args...)))
}

// Validate checks the whole config and returns every problem it finds
// (errors.Join), each naming file:line and the route, pool or setting it is
// about. It is pure: no file system, no network, no globals.
func (c *Config) Validate() error {
	p := &problems{c: c}
	if c.Version != 1 {
		p.add([]any{"version"}, "version must be 1 (got %d)", c.Version)
	}
	if c.DataDir == "" {
		p.add([]any{"data_dir"}, "data_dir must not be empty")
	}
	switch st := c.Store; st.Driver {
	case "sqlite":
		if st.URL != "" {
			p.add([]any{"store", "url"}, "store.url is for driver postgres; driver sqlite keeps its database in data_dir")
		}
	case "postgres":
		if st.URL == "" {
			p.add([]any{"store"}, "store.url is required with driver postgres (a secret reference such as env:SEKISHO_DATABASE_URL)")
		} else if err := st.URL.Check(); err != nil {
			p.add([]any{"store", "url"}, "store.url: %v", err)
		}
	default:
		p.add([]any{"store", "driver"}, "store.driver %q: want sqlite or postgres", st.Driver)
	}
	c.validateListen(p)
	c.validateRuleSettings(p)
	c.validateSession(p)
	c.validateAdmin(p)
	pools := c.validatePools(p)
	issuers := c.validateIssuers(p)
	c.validateOIDC(p)
	c.validateRoutes(p, pools, issuers)
	for i, h := range c.StripHeaders {
		if name, _ := strings.CutSuffix(h, "*"); !headerNameRE.MatchString(name) {
			p.add([]any{"strip_headers", i}, "strip_headers[%d] %q is not a header name (an HTTP token, optionally ending in * for a prefix)", i, h)
		}
	}
	return errors.Join(p.errs...)
}

func (c *Config) validateListen(p *problems) {
	l := c.Listen
	host, ok := checkHostPort(p, []any{"listen", "address"}, "listen.address", l.Address)
	t := l.TLS
	switch t.Mode {
	case "off":
		if ok && !isLoopback(host) && !l.BehindHTTPSProxy && !l.InsecurePlainHTTP {
			p.add([]any{"listen", "address"}, "listen.address %q is not loopback but TLS is off: session cookies would cross the network in clear text; set listen.tls.mode, or behind_https_proxy: true if an HTTPS proxy terminates TLS in front, or insecure_plain_http: true", l.Address)
		}
		if l.HTTPRedirectAddress != "" {
			p.add([]any{"listen", "http_redirect_address"}, "listen.http_redirect_address needs TLS on (listen.tls.mode)")
		}
	case "self_signed":
		for i, h := range t.SelfSignedHosts {
			if h == "" || strings.ContainsAny(h, " /:@") && net.ParseIP(h) == nil {
				p.add([]any{"listen", "tls", "self_signed_hosts", i}, "listen.tls.self_signed_hosts[%d] %q is not a host name or IP address", i, h)
			}
		}
	case "files":
		if t.CertFile == "" {
			p.add([]any{"listen", "tls"}, "listen.tls.cert_file is required in mode \"files\"")
		}
		if t.KeyFile == "" {
			p.add([]any{"listen", "tls"}, "listen.tls.key_file is required in mode \"files\"")
		}
	case "acme":
		if len(t.ACME.Domains) == 0 {
			p.add([]any{"listen", "tls", "acme"}, "listen.tls.acme.domains must list at least one domain in mode \"acme\"")
		}
		for i, d := range t.ACME.Domains {
			if !validDNSName(d) || strings.Contains(d, "*") {
				p.add([]any{"listen", "tls", "acme", "domains", i}, "listen.tls.acme.domains[%d] %q is not a DNS name (wildcards need DNS-01, which sekisho does not do)", i, d)
			}
		}
		if u := t.ACME.DirectoryURL; u != "" {
			if pu, err := url.Parse(u); err != nil || pu.Scheme != "https" || pu.Host == "" {
				p.add([]any{"listen", "tls", "acme", "directory_url"}, "listen.tls.acme.directory_url %q must be an https URL", u)
			}
		}
	default:
		p.add([]any{"listen", "tls", "mode"}, "listen.tls.mode %q: want off, self_signed, files or acme", t.Mode)
	}
	if l.HTTPRedirectAddress != "" {
		checkHostPort(p, []any{"listen", "http_redirect_address"}, "listen.http_redirect_address", l.HTTPRedirectAddress)
	}
	for i, s := range l.TrustedProxies {
		if _, err := parsePrefix(s); err != nil {
			p.add([]any{"listen", "trusted_proxies", i}, "listen.trusted_proxies[%d] %q is not an IP address or CIDR", i, s)
		}
	}
	if l.MaxHeaderBytes < 4096 || l.MaxHeaderBytes > 1<<20 {
		p.add([]any{"listen", "max_header_bytes"}, "listen.max_header_bytes %d must be between 4096 and 1048576", l.MaxHeaderBytes)
	}
}

func (c *Config) validateSession(p *problems) {
	s := c.Session
	if s.IdleTimeout > s.Lifetime {
		p.add([]any{"session", "idle_timeout"}, "session.idle_timeout %s is longer than session.lifetime %s", s.IdleTimeout.D(), s.Lifetime.D())
	}
	for i, k := range s.Keys {
		if err := k.Check(); err != nil {
			p.add([]any{"session", "keys", i}, "session.keys[%d]: %v", i, err)
		}
	}
	la := c.LocalAccounts
	if la.MaxFailures < 1 || la.IPMaxFailures < 1 {
		p.add([]any{"local_accounts"}, "local_accounts.max_failures and ip_max_failures must be at least 1")
	}
	a := c.Assertion
	if a.Lifetime.D() > MaxAssertionLifetime {
		p.add([]any{"assertion", "lifetime"}, "assertion.lifetime %s is longer than the maximum %s", a.Lifetime.D(), MaxAssertionLifetime)
	}
	for i, k := range a.Keys {
		if err := k.Check(); err != nil {
			p.add([]any{"assertion", "keys", i}, "assertion.keys[%d]: %v", i, err)
		}
	}
	switch c.Audit.Output {
	case "stdout", "stderr":
	default:
		if !path.IsAbs(c.Audit.Output) && !strings.HasPrefix(c.Audit.Output, ".") {
			p.add([]any{"audit", "output"}, "audit.output %q: want stdout, stderr or a file path (absolute, or starting with ./)", c.Audit.Output)
		}
	}
	switch c.Audit.OnFailure {
	case "block", "drop_and_count":
	default:
		p.add([]any{"audit", "on_failure"}, "audit.on_failure %q: want block or drop_and_count", c.Audit.OnFailure)
	}
	if c.Audit.MaxPending < 64<<10 {
		p.add([]any{"audit", "max_pending"}, "audit.max_pending %d is below the minimum 65536 bytes", c.Audit.MaxPending)
	}
	if d := s.SignInDomain; d != "" {
		if strings.HasPrefix(d, ".") || strings.HasPrefix(d, "*") || !validDNSName(d) || !strings.Contains(d, ".") {
			p.add([]any{"session", "sign_in_domain"}, "session.sign_in_domain %q is not a parent domain name (write example.com: no leading dot or wildcard, at least two labels)", d)
		}
	}
}

func (c *Config) validateAdmin(p *problems) {
	a := c.Admin
	if a.Address == "" {
		return
	}
	host, ok := checkHostPort(p, []any{"admin", "address"}, "admin.address", a.Address)
	if ok && !isLoopback(host) && !a.InsecurePublicAdmin {
		p.add([]any{"admin", "address"}, "admin.address %q is not loopback: metrics would be public; use 127.0.0.1 or set insecure_public_admin: true", a.Address)
	}
}

// validatePools checks pools and returns the set of valid names.
func (c *Config) validatePools(p *problems) map[string]bool {
	names := map[string]bool{}
	for i, pl := range c.Pools {
		at := func(k ...any) []any { return append([]any{"pools", i}, k...) }
		label := fmt.Sprintf("pool %q", pl.Name)
		if pl.Name == "" {
			label = fmt.Sprintf("pools[%d]", i)
			p.add(at(), "%s: name is required", label)
		} else if !nameRE.MatchString(pl.Name) {
			p.add(at("name"), "%s: name must be 1-63 characters of a-z 0-9 . _ - starting with a letter or digit", label)
		} else if names[pl.Name] {
			p.add(at("name"), "%s: duplicate pool name", label)
		}
		names[pl.Name] = true
		switch {
		case pl.Builtin != "" && len(pl.URLs) > 0:
			p.add(at("builtin"), "%s: set either urls or builtin, not both", label)
		case pl.Builtin != "" && pl.Builtin != "whoami":
			p.add(at("builtin"), "%s: unknown builtin %q (want whoami)", label, pl.Builtin)
		case pl.Builtin == "" && len(pl.URLs) == 0:
			p.add(at(), "%s: urls must list at least one upstream URL", label)
		}
		seen := map[string]bool{}
		for j, raw := range pl.URLs {
			if err := checkUpstreamURL(raw); err != nil {
				p.add(at("urls", j), "%s: upstream %q %v", label, raw, err)
			} else if seen[raw] {
				p.add(at("urls", j), "%s: upstream %q is listed twice", label, raw)
			}
			seen[raw] = true
		}
		if pl.Balance != "round_robin" && pl.Balance != "least_requests" {
			p.add(at("balance"), "%s: balance %q: want round_robin or least_requests", label, pl.Balance)
		}
		if pl.MaxFails < 1 {
			p.add(at("max_fails"), "%s: max_fails must be at least 1", label)
		}
		if g := pl.GoogleIDToken; g != nil {
			switch {
			case pl.Builtin != "":
				p.add(at("google_id_token"), "%s: google_id_token is for Cloud Run servers under urls, not a builtin", label)
			case strings.ContainsAny(g.Audience, " \t\n"):
				p.add(at("google_id_token", "audience"), "%s: google_id_token.audience %q must not contain spaces", label, g.Audience)
			}
			for j, raw := range pl.URLs {
				if u, err := url.Parse(raw); err == nil && u.Scheme != "https" && !isLoopback(u.Hostname()) {
					p.add(at("urls", j), "%s: upstream %q gets an ID token (google_id_token): use https, or the token crosses the network in the clear", label, raw)
				}
			}
		}
		if hc := pl.HealthCheck; hc != nil {
			if !strings.HasPrefix(hc.Path, "/") {
				p.add(at("health_check"), "%s: health_check.path %q must start with /", label, hc.Path)
			}
			if hc.Timeout >= hc.Interval {
				p.add(at("health_check", "timeout"), "%s: health_check.timeout %s must be shorter than interval %s", label, hc.Timeout.D(), hc.Interval.D())
			}
			if hc.HealthyThreshold < 1 || hc.UnhealthyThreshold < 1 {
				p.add(at("health_check"), "%s: health_check thresholds must be at least 1", label)
			}
		}
	}
	return names
}

func checkUpstreamURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("does not parse as a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("must start with http:// or https://")
	case u.Host == "" || u.Hostname() == "":
		return errors.New("has no host")
	case u.User != nil:
		return errors.New("must not carry user:password (put credentials in the app, not the URL)")
	case u.RawQuery != "" || u.Fragment != "" || strings.Contains(raw, "?") || strings.Contains(raw, "#"):
		return errors.New("must not have a query or fragment")
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("has an invalid port %q", port)
		}
	}
	return nil
}

// validateIssuers checks bearer issuers and IAP trust; returns valid names.
func (c *Config) validateIssuers(p *problems) map[string]bool {
	names := map[string]bool{}
	for i, b := range c.BearerIssuers {
		at := func(k ...any) []any { return append([]any{"bearer_issuers", i}, k...) }
		label := fmt.Sprintf("bearer issuer %q", b.Name)
		switch {
		case b.Name == "":
			label = fmt.Sprintf("bearer_issuers[%d]", i)
			p.add(at(), "%s: name is required", label)
		case !nameRE.MatchString(b.Name):
			p.add(at("name"), "%s: name must be 1-63 characters of a-z 0-9 . _ - starting with a letter or digit", label)
		case names[b.Name]:
			p.add(at("name"), "%s: duplicate issuer name", label)
		}
		names[b.Name] = true
		if err := checkIssuerURL(b.IssuerURL); err != nil {
			p.add(at("issuer_url"), "%s: issuer_url %q %v", label, b.IssuerURL, err)
		}
		if b.JWKSURL != "" {
			if err := checkIssuerURL(b.JWKSURL); err != nil {
				p.add(at("jwks_url"), "%s: jwks_url %q %v", label, b.JWKSURL, err)
			}
		}
		if len(b.Audiences) == 0 {
			p.add(at(), "%s: audiences must list at least one audience (without one, a token minted for any other service would be accepted)", label)
		}
		for j, a := range b.Audiences {
			if strings.TrimSpace(a) == "" {
				p.add(at("audiences", j), "%s: audiences[%d] is empty", label, j)
			}
		}
		if b.Leeway.D() > 5*time.Minute {
			p.add(at("leeway"), "%s: leeway %s is longer than 5m", label, b.Leeway.D())
		}
	}
	if iap := c.Listen.TrustGoogleIAP; iap != nil {
		if !strings.HasPrefix(iap.Audience, "/projects/") {
			p.add([]any{"listen", "trust_google_iap", "audience"}, "listen.trust_google_iap.audience %q: want /projects/NUMBER/global/backendServices/ID or /projects/NUMBER/apps/PROJECT_ID", iap.Audience)
		}
		if iap.JWKSURL != "" {
			if err := checkIssuerURL(iap.JWKSURL); err != nil {
				p.add([]any{"listen", "trust_google_iap", "jwks_url"}, "listen.trust_google_iap.jwks_url %q %v", iap.JWKSURL, err)
			}
		}
	}
	return names
}

var providerNameRE = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// validateOIDC checks the OIDC providers (the oidc package checks again,
// without network, when the server starts).
func (c *Config) validateOIDC(p *problems) {
	names := map[string]bool{}
	for i, pr := range c.OIDC.Providers {
		at := func(k ...any) []any { return append([]any{"oidc", "providers", i}, k...) }
		label := fmt.Sprintf("oidc provider %q", pr.Name)
		switch {
		case !providerNameRE.MatchString(pr.Name) || pr.Name == "local" || pr.Name == "apikey":
			p.add(at("name"), "%s: name must be 1-32 characters of a-z 0-9 _ - and not local or apikey", label)
		case names[pr.Name]:
			p.add(at("name"), "%s: duplicate provider name", label)
		}
		names[pr.Name] = true
		switch pr.Preset {
		case "":
			if err := checkIssuerURL(pr.Issuer); err != nil {
				p.add(at("issuer"), "%s: issuer %q %v", label, pr.Issuer, err)
			}
			if len(pr.AllowedDomains) > 0 {
				p.add(at("allowed_domains"), "%s: allowed_domains applies to the google preset only (for other providers, use a policy's domains:)", label)
			}
		case "google":
			if pr.Issuer != "" && pr.Issuer != "https://accounts.google.com" {
				p.add(at("issuer"), "%s: the google preset fixes the issuer; remove issuer %q", label, pr.Issuer)
			}
		default:
			p.add(at("preset"), "%s: preset %q: want google or nothing", label, pr.Preset)
		}
		if pr.ClientID == "" {
			p.add(at(), "%s: client_id is required", label)
		}
		if pr.ClientSecret == "" {
			p.add(at(), "%s: client_secret is required (env:NAME or file:/path)", label)
		} else if err := pr.ClientSecret.Check(); err != nil {
			p.add(at("client_secret"), "%s: client_secret: %v", label, err)
		}
	}
}

// validateRuleSettings checks what surrounds the rules; the rules
// themselves (expressions, CIDRs, rates) are compiled and checked by the
// rules package when `check` or `serve` provisions them.
func (c *Config) validateRuleSettings(p *problems) {
	if c.RulesDefault != "allow" && c.RulesDefault != "deny" {
		p.add([]any{"rules_default"}, "rules_default %q: want allow or deny", c.RulesDefault)
	}
	for i, r := range c.Routes {
		if r.RulesDefault != "" && r.RulesDefault != "allow" && r.RulesDefault != "deny" {
			p.add([]any{"routes", i, "rules_default"}, "route %q: rules_default %q: want allow or deny", r.Name, r.RulesDefault)
		}
	}
	if rd := c.Redis; rd != nil {
		if rd.URL == "" {
			p.add([]any{"redis"}, "redis.url is required (env:NAME or file:/path holding redis://...)")
		} else if err := rd.URL.Check(); err != nil {
			p.add([]any{"redis", "url"}, "redis.url: %v", err)
		}
	}
}

// checkIssuerURL accepts https URLs, and http only to loopback (tests, sidecars).
func checkIssuerURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "":
		return errors.New("is not an absolute URL")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	}
	return errors.New("must be https (http only to a loopback address)")
}

func (c *Config) validateRoutes(p *problems, pools, issuers map[string]bool) {
	if len(c.Routes) == 0 {
		p.add([]any{}, "no routes: add at least one under routes:")
	}
	names := map[string]bool{}
	where := map[string]string{} // host+path -> route name
	for i, r := range c.Routes {
		at := func(k ...any) []any { return append([]any{"routes", i}, k...) }
		label := fmt.Sprintf("route %q", r.Name)
		if r.Name == "" {
			label = fmt.Sprintf("routes[%d]", i)
			p.add(at(), "%s: name is required", label)
		} else if !nameRE.MatchString(r.Name) {
			p.add(at("name"), "%s: name must be 1-63 characters of a-z 0-9 . _ - starting with a letter or digit", label)
		} else if names[r.Name] {
			p.add(at("name"), "%s: duplicate route name", label)
		}
		names[r.Name] = true
		if err := checkRouteHost(r.Host); err != nil {
			p.add(at("host"), "%s: host %q %v", label, r.Host, err)
		}
		if err := checkRoutePath(r.Path); err != nil {
			p.add(at("path"), "%s: path %q %v", label, r.Path, err)
		}
		key := strings.ToLower(r.Host) + " " + r.Path
		if other, dup := where[key]; dup {
			p.add(at("path"), "%s: host %q path %q is already served by route %q", label, r.Host, r.Path, other)
		} else {
			where[key] = r.Name
		}
		switch {
		case r.Pool == "":
			p.add(at(), "%s: pool is required", label)
		case !pools[r.Pool]:
			p.add(at("pool"), "%s: pool %q is not defined under pools:", label, r.Pool)
		}
		if r.Timeout == 0 || r.StreamIdleTimeout == 0 {
			p.add(at(), "%s: timeout and stream_idle_timeout must be above zero", label)
		}
		c.validatePolicy(p, at, label, r.Policy)
		for j, u := range r.Upgrades {
			switch {
			case strings.EqualFold(strings.SplitN(u, "/", 2)[0], "h2c"):
				p.add(at("upgrades", j), "%s: upgrades[%d] \"h2c\" is refused: an upstream that switches to cleartext HTTP/2 would serve requests inside the connection that sekisho never checks", label, j)
			case !tokenRE.MatchString(u):
				p.add(at("upgrades", j), "%s: upgrades[%d] %q is not a protocol name (an HTTP token such as websocket, optionally /version)", label, j, u)
			}
		}
		for j, o := range r.AllowedOrigins {
			if err := checkOrigin(o); err != nil {
				p.add(at("allowed_origins", j), "%s: allowed_origins[%d] %q %v", label, j, o, err)
			}
		}
		if r.RequestBodyMinRate < 0 {
			p.add(at("request_body_min_rate"), "%s: request_body_min_rate %d is negative (bytes per second)", label, r.RequestBodyMinRate)
		}
		for j, n := range r.Auth.BearerIssuers {
			if !issuers[n] {
				p.add(at("auth", "bearer_issuers", j), "%s: auth.bearer_issuers[%d] %q is not defined under bearer_issuers:", label, j, n)
			}
		}
	}
}

func (c *Config) validatePolicy(p *problems, at func(...any) []any, label string, pol *Policy) {
	if pol == nil {
		p.add(at(), "%s: has no policy: say who may use it (policy: users/emails/domains/groups, allow_authenticated: true, or public: true); deny is the default", label)
		return
	}
	lists := len(pol.Users) + len(pol.Emails) + len(pol.Domains) + len(pol.Groups)
	switch {
	case pol.Public && (lists > 0 || pol.AllowAuthenticated):
		p.add(at("policy"), "%s: policy.public cannot be combined with allow lists (public lets everyone in)", label)
	case !pol.Public && !pol.AllowAuthenticated && lists == 0:
		p.add(at("policy"), "%s: policy allows no one: add users, emails, domains or groups, or allow_authenticated: true", label)
	}
	for j, e := range pol.Emails {
		if i := strings.IndexByte(e, '@'); i <= 0 || i == len(e)-1 || strings.Count(e, "@") != 1 || strings.ContainsAny(e, " \t") {
			p.add(at("policy", "emails", j), "%s: policy.emails[%d] %q is not an email address", label, j, e)
		}
	}
	for j, d := range pol.Domains {
		if strings.HasPrefix(d, "@") || !validDNSName(d) {
			p.add(at("policy", "domains", j), "%s: policy.domains[%d] %q is not a domain name (write example.com, without @)", label, j, d)
		}
	}
	for j, g := range pol.Groups {
		if strings.TrimSpace(g) == "" {
			p.add(at("policy", "groups", j), "%s: policy.groups[%d] is empty", label, j)
		}
	}
	for j, u := range pol.Users {
		if strings.TrimSpace(u) == "" {
			p.add(at("policy", "users", j), "%s: policy.users[%d] is empty", label, j)
		}
	}
}

// checkRouteHost accepts an exact DNS name or IP, "*.suffix", or "*".
func checkRouteHost(h string) error {
	switch {
	case h == "":
		return errors.New("is required (a name such as app.example.com, a wildcard *.example.com, or * for any host)")
	case h == "*":
		return nil
	case strings.HasPrefix(h, "*."):
		if !validDNSName(h[2:]) {
			return errors.New("is not a valid wildcard (want *.example.com)")
		}
		return nil
	case strings.Contains(h, "*"):
		return errors.New("may only use * as the whole first label (*.example.com)")
	case strings.Contains(h, ":") && net.ParseIP(strings.Trim(h, "[]")) == nil:
		return errors.New("must not include a port")
	case net.ParseIP(strings.Trim(h, "[]")) != nil:
		return nil
	case !validDNSName(h):
		return errors.New("is not a valid host name")
	}
	return nil
}

func checkRoutePath(pth string) error {
	switch {
	case !strings.HasPrefix(pth, "/"):
		return errors.New("must start with /")
	case strings.ContainsAny(pth, "%\\?#\x00") || strings.ContainsFunc(pth, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("must be a plain decoded path (no %, \\, ?, # or control characters)")
	case pth != "/" && path.Clean(pth) != strings.TrimSuffix(pth, "/"):
		return errors.New("must be normalised (no //, . or .. segments)")
	case pth == "/.sekisho" || strings.HasPrefix(pth, "/.sekisho/"):
		return errors.New("is under /.sekisho/, which is reserved for the gateway itself")
	}
	return nil
}

var dnsLabelRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)

// tokenRE is a protocol in an Upgrade header (RFC 9110 section 7.8): an
// HTTP token, optionally "/" and a version token.
var tokenRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+(/[!#$%&'*+.^_`|~0-9A-Za-z-]+)?$")

// headerNameRE is an HTTP header name (a token).
var headerNameRE = regexp.MustCompile("^[!#$%&'+.^_`|~0-9A-Za-z-]+$")

// checkOrigin accepts a serialised origin: scheme "http" or "https", a
// host, an optional port, and nothing else ("https://app.example.com").
func checkOrigin(o string) error {
	u, err := url.Parse(o)
	switch {
	case err != nil:
		return errors.New("is not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("must start with https:// or http://")
	case u.Host == "" || u.User != nil:
		return errors.New("must name a host and nothing before it")
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return errors.New("must be an origin only: no path, query or fragment (https://app.example.com)")
	case strings.ToLower(o) != o:
		return errors.New("must be lower case, as browsers send it")
	case u.Scheme == "https" && u.Port() == "443", u.Scheme == "http" && u.Port() == "80":
		return errors.New("names the scheme's default port, which browsers leave out of Origin: drop it")
	}
	return nil
}

func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !dnsLabelRE.MatchString(l) {
			return false
		}
	}
	return true
}

func checkHostPort(p *problems, at []any, field, addr string) (string, bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		p.add(at, "%s %q is not host:port", field, addr)
		return "", false
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.add(at, "%s %q has an invalid port", field, addr)
		return "", false
	}
	return host, true
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Risks lists settings that are valid but weaken security; `check` prints
// them and `serve` logs them as warnings at start-up.
func (c *Config) Risks() []string {
	var r []string
	if c.Listen.InsecurePlainHTTP {
		r = append(r, fmt.Sprintf("%s: listen.insecure_plain_http is set: session cookies cross the network in clear text", c.pos("listen", "insecure_plain_http")))
	}
	if c.Redis != nil && c.Redis.FailOpen {
		r = append(r, fmt.Sprintf("%s: redis.fail_open is set: while Redis is down each replica enforces limits alone (N replicas allow N times the rate)", c.pos("redis", "fail_open")))
	}
	if c.Admin.InsecurePublicAdmin {
		r = append(r, fmt.Sprintf("%s: admin.insecure_public_admin is set: metrics are reachable from the network", c.pos("admin", "insecure_public_admin")))
	}
	for i, s := range c.Listen.TrustedProxies {
		if pf, err := parsePrefix(s); err == nil && pf.Bits() == 0 {
			r = append(r, fmt.Sprintf("%s: listen.trusted_proxies[%d] %q trusts every address: any client can spoof its IP with X-Forwarded-For", c.pos("listen", "trusted_proxies", i), i, s))
		}
	}
	open := map[string]bool{} // issuers on routes that admit any authenticated identity
	for _, rt := range c.Routes {
		if rt.Policy != nil && rt.Policy.AllowAuthenticated {
			for _, n := range rt.Auth.BearerIssuers {
				open[n] = true
			}
		}
	}
	for i, b := range c.BearerIssuers {
		if len(b.RequiredClaims) == 0 && open[b.Name] {
			r = append(r, fmt.Sprintf("%s: bearer issuer %q has no required_claims and a route admits any authenticated identity: anyone who can get a token from this issuer with the audience gets in (for GitHub Actions, any repository can)", c.pos("bearer_issuers", i), b.Name))
		}
	}
	for i, pr := range c.OIDC.Providers {
		if pr.Preset == "google" && len(pr.AllowedDomains) == 0 {
			r = append(r, fmt.Sprintf("%s: oidc provider %q (google) has no allowed_domains: any Google account, Gmail included, can sign in", c.pos("oidc", "providers", i), pr.Name))
		}
		if pr.InsecureTrustUnverifiedEmail {
			r = append(r, fmt.Sprintf("%s: oidc provider %q trusts unverified email addresses: a user may claim anyone's address", c.pos("oidc", "providers", i), pr.Name))
		}
	}
	used := map[string]bool{}
	for i, rt := range c.Routes {
		used[rt.Pool] = true
		if rt.Policy != nil && rt.Policy.Public {
			r = append(r, fmt.Sprintf("%s: route %q is public: anyone can reach it without signing in", c.pos("routes", i, "policy"), rt.Name))
			if strings.HasPrefix(rt.Host, "*") && len(rt.AllowedOrigins) == 0 {
				r = append(r, fmt.Sprintf("%s: route %q is public on the wildcard host %q: a DNS-rebinding page can reach it from a victim's browser under any name, and the app's own localhost check sees the upstream's address; name the host, or list allowed_origins", c.pos("routes", i, "host"), rt.Name, rt.Host))
			}
		}
		for j, u := range rt.Upgrades {
			if !strings.EqualFold(u, "websocket") {
				r = append(r, fmt.Sprintf("%s: route %q allows the upgrade %q: the upstream serves whatever flows inside it unchecked", c.pos("routes", i, "upgrades", j), rt.Name, u))
			}
		}
	}
	for i, pl := range c.Pools {
		if !used[pl.Name] {
			r = append(r, fmt.Sprintf("%s: pool %q is not used by any route", c.pos("pools", i), pl.Name))
		}
	}
	return r
}
