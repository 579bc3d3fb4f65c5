package cli

import (
	"fmt"
	"runtime/debug"
)

// Version is set at build time with -ldflags "-X github.com/sekisho/sekisho/internal/cli.Version=v1.2.3".
var Version = "dev"

func runVersion(env Env, args []string) error {
	fs := flags(env, "version", "version")
	if err := parse(fs, args); err != nil {
		return err
	}
	rev, goVer := "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVer = bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
	}
	fmt.Fprintf(env.Stdout, "sekisho %s%s (%s)\n", Version, rev, goVer)
	return nil
}
