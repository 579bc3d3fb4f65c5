// Package cli is sekisho's command line: one file per subcommand, each
// returning an error; Main maps errors to the named exit codes.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/sekisho/sekisho/examples"
	"github.com/sekisho/sekisho/internal/config"
)

// Exit codes.
const (
	ExitOK     = 0
	ExitError  = 1 // the command failed
	ExitUsage  = 2 // the command line was wrong
	ExitConfig = 3 // the config has problems (check, serve)
)

// Env is what a command may touch; tests replace it.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

type command struct {
	name, summary string
	run           func(env Env, args []string) error
	// subs are the subcommands; errors then name "sekisho NAME SUB".
	subs []string
}

func commands() []command {
	return []command{
		{"serve", "run the gateway", runServe, nil},
		{"check", "validate a config the way serve does, and flag risky settings", runCheck, nil},
		{"reload", "make the running gateways read their config again (as SIGHUP does)", runReload, nil},
		{"user", "manage local accounts: add, passwd, disable, enable, unlock, list", runUser, userCommands},
		{"apikey", "manage API keys for machines: create, list, revoke", runAPIKey, apikeyCommands},
		{"store", "manage the state database: migrate [--dry-run], copy --from sqlite:DIR --to postgres:URL", runStore, storeCommands},
		{"policy", "test routes, rules and policies against a table of requests: policy test CASES.yaml", runPolicy, []string{"test"}},
		{"healthcheck", "exit 0 when a gateway's /.sekisho/healthz answers 200 (a container HEALTHCHECK)", runHealthcheck, nil},
		{"version", "print the version, the commit it was built from and the Go version", runVersion, nil},
		{"completion", "print a shell completion script (bash or zsh)", runCompletion, nil},
	}
}

const mainUsage = `sekisho — an identity-aware gateway for self-hosted web apps

Usage: sekisho <command> [flags]

Commands:
%s
Run "sekisho <command> --help" for a command's flags.
With no --config, every command uses the embedded quickstart (examples/quickstart.yaml),
whose data directory is ./sekisho-data in the working directory. With --config FILE, a
relative data_dir is resolved against FILE's directory.
`

func usage() string {
	var b strings.Builder
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-11s %s\n", c.name, c.summary)
	}
	return fmt.Sprintf(mainUsage, b.String())
}

// Main runs the command line and returns the process exit code.
func Main(args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if len(args) < 2 {
		fmt.Fprint(env.Stderr, usage())
		return ExitUsage
	}
	name := args[1]
	if name == "-h" || name == "--help" || name == "help" {
		fmt.Fprint(env.Stdout, usage())
		return ExitOK
	}
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		err := c.run(env, args[2:])
		switch {
		case err == nil:
			return ExitOK
		case errors.Is(err, flag.ErrHelp):
			return ExitOK
		}
		// Each error is printed here, once: the flag package prints
		// nothing (see flags) and commands only return errors.
		if len(args) > 2 && slices.Contains(c.subs, args[2]) {
			name += " " + args[2]
		}
		var ue usageError
		var ce configError
		switch {
		case errors.As(err, &ue):
			fmt.Fprintf(env.Stderr, "sekisho %s: %v\nRun \"sekisho %s --help\" for usage.\n", name, err, name)
			return ExitUsage
		case errors.As(err, &ce):
			fmt.Fprintf(env.Stderr, "sekisho %s: the config has problems:\n%s\n", name, indent(err.Error()))
			return ExitConfig
		}
		fmt.Fprintf(env.Stderr, "sekisho %s: %v\n", name, err)
		return ExitError
	}
	fmt.Fprintf(env.Stderr, "sekisho: unknown command %q\n\n%s", name, usage())
	return ExitUsage
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// flags builds a FlagSet that returns errors and prints nothing itself, so
// Main prints each error once. Its Usage (run by parse for --help) prints
// the synopsis and every flag to stdout.
func flags(env Env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("sekisho "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(env.Stdout, "Usage: sekisho %s\n\nFlags:\n", synopsis)
		fs.SetOutput(env.Stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parse parses flags, turning flag errors into usage errors. The usage is
// printed for -h and --help only: after a mistake, Main prints the error
// and a pointer to --help.
func parse(fs *flag.FlagSet, args []string) error {
	usage := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = usage
	if err == nil {
		return nil
	}
	if errors.Is(err, flag.ErrHelp) {
		usage()
		return err
	}
	return usageError{err.Error()}
}

// loadConfig loads and validates the config at path, or the embedded
// quickstart when path is "".
func loadConfig(path string) (*config.Config, error) {
	var c *config.Config
	var err error
	if path == "" {
		c, err = config.Parse(examples.QuickstartName, examples.Quickstart)
	} else {
		c, err = config.Load(path)
	}
	if err != nil {
		return nil, configError{err}
	}
	if err := c.Validate(); err != nil {
		return nil, configError{err}
	}
	return c, nil
}
