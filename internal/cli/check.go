package cli

import (
	"fmt"
	"strings"

	"github.com/sekisho/sekisho/internal/secret"
	"github.com/sekisho/sekisho/internal/server"
)

func defaultSecrets() secret.Resolver { return secret.Resolver{} }

func runCheck(env Env, args []string) error {
	fs := flags(env, "check", "check [--config FILE] [--data-dir DIR] [--strict]")
	cf := addConfigFlags(fs, false)
	strict := fs.Bool("strict", false, "treat risky settings as errors")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	if err := server.Check(cfg, defaultSecrets()); err != nil {
		return configError{err}
	}
	risks := cfg.Risks()
	for _, r := range risks {
		fmt.Fprintf(env.Stdout, "warning: %s\n", r)
	}
	if *strict && len(risks) > 0 {
		return configError{fmt.Errorf("%d risky setting(s) and --strict is set", len(risks))}
	}
	name := cfg.Source()
	fmt.Fprintf(env.Stdout, "ok: %s: %d route(s), %d pool(s)\n", name, len(cfg.Routes), len(cfg.Pools))
	return nil
}
