package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/control"

	"github.com/sekisho/sekisho/internal/gcpace"
	"github.com/sekisho/sekisho/internal/server"
)

func runServe(env Env, args []string) error {
	// SIGHUP's default action ends the process, with the requests in
	// flight: it is caught first of all, so that a logrotate even during
	// start-up does not take the gateway down. Once serving, it reopens
	// the audit file and reloads the config.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// A write to a broken pipe on stdout or stderr (a log collector that
	// died, the default audit output) kills a Go process with SIGPIPE
	// unless SIGPIPE is caught; caught, the write fails with EPIPE, and the
	// audit writer keeps the lines, retries and reports unhealthy.
	pipe := make(chan os.Signal, 1)
	signal.Notify(pipe, syscall.SIGPIPE)
	defer signal.Stop(pipe)
	fs := flags(env, "serve", "serve [--config FILE] [--address HOST:PORT] [--data-dir DIR]")
	cf := addConfigFlags(fs, false)
	addr := fs.String("address", "", "override listen.address")
	logFormat := fs.String("log-format", "text", "operational log format: text or json")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	watch := fs.Bool("watch", false, "reload the config when its file changes (a Kubernetes ConfigMap's swap included); needs --config")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	logger, err := newLogger(env, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	if *watch && *cf.config == "" {
		return usageError{"--watch needs --config FILE: the embedded quickstart never changes"}
	}
	// load reads the config as the command line says, at start and on
	// every reload (so --address and --data-dir hold for reloads too).
	load := func() (*config.Config, error) {
		cfg, err := cf.load()
		if err != nil {
			return nil, err
		}
		if *addr != "" {
			cfg.Listen.Address = *addr
			if err := cfg.Validate(); err != nil {
				return nil, configError{err}
			}
		}
		return cfg, nil
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	checked, err := server.CheckKeep(cfg, defaultSecrets(), logger)
	if err != nil {
		return configError{err}
	}
	srv, err := server.New(cfg, server.Options{Logger: logger, Stdout: env.Stdout, Stderr: env.Stderr, Checked: checked})
	if err != nil {
		return err
	}
	defer srv.Close()
	// Only serve paces the collector: check, user and the tests leave the
	// process's GOGC alone.
	if gcpace.Enabled(os.Getenv) {
		defer gcpace.Start(gcpace.Headroom)()
		logger.Debug("garbage collector paced: the heap may grow by about 32 MiB between collections while the live heap is smaller; set GOGC to manage it yourself", "component", "gcpace")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reload := func() (string, error) {
		err := srv.ReloadWith(load)
		return srv.ConfigDigest(), err
	}
	hupCtx, stopHup := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		onHangup(hupCtx, hup, func() error {
			_, rerr := reload() // logged and audited by the server
			return errors.Join(srv.Reopen(), rerr)
		}, logger)
	}()
	defer func() { stopHup(); bg.Wait() }() // no reopen nor reload once the server closes
	if ln, err := control.Listen(cfg.DataDir); err != nil {
		logger.Warn("no control socket: `sekisho reload` cannot reach this gateway (SIGHUP still reloads)", "err", err)
	} else {
		bg.Add(1)
		go func() { defer bg.Done(); control.Serve(hupCtx, ln, reload, logger) }()
	}
	if *watch {
		if err := watchConfig(hupCtx, *cf.config, func() { reload() }, logger); err != nil {
			return fmt.Errorf("--watch %s: %w", *cf.config, err)
		}
	}
	return srv.Run(ctx, nil)
}

// onHangup calls reopen for each signal from hup until ctx is done: SIGHUP
// reopens the audit file (logrotate moved it away) and reloads the config.
// A failure is logged, never fatal: the gateway goes on with the file and
// the config it has.
func onHangup(ctx context.Context, hup <-chan os.Signal, reopen func() error, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-hup:
			log.Info("reopening the audit file and reloading the config", "signal", sig.String())
			if err := reopen(); err != nil {
				log.Error("SIGHUP: the audit file or the config was not reopened; the old one is kept", "err", err)
			}
		}
	}
}

func newLogger(env Env, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{"--log-level " + level + ": want debug, info, warn or error"}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(env.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(env.Stderr, opts)), nil
	}
	return nil, usageError{"--log-format " + format + ": want text or json"}
}
