// Package config defines sekisho's configuration file: its types, a strict
// loader (unknown keys, wrong types and trailing documents are errors with
// file:line) and a pure Validate that lists every problem it finds.
//
// The file is YAML with `version: 1`. Durations are strings such as "30s".
// Every field's comment says its default and what its zero value means.
package config

import "github.com/sekisho/sekisho/internal/secret"

// Config is the whole configuration file.
type Config struct {
	// Version of the file format. Required; only 1 exists.
	Version int `yaml:"version"`
	// DataDir holds the SQLite database, generated keys and certificates.
	// Default "sekisho-data". A relative path is resolved against the
	// directory of the config file, so every command given the file opens
	// the same store wherever it runs; with the embedded quickstart (no
	// --config) against the working directory. --data-dir overrides it and,
	// like any flag, is relative to the working directory.
	DataDir string `yaml:"data_dir"`
	// Store is where accounts, API keys, revocations and OIDC refresh
	// tokens live. Default: the embedded SQLite database in DataDir.
	Store Store `yaml:"store"`
	// Listen is the public listener.
	Listen Listen `yaml:"listen"`
	// Session configures browser session cookies.
	Session Session `yaml:"session"`
	// LocalAccounts configures sign-in with accounts kept in sekisho's store.
	LocalAccounts LocalAccounts `yaml:"local_accounts"`
	// OIDC configures sign-in with Google and other OpenID Connect
	// providers. No providers (the default): only local accounts.
	OIDC OIDC `yaml:"oidc"`
	// APIKeys tunes how API keys (created with `sekisho apikey create`) are
	// checked. The zero value is right for most deployments.
	APIKeys APIKeys `yaml:"api_keys"`
	// BearerIssuers are OIDC issuers whose ID tokens (JWTs) machines may
	// present as bearer tokens: Google service accounts, GitHub Actions,
	// Kubernetes service accounts. A route accepts the issuers it names in
	// auth.bearer_issuers. Empty: no bearer tokens anywhere.
	BearerIssuers []BearerIssuer `yaml:"bearer_issuers"`
	// Assertion configures the signed identity JWT sent to upstreams.
	Assertion Assertion `yaml:"assertion"`
	// Audit configures the decision log.
	Audit Audit `yaml:"audit"`
	// Admin configures the admin listener (Prometheus metrics). Off by default.
	Admin Admin `yaml:"admin"`
	// ShutdownGrace is how long in-flight requests may run after SIGTERM
	// before their connections are closed. Default "30s".
	ShutdownGrace Duration `yaml:"shutdown_grace"`
	// Rules is the gateway's security rule set, merged with each route's own
	// rules by priority (lowest first; the first match acts). Empty: none.
	Rules []Rule `yaml:"rules"`
	// RulesDefault is what happens when no rule matches: "allow" (default:
	// the route's policy still decides) or "deny".
	RulesDefault string `yaml:"rules_default"`
	// WAF configures the OWASP Core Rule Set that rules with match.waf use.
	// Nil (the default): no WAF; a rule with match.waf is a config error.
	WAF *WAF `yaml:"waf"`
	// Redis, when set, shares rate limits and bans between replicas.
	// Nil (the default): limits are kept in memory, per replica.
	Redis *Redis `yaml:"redis"`
	// Pools are the upstream server groups routes send requests to.
	Pools []Pool `yaml:"pools"`
	// StripHeaders are request headers removed before forwarding, on top
	// of the built-in list (sekisho's own headers and the identity and
	// URL-override headers of other proxies: X-Original-URL, X-Rewrite-URL,
	// X-Auth-Request-*, Remote-User, X-Remote-User, ...; see the README).
	// Matched case-insensitively with '_' read as '-'; a trailing "*" makes
	// a prefix ("X-Corp-Auth-*"). Empty (the default): the built-in list.
	StripHeaders []string `yaml:"strip_headers"`
	// Routes map a host and path prefix to a pool and a policy.
	Routes []Route `yaml:"routes"`

	// source is where the file came from; set by Load, used for error positions.
	source *source
}

// Listen is the public listener.
type Listen struct {
	// Address to listen on, host:port. Default "127.0.0.1:8080".
	Address string `yaml:"address"`
	// TLS for the listener. Default: off (plain HTTP, only sensible on
	// loopback or behind an HTTPS load balancer).
	TLS TLS `yaml:"tls"`
	// HTTPRedirectAddress, when TLS is on, is a plain-HTTP listener that
	// answers ACME HTTP-01 challenges and redirects everything else to HTTPS.
	// Empty: no such listener.
	HTTPRedirectAddress string `yaml:"http_redirect_address"`
	// HSTSMaxAge is the Strict-Transport-Security max-age sent when TLS is
	// on. Default "8760h" (one year); "0s" disables the header.
	HSTSMaxAge *Duration `yaml:"hsts_max_age"`
	// TrustedProxies are the addresses (IPs or CIDRs) of proxies in front of
	// sekisho whose X-Forwarded-For / Forwarded / X-Forwarded-Proto headers
	// are believed. Empty (the default): no one is trusted and those headers
	// are ignored.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// BehindHTTPSProxy says that clients reach sekisho over HTTPS terminated
	// by a proxy in front of it (Cloud Run, a load balancer), so cookies are
	// marked Secure although this listener speaks plain HTTP. Default false.
	BehindHTTPSProxy bool `yaml:"behind_https_proxy"`
	// InsecurePlainHTTP allows plain HTTP on a non-loopback address without
	// BehindHTTPSProxy: session cookies then cross the network in clear text.
	// Default false; sekisho warns at start-up when it is set.
	InsecurePlainHTTP bool `yaml:"insecure_plain_http"`
	// TrustGoogleIAP, when set, believes the x-goog-iap-jwt-assertion
	// header of Google's Identity-Aware Proxy in front of sekisho (verified:
	// ES256, Google's keys, this audience) and uses it as the identity.
	// Nil (the default): the header is ignored and removed.
	TrustGoogleIAP *GoogleIAP `yaml:"trust_google_iap"`
	// ReadHeaderTimeout bounds how long a client may take to send request
	// headers. Default "10s".
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// MaxHeaderBytes bounds the size of request headers. Default 65536.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
}

// TLS configures the listener's certificate.
type TLS struct {
	// Mode is "off" (default), "self_signed", "files" or "acme".
	Mode string `yaml:"mode"`
	// CertFile and KeyFile are PEM files, for mode "files".
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// SelfSignedHosts are the names in the self-signed certificate.
	// Default: localhost, 127.0.0.1, ::1.
	SelfSignedHosts []string `yaml:"self_signed_hosts"`
	// ACME obtains certificates from an ACME CA, for mode "acme".
	ACME ACME `yaml:"acme"`
}

// ACME configures automatic certificates.
type ACME struct {
	// DirectoryURL of the ACME CA. Default: Let's Encrypt production.
	DirectoryURL string `yaml:"directory_url"`
	// Email for the CA account (expiry notices). Optional.
	Email string `yaml:"email"`
	// Domains to obtain certificates for. Required in mode "acme"; a TLS
	// handshake for any other name is refused without contacting the CA.
	Domains []string `yaml:"domains"`
	// CARootsFile is a PEM file of extra roots trusted when talking to the
	// ACME CA (for a private CA). Optional.
	CARootsFile string `yaml:"ca_roots_file"`
}

// OIDC configures sign-in through OpenID Connect providers.
type OIDC struct {
	// Timeout bounds every call to a provider (discovery, token, keys).
	// Default "10s".
	Timeout Duration `yaml:"timeout"`
	// StateTTL is how long a started sign-in may take. Default "10m".
	StateTTL Duration `yaml:"state_ttl"`
	// DiscoveryTTL is how long a provider's discovery document is kept.
	// Default "5m".
	DiscoveryTTL Duration `yaml:"discovery_ttl"`
	// Providers offered on the sign-in page, in this order.
	Providers []OIDCProvider `yaml:"providers"`
}

// OIDCProvider is one OpenID Connect provider. Register the redirect URI
// https://HOST/.sekisho/oidc/callback with it for every host users reach.
type OIDCProvider struct {
	// Name in URLs, sessions and audit lines: 1-32 of a-z 0-9 _ -, not
	// "local". Required, unique.
	Name string `yaml:"name"`
	// Label on the sign-in button. Default: the name ("Google" for the
	// google preset).
	Label string `yaml:"label"`
	// Preset "google" fixes the issuer to https://accounts.google.com and
	// checks allowed_domains against the hd claim. Empty: generic OIDC.
	Preset string `yaml:"preset"`
	// Issuer URL, found by discovery. Required without a preset.
	Issuer string `yaml:"issuer"`
	// ClientID registered with the provider. Required.
	ClientID string `yaml:"client_id"`
	// ClientSecret reference (env:NAME, file:/path or gcp-secret:projects/P/secrets/NAME/versions/V). Required.
	ClientSecret secret.Ref `yaml:"client_secret"`
	// Scopes requested. Default: openid email profile (add offline_access
	// for refresh tokens).
	Scopes []string `yaml:"scopes"`
	// AuthParams are extra authorization request parameters, e.g.
	// {access_type: offline} for Google. Empty: none.
	AuthParams map[string]string `yaml:"auth_params"`
	// GroupsClaim names the claim holding groups: "groups", "roles", or a
	// nested path such as "realm_access.roles". Empty: no groups.
	GroupsClaim string `yaml:"groups_claim"`
	// KeepGroups keeps only these groups in the session (the cookie must
	// stay under 1 KiB). Empty: keep all.
	KeepGroups []string `yaml:"keep_groups"`
	// AllowedDomains (google preset): the hd claim must be one of these
	// Workspace domains. Empty: any Google account, which check flags.
	AllowedDomains []string `yaml:"allowed_domains"`
	// InsecureTrustUnverifiedEmail uses the email claim even when the
	// provider does not mark it verified. Default false.
	InsecureTrustUnverifiedEmail bool `yaml:"insecure_trust_unverified_email"`
}

// GoogleIAP configures trust in Google's Identity-Aware Proxy.
type GoogleIAP struct {
	// Audience of the IAP assertion: "/projects/NUMBER/global/backendServices/ID"
	// or "/projects/NUMBER/apps/PROJECT_ID". Required.
	Audience string `yaml:"audience"`
	// JWKSURL of Google's IAP keys. Default Google's public URL.
	JWKSURL string `yaml:"jwks_url"`
}

// APIKeys tunes API-key checking.
type APIKeys struct {
	// PollInterval is how often each replica looks for created and revoked
	// keys: the longest a revoked key keeps working. Default "2s".
	PollInterval Duration `yaml:"poll_interval"`
	// LastUsedFlush is how often last-used times are written. Default "1m".
	LastUsedFlush Duration `yaml:"last_used_flush"`
}

// BearerIssuer is a trusted issuer of machine identity tokens.
type BearerIssuer struct {
	// Name of the issuer in routes' auth.bearer_issuers, and the identity's
	// provider: a token's identity is "NAME:SUBJECT". Required, unique.
	Name string `yaml:"name"`
	// IssuerURL is the exact "iss" claim and the base of OIDC discovery.
	// Required; https (or http to loopback).
	IssuerURL string `yaml:"issuer_url"`
	// Audiences: the token's "aud" must contain one. Required.
	Audiences []string `yaml:"audiences"`
	// JWKSURL of the issuer's keys. Empty: found by discovery.
	JWKSURL string `yaml:"jwks_url"`
	// SubjectClaim becomes the identity's name. Default "sub"; "email"
	// suits Google service accounts.
	SubjectClaim string `yaml:"subject_claim"`
	// GroupsClaim becomes the identity's groups. Default "groups"; "-": none.
	GroupsClaim string `yaml:"groups_claim"`
	// RequiredClaims must be present with exactly these string values, e.g.
	// {repository_owner: example-org} for GitHub Actions, whose tokens any
	// repository can mint. Empty: none (check warns for public issuers).
	RequiredClaims map[string]string `yaml:"required_claims"`
	// Leeway is the clock skew allowed on exp, iat and nbf. Default "30s",
	// at most "5m".
	Leeway Duration `yaml:"leeway"`
}

// RouteAuth says which credentials besides browser sessions a route takes.
type RouteAuth struct {
	// AuthorizationHeader lets machines send sekisho API keys and bearer
	// tokens in Authorization, besides Proxy-Authorization (always read).
	// Default false: Authorization belongs to the app (Dify's and
	// Flowise's own API keys pass through untouched).
	AuthorizationHeader bool `yaml:"authorization_header"`
	// BearerIssuers names the bearer_issuers whose tokens the route takes.
	// Empty: none.
	BearerIssuers []string `yaml:"bearer_issuers"`
	// MaxAge demands that a browser session signed in within this long
	// (re-authentication for sensitive routes). Default 0: any valid session.
	MaxAge Duration `yaml:"max_age"`
}

// Session configures browser session cookies.
type Session struct {
	// Lifetime is the absolute life of a session. Default "12h".
	Lifetime Duration `yaml:"lifetime"`
	// IdleTimeout ends a session unused for this long. Default "1h".
	IdleTimeout Duration `yaml:"idle_timeout"`
	// Keys seal the cookie (32 bytes each, base64), first one seals, all
	// open (rotation). Empty (the default): a key is generated into the data
	// directory on first start.
	Keys []secret.Ref `yaml:"keys"`
	// SignInDomain makes the hosts under one parent domain one sign-in
	// domain: the session cookie is set for that domain (Domain=, with the
	// __Secure- prefix on HTTPS) and is accepted on the domain itself and
	// on every host under it ("example.com": dify.example.com and
	// flowise.example.com share a sign-in). Empty (the default): a cookie
	// is bound to the one host that issued it and refused on any other.
	SignInDomain string `yaml:"sign_in_domain"`
}

// Store selects the state database.
type Store struct {
	// Driver is "sqlite" (the default: sekisho.db in data_dir, for one
	// machine) or "postgres" (one database shared by every replica).
	Driver string `yaml:"driver"`
	// URL is the Postgres connection URL, as a secret reference
	// ("env:SEKISHO_DATABASE_URL"): it holds the password. Required with
	// driver postgres; not allowed with sqlite. Use sslmode=verify-full
	// for a database across the network.
	URL secret.Ref `yaml:"url"`
}

// LocalAccounts configures sign-in with sekisho's own accounts.
type LocalAccounts struct {
	// Enabled turns local sign-in on. Default true.
	Enabled *bool `yaml:"enabled"`
	// MaxFailures per account within Window before the account is locked
	// for Lockout. Default 5.
	MaxFailures int `yaml:"max_failures"`
	// IPMaxFailures per client IP within Window. Default 20.
	IPMaxFailures int `yaml:"ip_max_failures"`
	// Window over which failures are counted. Default "15m".
	Window Duration `yaml:"window"`
	// Lockout is how long a locked account or IP waits. Default "15m".
	Lockout Duration `yaml:"lockout"`
}

// Assertion configures the signed identity JWT (X-Sekisho-Assertion).
type Assertion struct {
	// Issuer is the iss claim. Default "sekisho".
	Issuer string `yaml:"issuer"`
	// Lifetime of a token. Default "5m"; at most "10m".
	Lifetime Duration `yaml:"lifetime"`
	// Keys are PEM ECDSA P-256 private keys; the first signs, all are
	// published at /.sekisho/jwks.json. Empty (the default): a key is
	// generated into the data directory on first start.
	Keys []secret.Ref `yaml:"keys"`
}

// Audit configures the decision log.
type Audit struct {
	// Output is "stdout" (default), "stderr", or a file path (appended to).
	Output string `yaml:"output"`
	// OnFailure says what happens when audit lines cannot be written (disk
	// full, a closed pipe) and the bounded buffer of unwritten lines
	// (MaxPending) is full: "block" (the default) makes requests wait until
	// the lines can be written, so no decision is ever lost; "drop_and_count"
	// drops new lines, counting each on stderr and in the
	// sekisho_audit_dropped_lines_total metric. Either way the writer keeps
	// retrying and /.sekisho/healthz reports unhealthy while lines wait.
	OnFailure string `yaml:"on_failure"`
	// MaxPending is how many bytes of unwritten lines are kept while the
	// output fails. Default 8388608 (8 MiB).
	MaxPending int `yaml:"max_pending"`
}

// Admin configures the admin listener.
type Admin struct {
	// Address for /metrics. Empty (the default): no admin listener. A
	// non-loopback address needs InsecurePublicAdmin.
	Address string `yaml:"address"`
	// InsecurePublicAdmin allows a non-loopback admin address. Default false.
	InsecurePublicAdmin bool `yaml:"insecure_public_admin"`
}

// Pool is a group of upstream servers.
type Pool struct {
	// Name that routes refer to. Required, unique.
	Name string `yaml:"name"`
	// URLs of the servers (http or https, optionally with a base path).
	// Required unless Builtin is set.
	URLs []string `yaml:"urls"`
	// Builtin runs an upstream inside sekisho instead of URLs: "whoami"
	// shows the identity an app receives. Empty: none.
	Builtin string `yaml:"builtin"`
	// Balance is "round_robin" (default) or "least_requests".
	Balance string `yaml:"balance"`
	// HealthCheck actively probes each server. Nil: no active checks;
	// servers are only ejected passively on connection failures.
	HealthCheck *HealthCheck `yaml:"health_check"`
	// MaxFails consecutive connection failures eject a server for
	// EjectFor. Default 3.
	MaxFails int `yaml:"max_fails"`
	// EjectFor is how long a passively ejected server rests. Default "30s".
	EjectFor Duration `yaml:"eject_for"`
	// GoogleIDToken, when set, sends every request and health check to
	// the servers with a Google-signed ID token of sekisho's service
	// account in X-Serverless-Authorization (fetched from the metadata
	// server, cached until shortly before it expires), for Cloud Run
	// services with internal ingress that grant roles/run.invoker to that
	// account alone. The app's own Authorization header is left alone.
	// Nil: none.
	GoogleIDToken *GoogleIDToken `yaml:"google_id_token"`
}

// GoogleIDToken configures ID tokens for Cloud Run upstreams.
type GoogleIDToken struct {
	// Audience the tokens are for. Empty (the default): each server's
	// own URL, scheme and host (https://flowise-abc-an.a.run.app), which
	// is what Cloud Run expects.
	Audience string `yaml:"audience"`
}

// HealthCheck is an active HTTP health check with load-balancer semantics.
type HealthCheck struct {
	// Path requested on each server, e.g. "/healthz". Required.
	Path string `yaml:"path"`
	// Interval between checks. Default "10s".
	Interval Duration `yaml:"interval"`
	// Timeout of one check. Default "5s"; must be below Interval.
	Timeout Duration `yaml:"timeout"`
	// HealthyThreshold consecutive successes mark a server healthy. Default 2.
	HealthyThreshold int `yaml:"healthy_threshold"`
	// UnhealthyThreshold consecutive failures mark it unhealthy. Default 3.
	UnhealthyThreshold int `yaml:"unhealthy_threshold"`
}

// Route maps requests to a pool.
type Route struct {
	// Name identifies the route in logs, metrics and as the assertion's
	// audience. Required, unique.
	Name string `yaml:"name"`
	// Host is an exact host name, a wildcard "*.example.com" (one or more
	// labels), or "*" for any host. Required.
	Host string `yaml:"host"`
	// Path prefix, matched on whole segments after normalisation. Default "/".
	Path string `yaml:"path"`
	// Pool that serves the route. Required.
	Pool string `yaml:"pool"`
	// Timeout for a whole normal response. Streams (Server-Sent Events,
	// WebSocket) are exempt and bounded only by StreamIdleTimeout.
	// Default "300s".
	Timeout Duration `yaml:"timeout"`
	// StreamIdleTimeout ends a response that sends no bytes for this long.
	// Default "5m".
	StreamIdleTimeout Duration `yaml:"stream_idle_timeout"`
	// PreserveHost sends the client's Host header upstream. Default false:
	// the upstream URL's host (X-Forwarded-Host carries the client's).
	PreserveHost bool `yaml:"preserve_host"`
	// Upgrades are the protocols a client may switch to through this route
	// with an Upgrade header, compared case-insensitively. Default
	// ["websocket"]. "h2c" is refused: it would let an upstream serve
	// requests inside the upgraded connection that sekisho never sees.
	Upgrades []string `yaml:"upgrades"`
	// AllowedOrigins are the origins ("https://app.example.com") a browser
	// request may come from: a request whose Origin header names another
	// origin is refused with 403 (cross-site and DNS-rebinding protection);
	// a request without Origin passes that check. On a route with an exact
	// host, the route's own origin is allowed too. On a wildcard host it is
	// not, and the route answers only the hosts of the listed origins, so a
	// DNS-rebinding page (same-origin GETs carry no Origin) is refused by
	// its Host. Empty (the default): no check.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// RequestBodyTimeout is the window over which a request body's upload
	// rate is measured: every window from the body's start must carry
	// RequestBodyMinRate bytes per second on average, else the request ends
	// with 408 and the upstream connection is closed. Default "30s"; "-1s":
	// no limit.
	RequestBodyTimeout Duration `yaml:"request_body_timeout"`
	// RequestBodyMinRate is the slowest upload rate allowed, in bytes per
	// second averaged over each RequestBodyTimeout window. Default 1024.
	RequestBodyMinRate int64 `yaml:"request_body_min_rate"`
	// Policy says who may use the route. Required: a route without a
	// policy is a config error (deny by default).
	Policy *Policy `yaml:"policy"`
	// Auth says which machine credentials the route takes and how fresh a
	// sign-in must be. API keys scoped to the route are always accepted.
	Auth RouteAuth `yaml:"auth"`
	// Rules are the route's own security rules, merged with the gateway's
	// by priority; priorities must be unique across both. Empty: none.
	Rules []Rule `yaml:"rules"`
	// RulesDefault overrides the gateway's rules_default for this route.
	// Empty: the gateway's.
	RulesDefault string `yaml:"rules_default"`
}

// Rule is one security rule: a match and an action, like a Cloud Armor rule.
type Rule struct {
	// Priority orders the rules, lowest first; only the first match acts.
	// Required (1 or more), unique among the rules a route sees.
	Priority int `yaml:"priority"`
	// Description names the rule in check errors and audit lines.
	Description string `yaml:"description"`
	// Phase is "edge" (default: before sign-in, sees the request only) or
	// "identity" (after sign-in, also sees identity.*).
	Phase string `yaml:"phase"`
	// Match: every condition given must hold. At least one is required.
	Match RuleMatch `yaml:"match"`
	// Action is allow, deny, redirect, throttle or rate_based_ban. Required.
	Action string `yaml:"action"`
	// Status for deny: 403 (default), 404, 429 or 502.
	Status int `yaml:"status"`
	// RedirectURL for redirect: an absolute http(s) URL.
	RedirectURL string `yaml:"redirect_url"`
	// Rate for throttle and rate_based_ban.
	Rate *Rate `yaml:"rate"`
	// BanFor is how long rate_based_ban bans a key over the rate.
	BanFor Duration `yaml:"ban_for"`
	// Key says what is counted, up to three of: all, ip, path, user,
	// apikey, header:NAME, cookie:NAME. Default [ip].
	Key []string `yaml:"key"`
	// AddHeaders are added to the upstream request when an allow rule
	// matches. Empty: none.
	AddHeaders map[string]string `yaml:"add_headers"`
	// Preview logs what the rule would have done without doing it.
	Preview bool `yaml:"preview"`
}

// RuleMatch is what a rule matches on.
type RuleMatch struct {
	// IPRanges: the client IP (after trusted-proxy resolution) is in one.
	IPRanges []string `yaml:"ip_ranges"`
	// NotIPRanges: the client IP is in none of these.
	NotIPRanges []string `yaml:"not_ip_ranges"`
	// Expr is a CEL expression returning bool over origin.ip,
	// request.{method,path,query,headers,host,scheme} and, in the identity
	// phase, identity.{user,email,groups,kind}; inIpRange(ip, cidr) helps.
	Expr string `yaml:"expr"`
	// WAF: the WAF (top-level waf:) flags the request. Edge phase only.
	WAF bool `yaml:"waf"`
}

// Rate is Count requests per Per.
type Rate struct {
	Count int      `yaml:"count"`
	Per   Duration `yaml:"per"`
}

// WAF configures the OWASP Core Rule Set v4 (embedded, run by Coraza).
type WAF struct {
	// Groups of CRS rules to load: sqli, xss, lfi, rfi, rce,
	// scanner-detection, protocol-attack, session-fixation, php, java,
	// nodejs. Empty: all.
	Groups []string `yaml:"groups"`
	// Paranoia is the CRS paranoia level (sensitivity), 1-4. Default 1.
	Paranoia int `yaml:"paranoia"`
	// AnomalyThreshold is the inbound anomaly score that flags a request.
	// Default 5 (the CRS default).
	AnomalyThreshold int `yaml:"anomaly_threshold"`
	// DisabledRules are CRS rule ids to opt out of. Empty: none.
	DisabledRules []int `yaml:"disabled_rules"`
	// Exclude names request parts not inspected.
	Exclude WAFExclude `yaml:"exclude"`
	// ParseJSON inspects JSON bodies field by field (LLM prompts are JSON).
	// Default false: JSON bodies are not inspected.
	ParseJSON bool `yaml:"parse_json"`
	// BodyLimit is how many body bytes are inspected; the rest passes
	// uninspected. Default 32768 (the CRS costs CPU per byte).
	BodyLimit int64 `yaml:"body_limit"`
}

// WAFExclude names headers, cookies and arguments the WAF skips.
type WAFExclude struct {
	Headers []string `yaml:"headers"`
	Cookies []string `yaml:"cookies"`
	// Args are query or body arguments; JSON paths like json.messages.*.content.
	Args []string `yaml:"args"`
}

// Redis shares rate limits and bans between replicas.
type Redis struct {
	// URL reference (env:NAME, file:/path or gcp-secret:…) holding redis://… or
	// rediss://… (it may contain a password). Required.
	URL secret.Ref `yaml:"url"`
	// Prefix of sekisho's keys. Default "sekisho:rl:".
	Prefix string `yaml:"prefix"`
	// Timeout of one call. Default "50ms".
	Timeout Duration `yaml:"timeout"`
	// FailOpen keeps per-replica in-memory limits while Redis is down.
	// Default false: requests under a rate rule are refused while Redis is
	// down. Known bans are always enforced.
	FailOpen bool `yaml:"fail_open"`
}

// Policy is a route's allow list. A request is allowed when the route is
// public, when it carries an API key scoped to the route (creating the key
// was the grant), or when the identity matches any one entry.
type Policy struct {
	// Public lets anyone through without signing in. Default false; cannot
	// be combined with allow lists.
	Public bool `yaml:"public"`
	// AllowAuthenticated lets any signed-in identity through. Default false.
	AllowAuthenticated bool `yaml:"allow_authenticated"`
	// Users are identities allowed by name: a local account ("alice"), an
	// API key ("apikey:ci-bot"), a bearer token ("ISSUER:SUBJECT", e.g.
	// "github-actions:repo:example-org/app:ref:refs/heads/main").
	Users []string `yaml:"users"`
	// Emails are exact email addresses allowed (case-insensitive).
	Emails []string `yaml:"emails"`
	// Domains are email domains allowed, e.g. "example.com".
	Domains []string `yaml:"domains"`
	// Groups allowed: a member of any listed group gets through.
	Groups []string `yaml:"groups"`
}
