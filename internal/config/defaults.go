package config

import "time"

// Defaults that Load fills in where the file leaves a field empty.
const (
	DefaultDataDir           = "sekisho-data"
	DefaultAddress           = "127.0.0.1:8080"
	DefaultHSTSMaxAge        = 365 * 24 * time.Hour
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultShutdownGrace     = 30 * time.Second
	DefaultSessionLifetime   = 12 * time.Hour
	DefaultSessionIdle       = time.Hour
	DefaultMaxFailures       = 5
	DefaultIPMaxFailures     = 20
	DefaultFailureWindow     = 15 * time.Minute
	DefaultLockout           = 15 * time.Minute
	DefaultIssuer            = "sekisho"
	DefaultAssertionLifetime = 5 * time.Minute
	MaxAssertionLifetime     = 10 * time.Minute
	DefaultRouteTimeout      = 300 * time.Second
	DefaultStreamIdle        = 5 * time.Minute
	DefaultMaxFails          = 3
	DefaultEjectFor          = 30 * time.Second
	DefaultHCInterval        = 10 * time.Second
	DefaultHCTimeout         = 5 * time.Second
	DefaultHealthyThreshold  = 2
	DefaultUnhealthyThresh   = 3
	DefaultAuditMaxPending   = 8 << 20
	DefaultBodyTimeout       = 30 * time.Second
	DefaultBodyMinRate       = 1024
)

func setDur(d *Duration, v time.Duration) {
	if *d == 0 {
		*d = Duration(v)
	}
}

func setInt(i *int, v int) {
	if *i == 0 {
		*i = v
	}
}

func setStr(s *string, v string) {
	if *s == "" {
		*s = v
	}
}

// applyDefaults fills every empty field that has a default. It is called by
// Parse, so a loaded Config is complete; Validate then checks the result.
func (c *Config) applyDefaults() {
	setStr(&c.DataDir, DefaultDataDir)
	setStr(&c.Store.Driver, "sqlite")
	l := &c.Listen
	setStr(&l.Address, DefaultAddress)
	setStr(&l.TLS.Mode, "off")
	if l.HSTSMaxAge == nil {
		d := Duration(DefaultHSTSMaxAge)
		l.HSTSMaxAge = &d
	}
	if len(l.TLS.SelfSignedHosts) == 0 {
		l.TLS.SelfSignedHosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	setDur(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setInt(&l.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setDur(&c.ShutdownGrace, DefaultShutdownGrace)
	setDur(&c.Session.Lifetime, DefaultSessionLifetime)
	setDur(&c.Session.IdleTimeout, DefaultSessionIdle)
	la := &c.LocalAccounts
	if la.Enabled == nil {
		t := true
		la.Enabled = &t
	}
	setInt(&la.MaxFailures, DefaultMaxFailures)
	setInt(&la.IPMaxFailures, DefaultIPMaxFailures)
	setDur(&la.Window, DefaultFailureWindow)
	setDur(&la.Lockout, DefaultLockout)
	setStr(&c.RulesDefault, "allow")
	defaultRules(c.Rules)
	if w := c.WAF; w != nil {
		setInt(&w.Paranoia, 1)
		setInt(&w.AnomalyThreshold, 5)
		if w.BodyLimit == 0 {
			w.BodyLimit = 32 << 10
		}
	}
	if r := c.Redis; r != nil {
		setStr(&r.Prefix, "sekisho:rl:")
		setDur(&r.Timeout, 50*time.Millisecond)
	}
	setDur(&c.OIDC.Timeout, 10*time.Second)
	setDur(&c.OIDC.StateTTL, 10*time.Minute)
	setDur(&c.OIDC.DiscoveryTTL, 5*time.Minute)
	setDur(&c.APIKeys.PollInterval, 2*time.Second)
	setDur(&c.APIKeys.LastUsedFlush, time.Minute)
	for i := range c.BearerIssuers {
		b := &c.BearerIssuers[i]
		setStr(&b.SubjectClaim, "sub")
		setStr(&b.GroupsClaim, "groups")
		setDur(&b.Leeway, 30*time.Second)
	}
	setStr(&c.Assertion.Issuer, DefaultIssuer)
	setDur(&c.Assertion.Lifetime, DefaultAssertionLifetime)
	setStr(&c.Audit.Output, "stdout")
	setStr(&c.Audit.OnFailure, "block")
	setInt(&c.Audit.MaxPending, DefaultAuditMaxPending)
	for i := range c.Pools {
		p := &c.Pools[i]
		setStr(&p.Balance, "round_robin")
		setInt(&p.MaxFails, DefaultMaxFails)
		setDur(&p.EjectFor, DefaultEjectFor)
		if hc := p.HealthCheck; hc != nil {
			setDur(&hc.Interval, DefaultHCInterval)
			setDur(&hc.Timeout, DefaultHCTimeout)
			setInt(&hc.HealthyThreshold, DefaultHealthyThreshold)
			setInt(&hc.UnhealthyThreshold, DefaultUnhealthyThresh)
		}
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		setStr(&r.Path, "/")
		setDur(&r.Timeout, DefaultRouteTimeout)
		setDur(&r.StreamIdleTimeout, DefaultStreamIdle)
		setDur(&r.RequestBodyTimeout, DefaultBodyTimeout)
		if r.RequestBodyMinRate == 0 {
			r.RequestBodyMinRate = DefaultBodyMinRate
		}
		if r.Upgrades == nil {
			r.Upgrades = []string{"websocket"}
		}
		defaultRules(r.Rules)
	}
}

func defaultRules(rs []Rule) {
	for i := range rs {
		setStr(&rs[i].Phase, "edge")
		if len(rs[i].Key) == 0 && (rs[i].Action == "throttle" || rs[i].Action == "rate_based_ban") {
			rs[i].Key = []string{"ip"}
		}
		if rs[i].Action == "deny" && rs[i].Status == 0 {
			rs[i].Status = 403
		}
	}
}

// LocalEnabled reports whether local accounts are on.
func (c *Config) LocalEnabled() bool {
	return c.LocalAccounts.Enabled == nil || *c.LocalAccounts.Enabled
}

// TLSOn reports whether the listener terminates TLS itself.
func (c *Config) TLSOn() bool { return c.Listen.TLS.Mode != "off" && c.Listen.TLS.Mode != "" }

// SecureCookies reports whether clients reach sekisho over HTTPS, so cookies
// can be Secure and use the __Host- prefix.
func (c *Config) SecureCookies() bool { return c.TLSOn() || c.Listen.BehindHTTPSProxy }
