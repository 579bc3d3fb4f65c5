package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sekisho/sekisho/internal/config"
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
		if isCasesFile(*cf.config) {
			return usageError{fmt.Sprintf("%s is a policy test table, not a config: run \"sekisho policy test %s --config CONFIG\"", *cf.config, *cf.config)}
		}
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

// isCasesFile reports whether path is a `policy test` table (a top-level
// "cases" key), which new users pass to check by mistake.
func isCasesFile(path string) bool {
	if path == "" {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, config.MaxFileBytes))
	if err != nil {
		return false
	}
	var top map[string]yaml.Node
	return yaml.Unmarshal(data, &top) == nil && top["cases"].Kind != 0 && top["routes"].Kind == 0
}
