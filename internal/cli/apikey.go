package cli

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
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

// apikeyCommands are the apikey subcommands, in the order help lists them.
var apikeyCommands = []string{"create", "list", "revoke"}

func runAPIKey(env Env, args []string) error {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	fs := flags(env, "apikey "+sub, apikeySynopsis)
	cf := addConfigFlags(fs, false)
	name := fs.String("name", "", "the key's name, unique (create)")
	var routes, methods, paths stringList
	fs.Var(&routes, "route", "a route the key is valid on; repeat or comma-separate for several (create)")
	fs.Var(&methods, "methods", "comma-separated methods the key may use; default any (create)")
	fs.Var(&paths, "paths", "comma-separated path prefixes the key may reach; default any (create)")
	expires := fs.String("expires", "90d", "lifetime: days (90d), a duration (720h), or never (create)")
	switch sub {
	case "":
		fmt.Fprintf(env.Stderr, "Usage: sekisho %s\n", apikeySynopsis)
		return usageError{"name an apikey command: create, list or revoke"}
	case "-h", "--help", "-help", "help":
		fs.Usage()
		return nil
	}
	if !slices.Contains(apikeyCommands, sub) {
		return usageError{fmt.Sprintf("unknown apikey command %q: want create, list or revoke", sub)}
	}
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
			return usageError{fmt.Sprintf("takes no argument %q (use --name)", target)}
		}
	case "revoke":
		if target == "" {
			return usageError{"name the key (its name or id)"}
		}
	}
	var lifetime time.Duration
	if sub == "create" {
		if *name == "" {
			return usageError{"--name is required"}
		}
		if len(routes) == 0 {
			return usageError{"--route is required (the routes the key may use)"}
		}
		var err error
		if lifetime, err = apikey.ParseLifetime(*expires); err != nil {
			return usageError{"--expires: " + err.Error()}
		}
	}
	cfg, err := cf.load()
	if err != nil {
		return err
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
				return usageError{fmt.Sprintf("--route %q: no such route in %s (routes: %s)", r, configName(cfg), strings.Join(names, ", "))}
			}
		}
	}
	st, err := server.OpenStore(cfg, defaultSecrets())
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
		if len(keys) == 0 {
			fmt.Fprintf(env.Stderr, "no api keys in %s\n", st.Location())
			return nil
		}
		tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tID\tROUTES\tMETHODS\tPATHS\tCREATED\tEXPIRES\tLAST USED (UTC)\tSTATUS")
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Name, k.ID, strings.Join(k.Routes, ","),
				anyIfEmpty(k.Methods), anyIfEmpty(k.PathPrefixes), day(k.CreatedAt), dayOr(k.ExpiresAt, "never"),
				lastUsed(k.LastUsedAt), keyStatus(k, now))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(env.Stderr, "Servers record last use every %s (api_keys.last_used_flush).\n", cfg.APIKeys.LastUsedFlush.D())
	case "revoke":
		k, err := st.RevokeAPIKey(ctx, target)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no api key with name or id %q in %s", target, st.Location())
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

// lastUsed shows a last use to the minute: servers write it every
// api_keys.last_used_flush (a minute by default), so a day alone would
// hide whether a key is in use right now.
func lastUsed(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04")
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
