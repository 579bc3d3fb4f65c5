package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/ratelimit"
	"github.com/sekisho/sekisho/internal/rules"
	"github.com/sekisho/sekisho/internal/secret"
	"github.com/sekisho/sekisho/internal/waf"
)

// ruleSets compiles every route's merged rule set (the gateway's rules and
// the route's own), and the gateway's alone for its own endpoints
// (PortalRules). A route with no rules at all and the default allow gets
// nil, so the request path does no rule work. Every problem in every rule
// is returned, each starting with its file:line.
func ruleSets(cfg *config.Config, limiter ratelimit.Limiter, inspector waf.Inspector) (map[string]*rules.Set, error) {
	gateway := convertRules(cfg, cfg.Rules, "rules")
	sets := map[string]*rules.Set{}
	var errs []error
	seen := map[string]bool{}
	for i, rc := range cfg.Routes {
		route := convertRules(cfg, rc.Rules, "routes", i, "rules")
		if len(gateway) == 0 && len(route) == 0 && cfg.RulesDefault == "allow" && rc.RulesDefault != "deny" {
			continue
		}
		set, err := rules.Compile(gateway, route, rules.Options{
			DefaultAction: rules.Action(cfg.RulesDefault), RouteDefaultAction: rules.Action(rc.RulesDefault),
			RouteName: rc.Name, Limiter: limiter, WAF: inspector,
		})
		if err != nil {
			// Gateway rules are compiled with every route: report each problem once.
			if msg := err.Error(); !seen[msg] {
				seen[msg] = true
				errs = append(errs, err) // each problem names its rule and file:line
			}
			continue
		}
		sets[rc.Name] = set
	}
	// The gateway's own endpoints (sign-in above all) run behind the
	// gateway's rules alone, under the key "" that no route can have.
	if len(gateway) > 0 || cfg.RulesDefault != "allow" {
		set, err := rules.Compile(gateway, nil, rules.Options{
			DefaultAction: rules.Action(cfg.RulesDefault), Limiter: limiter, WAF: inspector,
		})
		if err != nil {
			if msg := err.Error(); !seen[msg] {
				errs = append(errs, err)
			}
		} else {
			sets[PortalRules] = set
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return sets, nil
}

// PortalRules is the key of the gateway's own rule set in ruleSets' map:
// the one the endpoints under /.sekisho/ run behind. No route is named "".
const PortalRules = ""

func convertRules(cfg *config.Config, list []config.Rule, path ...any) []rules.Rule {
	out := make([]rules.Rule, 0, len(list))
	for i, r := range list {
		rr := rules.Rule{
			Priority: r.Priority, Description: r.Description, Phase: rules.Phase(r.Phase),
			Match:  rules.Match{IPRanges: r.Match.IPRanges, NotIPRanges: r.Match.NotIPRanges, Expr: r.Match.Expr, WAF: r.Match.WAF},
			Action: rules.Action(r.Action), Status: r.Status, RedirectURL: r.RedirectURL, BanFor: r.BanFor.D(),
			Key: r.Key, AddHeaders: r.AddHeaders, Preview: r.Preview,
			Source: cfg.Pos(append(append([]any{}, path...), i)...), Index: i,
		}
		if r.Rate != nil {
			rr.Rate = ratelimit.Rate{Count: r.Rate.Count, Per: r.Rate.Per.D()}
		}
		out = append(out, rr)
	}
	return out
}

// newWAF compiles the configured WAF, or returns a nil Inspector when there
// is none (rules with match.waf are then a config error).
func newWAF(cfg *config.Config, logger *slog.Logger) (waf.Inspector, error) {
	w := cfg.WAF
	if w == nil {
		return nil, nil
	}
	o, err := waf.New(waf.Options{
		Groups: w.Groups, Paranoia: w.Paranoia, AnomalyThreshold: w.AnomalyThreshold, DisabledRules: w.DisabledRules,
		ExcludeHeaders: w.Exclude.Headers, ExcludeCookies: w.Exclude.Cookies, ExcludeArgs: w.Exclude.Args,
		ParseJSON: w.ParseJSON, BodyLimit: w.BodyLimit, Logger: logger,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Pos("waf"), err)
	}
	return o, nil
}

// newLimiter returns the rate limiter: shared through Redis when
// configured, else in memory (per replica). run, when not nil, must be
// started for the in-memory janitor.
func newLimiter(cfg *config.Config, secrets secret.Resolver, logger *slog.Logger) (ratelimit.Limiter, func(context.Context), error) {
	rc := cfg.Redis
	if rc == nil {
		m, err := ratelimit.NewMemory(ratelimit.MemoryOptions{})
		if err != nil {
			return nil, nil, err
		}
		return m, func(ctx context.Context) { m.Run(ctx) }, nil
	}
	raw, err := secrets.Resolve(rc.URL)
	if err != nil {
		return nil, nil, fmt.Errorf("redis.url: %w", err)
	}
	opt, err := redis.ParseURL(string(raw))
	if err != nil {
		// The URL may hold a password: name the reference, never the value.
		return nil, nil, fmt.Errorf("redis.url (%s): not a redis:// or rediss:// URL", rc.URL)
	}
	opt.ContextTimeoutEnabled = true // our per-call timeout, not go-redis's seconds-long defaults
	opt.MaxRetries = -1
	l, err := ratelimit.NewRedis(ratelimit.RedisOptions{Client: redis.NewClient(opt), Prefix: rc.Prefix, Timeout: rc.Timeout.D(),
		FailOpen: rc.FailOpen, Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	return l, nil, nil
}
