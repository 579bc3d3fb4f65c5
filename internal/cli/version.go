package cli

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Version is set at build time with -ldflags "-X github.com/sekisho/sekisho/internal/cli.Version=v1.2.3".
// Left at "dev", the module version from the build info is shown when the
// binary was built by `go install module@version`.
var Version = "dev"

func runVersion(env Env, args []string) error {
	fs := flags(env, "version", "version")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprintln(env.Stdout, versionLine(Version, bi))
	return nil
}

// versionLine is "sekisho VERSION (commit REV[+dirty], GOVERSION)": the
// version set at link time, else the module's (not "(devel)", which a
// build from a checkout reports), else "dev"; the VCS revision and whether
// the tree had uncommitted changes, when the build recorded them.
func versionLine(linked string, bi *debug.BuildInfo) string {
	v := linked
	if bi == nil {
		return "sekisho " + v
	}
	if (v == "" || v == "dev") && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	if v == "" {
		v = "dev"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	var parts []string
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		parts = append(parts, "commit "+rev+dirty)
	}
	if bi.GoVersion != "" {
		parts = append(parts, bi.GoVersion)
	}
	if len(parts) == 0 {
		return "sekisho " + v
	}
	return "sekisho " + v + " (" + strings.Join(parts, ", ") + ")"
}
