package cli

import (
	"fmt"
	"os"

	"github.com/sekisho/sekisho/internal/rules/policytest"
	"github.com/sekisho/sekisho/internal/server"
)

// casesFailed marks a policy test run with failing cases (exit 1).
type casesFailed struct{ n int }

func (e casesFailed) Error() string { return fmt.Sprintf("%d case(s) failed", e.n) }

func runPolicy(env Env, args []string) error {
	if len(args) == 0 || args[0] != "test" {
		fmt.Fprintln(env.Stderr, "Usage: sekisho policy test CASES.yaml [--config FILE]")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return usageError{"policy: the only subcommand is test"}
	}
	fs := flags(env, "policy test", "policy test CASES.yaml [--config FILE]")
	cfgPath := fs.String("config", "", "config whose routes, rules and policies are checked (default: the embedded quickstart)")
	rest := args[1:]
	var casesPath string
	if len(rest) > 0 && rest[0] != "" && rest[0][0] != '-' {
		casesPath, rest = rest[0], rest[1:]
	}
	if err := parse(fs, rest); err != nil {
		return err
	}
	if casesPath == "" && fs.NArg() == 1 {
		casesPath = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return usageError{"policy test takes one cases file"}
	}
	if casesPath == "" {
		return usageError{"policy test: name the cases file"}
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	f, err := os.Open(casesPath)
	if err != nil {
		return err
	}
	defer f.Close()
	cases, err := policytest.Load(f)
	if err != nil {
		return fmt.Errorf("%s: %w", casesPath, err)
	}
	eval, err := server.PolicyEvaluator(cfg, defaultSecrets())
	if err != nil {
		return configError{err}
	}
	rep := policytest.Run(cases, eval)
	rep.WriteTo(env.Stdout)
	if !rep.OK() {
		return casesFailed{rep.Failed}
	}
	return nil
}
