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

const policySynopsis = `policy test CASES.yaml [--config FILE]

  Runs each case of CASES.yaml (see examples/policy-tests.yaml) through the
  routes, rules and policies of the config, as serve would decide it.`

func runPolicy(env Env, args []string) error {
	fs := flags(env, "policy test", policySynopsis)
	cf := addConfigFlags(fs, true) // no store: data_dir does not apply
	if len(args) == 0 || args[0] != "test" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help" || args[0] == "help") {
			fs.Usage()
			return nil
		}
		fmt.Fprintf(env.Stderr, "Usage: sekisho %s\n", policySynopsis)
		return usageError{"the only subcommand is test"}
	}
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
		return usageError{"takes one cases file"}
	}
	if casesPath == "" {
		return usageError{"name the cases file"}
	}
	cfg, err := cf.load()
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
	fmt.Fprintf(env.Stdout, "testing %s against %s\n", casesPath, configName(cfg))
	rep := policytest.Run(cases, eval)
	rep.WriteTo(env.Stdout)
	if !rep.OK() {
		return casesFailed{rep.Failed}
	}
	return nil
}
