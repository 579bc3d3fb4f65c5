package cli

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sekisho/sekisho/internal/apikey"
	"github.com/sekisho/sekisho/internal/server"
	"github.com/sekisho/sekisho/internal/store"
)

const apikeySynopsis = `apikey <create|list|revoke> [flags]

  apikey create --name NAME --route ROUTE [--route ROUTE2] [--methods GET,POST]
                [--paths /api/v1,/api/v2] [--expires 90d|720h|never]
                                     print a new key once; only its hash is kept
  apikey list                        every key: scope, expiry, last use, status
  apikey revoke NAME|ID              refuse the key on every replica within seconds`

// stringList is a repeatable, comma-splitting flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error {
	*l = append(*l, splitList(s)...)
	return nil
}

func runAPIKey(env Env, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(env.Stderr, "Usage: sekisho %s\n", apikeySynopsis)
		if len(args) == 0 {
			return usageError{"name an apikey command: create, list or revoke"}
		}
		return nil
	}
	sub := args[0]
	fs := flags(env, "apikey "+sub, apikeySynopsis)
	cfgPath := fs.String("config", "", "config file whose data_dir holds the keys and whose routes keys may name (default: the embedded quickstart)")
	dataDir := fs.String("data-dir", "", "override data_dir")
	name := fs.String("name", "", "the key's name, unique (create)")
	var routes, methods, paths stringList
	fs.Var(&routes, "route", "a route the key is valid on; repeat or comma-separate for several (create)")
	fs.Var(&methods, "methods", "comma-separated methods the key may use; default any (create)")
	fs.Var(&paths, "paths", "comma-separated path prefixes the key may reach; default any (create)")
	expires := fs.String("expires", "90d", "lifetime: days (90d), a duration (720h), or never (create)")
	rest := args[1:]
	var target string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		target, rest = rest[0], rest[1:]
	}
	if err := parse(fs, rest); err != nil {
		return err
	}
	if target == "" && fs.NArg() > 0 {
		target = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	switch sub {
	case "create", "list":
		if target != "" {
			return usageError{fmt.Sprintf("apikey %s takes no argument %q (use --name)", sub, target)}
		}
	case "revoke":
		if target == "" {
			return usageError{"apikey revoke: name the key (its name or id)"}
		}
	default:
		return usageError{fmt.Sprintf("unknown apikey command %q: want create, list or revoke", sub)}
	}
	var lifetime time.Duration
	if sub == "create" {
		if *name == "" {
			return usageError{"apikey create: --name is required"}
		}
		if len(routes) == 0 {
			return usageError{"apikey create: --route is required (the routes the key may use)"}
		}
		var err error
		if lifetime, err = apikey.ParseLifetime(*expires); err != nil {
			return usageError{"--expires: " + err.Error()}
		}
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if sub == "create" {
		known := map[string]bool{}
		var names []string
		for _, r := range cfg.Routes {
			known[r.Name] = true
			names = append(names, r.Name)
		}
		for _, r := range routes {
			if !known[r] {
				return usageError{fmt.Sprintf("--route %q: no such route in the config (routes: %s)", r, strings.Join(names, ", "))}
			}
		}
	}
	st, err := server.OpenStore(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	now := time.Now()
	switch sub {
	case "create":
		spec := apikey.Spec{Name: *name, Routes: routes, Methods: methods, PathPrefixes: paths}
		if lifetime > 0 {
			spec.ExpiresAt = now.Add(lifetime)
		}
		key, rec, err := apikey.Generate(rand.Reader, spec)
		if err != nil {
			return usageError{err.Error()}
		}
		if err := st.CreateAPIKey(ctx, rec); errors.Is(err, store.ErrExists) {
			return fmt.Errorf("an api key named %q already exists (names stay taken after revoke; pick another)", rec.Name)
		} else if err != nil {
			return err
		}
		fmt.Fprintf(env.Stderr, "created api key %q (id %s) for route(s) %s, %s.\n", rec.Name, rec.ID, strings.Join(rec.Routes, ", "), expiryText(rec.ExpiresAt))
		fmt.Fprintln(env.Stderr, "Store it now in your secret manager: it is shown only this once and cannot be recovered.")
		fmt.Fprintln(env.Stderr, "Send it as \"Proxy-Authorization: Bearer <key>\".")
		fmt.Fprintln(env.Stdout, key)
	case "list":
		keys, err := st.ListAPIKeys(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tID\tROUTES\tMETHODS\tPATHS\tCREATED\tEXPIRES\tLAST USED\tSTATUS")
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Name, k.ID, strings.Join(k.Routes, ","),
				anyIfEmpty(k.Methods), anyIfEmpty(k.PathPrefixes), day(k.CreatedAt), dayOr(k.ExpiresAt, "never"),
				dayOr(k.LastUsedAt, "never"), keyStatus(k, now))
		}
		return tw.Flush()
	case "revoke":
		k, err := st.RevokeAPIKey(ctx, target)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no api key with name or id %q", target)
		} else if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "revoked api key %q (id %s); every replica refuses it within seconds\n", k.Name, k.ID)
	}
	return nil
}

func expiryText(t time.Time) string {
	if t.IsZero() {
		return "never expires"
	}
	return "expires " + t.UTC().Format(time.RFC3339)
}

func anyIfEmpty(l []string) string {
	if len(l) == 0 {
		return "any"
	}
	return strings.Join(l, ",")
}

func day(t time.Time) string { return t.UTC().Format("2006-01-02") }

func dayOr(t time.Time, zero string) string {
	if t.IsZero() {
		return zero
	}
	return day(t)
}

func keyStatus(k store.APIKey, now time.Time) string {
	switch {
	case !k.RevokedAt.IsZero():
		return "revoked"
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		return "expired"
	}
	return "active"
}
