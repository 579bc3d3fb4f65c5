package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"reflect"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/sekisho/sekisho/internal/assert"
	"github.com/sekisho/sekisho/internal/certs"
	"github.com/sekisho/sekisho/internal/clientip"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/ratelimit"
	"github.com/sekisho/sekisho/internal/rules"
	"github.com/sekisho/sekisho/internal/secret"
	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/waf"
)

// Check runs what `serve` runs before listening, minus anything with a side
// effect: validation, secret references, session and assertion keys given in
// the config, TLS files, trusted proxies, the WAF, the rules, and then the
// build of the whole generation serve would run (on throwaway keys). It
// creates no file, opens no database and contacts no server but Secret
// Manager for gcp-secret: references. Every problem is listed, from every
// stage, in one run.
func Check(cfg *config.Config, secrets secret.Resolver) error {
	_, err := CheckKeep(cfg, secrets, nil)
	return err
}

// Checked is a config that passed Check, with what checking it compiled:
// the WAF (slow to compile: the Core Rule Set) and the rule sets. New takes
// it in Options.Checked so that serve compiles nothing twice.
type Checked struct {
	cfg *config.Config
	waf waf.Inspector
	// sets are compiled against limiter, a fresh in-memory one: fit for
	// policy tests and for serve without Redis, not for serve with it.
	sets    map[string]*rules.Set
	limiter *ratelimit.Memory
}

// CheckKeep is Check that keeps what it compiled for New. logger receives
// the WAF's log when the gateway runs; nil discards it.
//
// A config that fails validation is still taken through every later stage
// (secrets, TLS, trusted proxies, WAF, rules), so one run lists every
// problem. A stage skips only the inputs validation already found wrong (an
// unset secret reference, a TLS mode without its files), never reporting
// the same problem twice. The result is nil unless there is no problem.
func CheckKeep(cfg *config.Config, secrets secret.Resolver, logger *slog.Logger) (*Checked, error) {
	mem, err := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	if err != nil {
		return nil, err
	}
	c, err := checkKeep(cfg, secrets, logger, nil, mem)
	if err != nil {
		return nil, err
	}
	// Everything checked: build the generation serve would build (through
	// the same build), so what only building finds is found here too.
	if err := stage("build", func() error { return dryBuild(cfg, secrets, c.sets, c.waf, mem) }); err != nil {
		return nil, err
	}
	c.limiter = mem
	return c, nil
}

// checkKeep runs the stages before the build, compiling the rules against
// limiter. For a reload, limiter is the gateway's own (so the rule sets are
// the ones to serve) and prior the generation in force, whose WAF is kept
// when the new config's waf section is the same (the Core Rule Set takes a
// while to compile); the reload's own build follows.
func checkKeep(cfg *config.Config, secrets secret.Resolver, logger *slog.Logger, prior *generation, limiter ratelimit.Limiter) (*Checked, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(cfg.Validate())
	add(stage("secrets", func() error { return checkSecrets(cfg, secrets) }))
	add(stage("listen.tls", func() error { return checkTLS(cfg) }))
	add(stage("listen.trusted_proxies", func() error { return checkTrustedProxies(cfg) }))
	var inspector waf.Inspector
	add(stage("waf", func() (err error) {
		if prior != nil && reflect.DeepEqual(prior.cfg.WAF, cfg.WAF) {
			inspector = prior.waf
			return nil
		}
		inspector, err = newWAF(cfg, logger.With("component", "waf"))
		return err
	}))
	// Rules compile exactly as serve compiles them; for check, an in-memory
	// limiter stands in for Redis (check contacts no server).
	var sets map[string]*rules.Set
	add(stage("rules", func() (err error) {
		rc, ri := rulesInputs(cfg, inspector)
		sets, err = ruleSets(rc, limiter, ri)
		return err
	}))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Checked{cfg: cfg, waf: inspector, sets: sets}, nil
}

// stage runs one check stage. A panic in it (a bug: a stage met a config
// shape it did not expect) becomes an error naming the stage, so check
// still reports what the other stages found and never crashes.
func stage(name string, run func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("check: %s: internal error, please report it: %v", name, r)
		}
	}()
	return run()
}

// secretRefType is the type the walk in secretRefs looks for.
var secretRefType = reflect.TypeFor[secret.Ref]()

// secretField is one secret reference in the config.
type secretField struct {
	at    []any  // the YAML path, for Config.Pos
	label string // e.g. `oidc.providers[0] "google": client_secret`
	ref   secret.Ref
}

// secretRefs lists every secret.Ref in the config, found by walking its
// types, so a reference field added later is resolved by check without
// anyone remembering to list it here.
func secretRefs(cfg *config.Config) []secretField {
	var out []secretField
	walkRefs(reflect.ValueOf(cfg).Elem(), nil, "", &out)
	return out
}

func walkRefs(v reflect.Value, at []any, label string, out *[]secretField) {
	if v.Type() == secretRefType {
		*out = append(*out, secretField{at: at, label: label, ref: secret.Ref(v.String())})
		return
	}
	join := func(label, field string) string {
		switch {
		case label == "":
			return field
		case strings.HasSuffix(label, `"`): // after a name: oidc.providers[0] "corp": client_secret
			return label + ": " + field
		}
		return label + "." + field
	}
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			walkRefs(v.Elem(), at, label, out)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || tag == "" || tag == "-" {
				continue
			}
			walkRefs(v.Field(i), append(append([]any{}, at...), tag), join(label, tag), out)
		}
	case reflect.Slice:
		for i := range v.Len() {
			el := v.Index(i)
			l := label + "[" + strconv.Itoa(i) + "]"
			// A named element (a provider, a pool) is called by its name too.
			if el.Kind() == reflect.Struct {
				if n := el.FieldByName("Name"); n.IsValid() && n.Kind() == reflect.String && n.String() != "" {
					l += " " + strconv.Quote(n.String())
				}
			}
			walkRefs(el, append(append([]any{}, at...), i), l, out)
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			if k := iter.Key(); k.Kind() == reflect.String {
				walkRefs(iter.Value(), append(append([]any{}, at...), k.String()), join(label, k.String()), out)
			}
		}
	}
}

// checkSecrets resolves every secret reference and parses the values that
// have a format (session keys, assertion keys, the Redis URL). A reference
// that is unset or malformed was reported by Validate and is skipped here.
func checkSecrets(cfg *config.Config, secrets secret.Resolver) error {
	var errs []error
	for _, f := range secretRefs(cfg) {
		if f.ref == "" || f.ref.Check() != nil {
			continue
		}
		raw, err := secrets.Resolve(f.ref)
		if err != nil {
			// Resolve's error names the reference, never the value.
			errs = append(errs, fmt.Errorf("%s: %s: %w", cfg.Pos(f.at...), f.label, err))
			continue
		}
		if err := parseSecret(f.at, raw); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s (%s): %w", cfg.Pos(f.at...), f.label, f.ref, err))
		}
	}
	return errors.Join(errs...)
}

// parseSecret checks a resolved value that has a format. Its errors must
// not quote the value.
func parseSecret(at []any, raw []byte) error {
	field := func(path ...string) bool {
		if len(at) < len(path) {
			return false
		}
		for i, p := range path {
			if at[i] != p {
				return false
			}
		}
		return true
	}
	switch {
	case field("session", "keys"):
		_, err := session.ParseKey(string(raw))
		return err
	case field("assertion", "keys"):
		_, err := assert.ParseKeyPEM(raw)
		return err
	case field("redis", "url"):
		if _, err := redis.ParseURL(string(raw)); err != nil {
			// go-redis's error may quote the URL, which may hold a password.
			return errors.New("not a redis:// or rediss:// URL")
		}
	}
	return nil
}

// checkTLS loads the TLS files and checks the certificate settings, when
// the mode is one Validate knows and the inputs it requires are there.
func checkTLS(cfg *config.Config) error {
	t := cfg.Listen.TLS
	switch t.Mode {
	case "files":
		if t.CertFile == "" || t.KeyFile == "" {
			return nil // Validate names the missing file
		}
	case "self_signed", "acme":
		if cfg.DataDir == "" || t.Mode == "acme" && len(t.ACME.Domains) == 0 {
			return nil // Validate names the missing data_dir or domains
		}
	default:
		return nil // off, or a mode Validate rejected
	}
	if err := certs.Check(certOptions(cfg, nil)); err != nil {
		return fmt.Errorf("%s: listen.tls: %w", cfg.Pos("listen", "tls"), err)
	}
	return nil
}

// checkTrustedProxies builds the client-IP resolver serve builds, from the
// entries Validate accepted (it names the others), so what clientip refuses
// besides (zones, whitespace) is reported once.
func checkTrustedProxies(cfg *config.Config) error {
	var errs []error
	for i, s := range cfg.Listen.TrustedProxies {
		if !validatedPrefix(s) {
			continue
		}
		if _, err := clientip.New([]string{s}); err != nil {
			errs = append(errs, fmt.Errorf("%s: listen.trusted_proxies[%d] %q: %w", cfg.Pos("listen", "trusted_proxies", i), i, s, entryCause(err)))
		}
	}
	return errors.Join(errs...)
}

// entryCause is why clientip.New refused a one-entry list, without its
// "trusted proxy 0" prefix (the index in that list, not in the config's).
func entryCause(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok && len(j.Unwrap()) == 1 {
		err = j.Unwrap()[0]
	}
	if inner := errors.Unwrap(err); inner != nil {
		return inner
	}
	return err
}

// validatedPrefix is what config.Validate accepts as a trusted proxy: an IP
// address or a CIDR prefix.
func validatedPrefix(s string) bool {
	if strings.Contains(s, "/") {
		_, err := netip.ParsePrefix(s)
		return err == nil
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

// rulesInputs returns what ruleSets compiles the rules with. On a config
// that failed validation the rules are still compiled, so their own
// problems are listed too, but around what validation rejected:
//   - an invalid rules_default (Validate names it) is read as allow, so it
//     is not reported again, without a file:line, for every route;
//   - a WAF that failed to compile (its error is listed) is stood in for,
//     so rules with match.waf are not also told that no WAF is configured.
//
// A valid config is returned as it is.
func rulesInputs(cfg *config.Config, inspector waf.Inspector) (*config.Config, waf.Inspector) {
	known := func(d string) bool { return d == "allow" || d == "deny" }
	bad := !known(cfg.RulesDefault)
	for _, r := range cfg.Routes {
		bad = bad || r.RulesDefault != "" && !known(r.RulesDefault)
	}
	c := cfg
	if bad {
		cp := *cfg
		if !known(cp.RulesDefault) {
			cp.RulesDefault = "allow"
		}
		cp.Routes = append([]config.Route(nil), cfg.Routes...)
		for i := range cp.Routes {
			if d := cp.Routes[i].RulesDefault; d != "" && !known(d) {
				cp.Routes[i].RulesDefault = ""
			}
		}
		c = &cp
	}
	if inspector == nil && cfg.WAF != nil {
		inspector = uncompiledWAF{}
	}
	return c, inspector
}

// uncompiledWAF stands in for a configured WAF that failed to compile,
// only so that the rules can be checked; check then fails, so it never
// inspects a request. If it were asked, it would fail closed.
type uncompiledWAF struct{}

func (uncompiledWAF) Inspect(*http.Request) (waf.Verdict, error) {
	return waf.Verdict{}, errors.New("waf: not compiled (the config's waf: section has errors)")
}
