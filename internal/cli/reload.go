package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/control"
)

// runReload asks every running gateway that uses the config's data
// directory to read its config again, and prints what each did. Exit 0:
// every gateway applied it; 3: at least one refused it (the problems are
// printed, the config in force stays); 1: no gateway is running, or one
// could not be reached.
func runReload(env Env, args []string) error {
	fs := flags(env, "reload", "reload [--config FILE] [--data-dir DIR]")
	cf := addConfigFlags(fs, false)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	dir, err := reloadDataDir(cf)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	results, err := control.ReloadAll(ctx, dir)
	var refused []string
	for _, r := range results {
		gw := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(r.Socket), "control-"), ".sock")
		if r.Applied {
			fmt.Fprintf(env.Stdout, "gateway pid %s: %s\n", gw, r.Message)
		} else {
			refused = append(refused, fmt.Sprintf("gateway pid %s: %s", gw, r.Message))
		}
	}
	if err != nil {
		return err
	}
	if len(refused) > 0 {
		return configError{errors.New(strings.Join(refused, "\n"))}
	}
	return nil
}

// reloadDataDir finds the data directory the gateways use. It only needs
// the file to decode: the gateways check the config themselves and report
// every problem.
func reloadDataDir(cf configFlags) (string, error) {
	if *cf.dataDir != "" {
		return filepath.Abs(*cf.dataDir)
	}
	if *cf.config == "" {
		cfg, err := loadConfig("") // the embedded quickstart
		if err != nil {
			return "", err
		}
		return cfg.DataDir, nil
	}
	cfg, err := config.Load(*cf.config) // decoded, not validated: the gateway lists the problems
	if err != nil {
		return "", configError{err}
	}
	return cfg.DataDir, nil
}
