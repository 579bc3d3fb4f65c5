package cli

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sekisho/sekisho/internal/gcpace"
	"github.com/sekisho/sekisho/internal/server"
)

func runServe(env Env, args []string) error {
	// SIGHUP's default action ends the process, with the requests in
	// flight: it is caught first of all, so that a logrotate even during
	// start-up does not take the gateway down. Once serving, it reopens
	// the audit file.
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
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	if *addr != "" {
		cfg.Listen.Address = *addr
		if err := cfg.Validate(); err != nil {
			return configError{err}
		}
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
	hupCtx, stopHup := context.WithCancel(ctx)
	hupDone := make(chan struct{})
	go func() { onHangup(hupCtx, hup, srv.Reopen, logger); close(hupDone) }()
	defer func() { stopHup(); <-hupDone }() // no reopen once the server closes
	return srv.Run(ctx, nil)
}

// onHangup calls reopen for each signal from hup (SIGHUP: logrotate moved
// the audit file away) until ctx is done. A failed reopen is logged, never
// fatal: the gateway goes on with the file it has.
func onHangup(ctx context.Context, hup <-chan os.Signal, reopen func() error, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-hup:
			log.Info("reopening the audit file", "signal", sig.String())
			if err := reopen(); err != nil {
				log.Error("reopening on SIGHUP failed", "err", err)
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
