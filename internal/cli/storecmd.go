package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sekisho/sekisho/internal/secret"
	"github.com/sekisho/sekisho/internal/server"
	"github.com/sekisho/sekisho/internal/store"
)

var storeCommands = []string{"migrate", "copy"}

const storeSynopsis = `store migrate [--dry-run] [--config FILE] [--data-dir DIR]
       sekisho store copy --from sqlite:DIR [--to postgres:URL|postgres:env:VAR|postgres:file:PATH] [--config FILE]`

func runStore(env Env, args []string) error {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	fs := flags(env, "store "+sub, storeSynopsis)
	cf := addConfigFlags(fs, false)
	dryRun := fs.Bool("dry-run", false, "say which migrations would be applied, and apply none (migrate)")
	from := fs.String("from", "", "the store to copy from: sqlite:DIR, the data directory of a single-box install (copy)")
	to := fs.String("to", "", "the Postgres database to copy into: postgres:URL, postgres:env:VAR or postgres:file:PATH; default: the config's store (copy)")
	switch sub {
	case "":
		fmt.Fprintf(env.Stderr, "Usage: sekisho %s\n", storeSynopsis)
		return usageError{"name a store command: " + strings.Join(storeCommands, " or ")}
	case "-h", "--help", "-help", "help":
		fs.Usage()
		return nil
	}
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	switch sub {
	case "migrate":
		if *from != "" || *to != "" {
			return usageError{"--from and --to are copy's flags"}
		}
		return storeMigrate(ctx, env, cf, *dryRun)
	case "copy":
		if *dryRun {
			return usageError{"--dry-run is migrate's flag"}
		}
		return storeCopy(ctx, env, cf, *from, *to)
	}
	return usageError{fmt.Sprintf("unknown store command %q: want %s", sub, strings.Join(storeCommands, " or "))}
}

func storeMigrate(ctx context.Context, env Env, cf configFlags, dryRun bool) error {
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	st, err := server.OpenStoreMigrating(cfg, defaultSecrets(), false)
	if err != nil {
		return err
	}
	defer st.Close()
	have, pending, err := store.Migrations(ctx, st)
	if err != nil {
		return fmt.Errorf("%s: %w", st.Location(), err)
	}
	fmt.Fprintf(env.Stdout, "%s: schema version %d\n", st.Location(), have)
	if len(pending) == 0 {
		fmt.Fprintln(env.Stdout, "up to date: nothing to apply")
		return nil
	}
	verb := "applying"
	if dryRun {
		verb = "would apply"
	}
	for _, m := range pending {
		fmt.Fprintf(env.Stdout, "%s %s\n", verb, m)
	}
	if dryRun {
		fmt.Fprintln(env.Stdout, "dry run: nothing was applied")
		return nil
	}
	if err := store.Migrate(ctx, st, time.Now()); err != nil {
		return fmt.Errorf("%s: %w", st.Location(), err)
	}
	fmt.Fprintf(env.Stdout, "applied %d migration(s)\n", len(pending))
	return nil
}

func storeCopy(ctx context.Context, env Env, cf configFlags, from, to string) error {
	dir, ok := strings.CutPrefix(from, "sqlite:")
	if !ok || dir == "" {
		return usageError{fmt.Sprintf("--from %q: want sqlite:DIR, the data directory holding sekisho.db", from)}
	}
	dbPath := filepath.Join(dir, "sekisho.db")
	if _, err := os.Stat(dbPath); err != nil {
		return usageError{fmt.Sprintf("--from %s: %v", from, err)}
	}
	var url string
	var where string
	switch {
	case to != "":
		rest, ok := strings.CutPrefix(to, "postgres:")
		if !ok || rest == "" {
			return usageError{fmt.Sprintf("--to %q: want postgres:URL, postgres:env:VAR or postgres:file:PATH", to)}
		}
		if strings.HasPrefix(rest, "postgres://") || strings.HasPrefix(rest, "postgresql://") {
			url, where = rest, "--to"
			fmt.Fprintln(env.Stderr, "note: a password in --to is visible to other users of this machine (ps); postgres:env:VAR keeps it out of the process list")
		} else {
			raw, err := defaultSecrets().Resolve(secret.Ref(rest))
			if err != nil {
				return usageError{fmt.Sprintf("--to %s: %v", to, err)}
			}
			url, where = string(raw), "--to "+to
		}
	default:
		cfg, err := cf.load()
		if err != nil {
			return err
		}
		if cfg.Store.Driver != "postgres" {
			return usageError{fmt.Sprintf("%s uses the SQLite store: name the Postgres database with --to, or give the fleet's config with --config", configName(cfg))}
		}
		raw, err := defaultSecrets().Resolve(cfg.Store.URL)
		if err != nil {
			return fmt.Errorf("store.url: %w", err)
		}
		url, where = string(raw), "store.url "+string(cfg.Store.URL)
	}
	src, err := store.OpenSQLiteOptions(dbPath, store.Options{SkipMigrations: true})
	if err != nil {
		return err
	}
	defer src.Close()
	if _, pending, err := store.Migrations(ctx, src); err != nil {
		return fmt.Errorf("%s: %w", dbPath, err)
	} else if len(pending) > 0 {
		return fmt.Errorf("%s lacks migrations %s: run this version of sekisho on it once (or `sekisho store migrate --data-dir %s`) before copying", dbPath, strings.Join(pending, ", "), dir)
	}
	dst, err := store.OpenPostgres(ctx, url, store.Options{})
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	defer dst.Close()
	n, err := store.CopyToPostgres(ctx, src, dst, time.Now())
	if errors.Is(err, store.ErrNotEmpty) {
		return fmt.Errorf("%w\nnothing was copied", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "copied %s to %s: %d accounts, %d API keys, %d revocations in force, %d OIDC sessions' tokens\n",
		dbPath, dst.Location(), n.Users, n.APIKeys, n.Revocations, n.OIDCTokens)
	fmt.Fprintln(env.Stdout, "Give every replica the same session keys (session.keys, or this box's session.key) so signed-in users stay signed in.")
	return nil
}
