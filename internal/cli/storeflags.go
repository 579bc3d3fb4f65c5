package cli

import (
	"flag"
	"fmt"
	"path/filepath"

	"github.com/sekisho/sekisho/internal/config"
)

// Help texts of the flags every config-reading command shares.
const (
	configFlagHelp = "read the config from `FILE`; a relative data_dir in it is resolved against the file's directory " +
		"(default: the embedded quickstart, whose data_dir \"sekisho-data\" is relative to the working directory)"
	dataDirFlagHelp = "use data directory `DIR` (relative to the working directory) instead of the config's data_dir"
)

// configFlags are --config and --data-dir.
type configFlags struct{ config, dataDir *string }

// addConfigFlags defines --config and, unless noDataDir, --data-dir on fs.
func addConfigFlags(fs *flag.FlagSet, noDataDir bool) configFlags {
	f := configFlags{config: fs.String("config", "", configFlagHelp)}
	if !noDataDir {
		f.dataDir = fs.String("data-dir", "", dataDirFlagHelp)
	}
	return f
}

// load loads and validates the config, with --data-dir applied (and
// validated again, as serve does).
func (f configFlags) load() (*config.Config, error) {
	cfg, err := loadConfig(*f.config)
	if err != nil {
		return nil, err
	}
	if f.dataDir != nil && *f.dataDir != "" {
		abs, err := filepath.Abs(*f.dataDir)
		if err != nil {
			return nil, usageError{fmt.Sprintf("--data-dir %q: %v", *f.dataDir, err)}
		}
		cfg.DataDir = abs
		if err := cfg.Validate(); err != nil {
			return nil, configError{err}
		}
	}
	return cfg, nil
}

// configName names the config a command used, for its output.
func configName(cfg *config.Config) string {
	if n := cfg.Source(); n != "" {
		return n
	}
	return "the config"
}
