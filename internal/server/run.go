package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sekisho/sekisho/internal/authn/local"
	"github.com/sekisho/sekisho/internal/certs"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/store"
)

// tlsSetup is the provisioned certificate manager, nil when TLS is off.
type tlsSetup struct {
	mgr *certs.Manager
}

func certOptions(cfg *config.Config, s *Server) certs.Options {
	t := cfg.Listen.TLS
	o := certs.Options{
		Mode: t.Mode, CertFile: t.CertFile, KeyFile: t.KeyFile, SelfSignedHosts: t.SelfSignedHosts,
		ACME:    certs.ACMEOptions{DirectoryURL: t.ACME.DirectoryURL, Email: t.ACME.Email, Domains: t.ACME.Domains, CARootsFile: t.ACME.CARootsFile},
		DataDir: cfg.DataDir,
	}
	if _, port, err := net.SplitHostPort(cfg.Listen.Address); err == nil {
		o.HTTPSPort, _ = strconv.Atoi(port)
	}
	if s != nil {
		o.Now = s.opts.Now
		o.Logger = s.log.With("component", "tls")
	}
	return o
}

func (s *Server) provisionTLS() (*tlsSetup, error) {
	if !s.cfg.TLSOn() {
		return nil, nil
	}
	mgr, err := certs.New(certOptions(s.cfg, s))
	if err != nil {
		return nil, err
	}
	return &tlsSetup{mgr: mgr}, nil
}

// Listening is called once every listener is bound, with their addresses
// (useful with port 0 in tests). nil: nothing is called.
type Listening func(public, redirect, admin net.Addr)

// Run serves until ctx is cancelled (SIGTERM), then shuts down gracefully:
// it stops accepting, lets in-flight requests (streams included) finish
// within shutdown_grace, then ends the remaining streams cleanly and closes.
func (s *Server) Run(ctx context.Context, ready Listening) error {
	cfg := s.cfg
	baseCtx, cancelBase := context.WithCancel(context.Background())
	defer cancelBase()
	var handler http.Handler = s
	if s.tlsConfig != nil {
		if max := cfg.Listen.HSTSMaxAge.D(); max > 0 {
			handler = certs.HSTS(handler, max)
		}
	}
	errLog := slog.NewLogLogger(s.log.With("component", "http").Handler(), slog.LevelWarn)
	public := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.Listen.ReadHeaderTimeout.D(),
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    cfg.Listen.MaxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ErrorLog:          errLog,
	}
	ln, err := net.Listen("tcp", cfg.Listen.Address)
	if err != nil {
		return fmt.Errorf("listen.address: %w", err)
	}
	if s.tlsConfig != nil {
		public.TLSConfig = s.tlsConfig.mgr.TLSConfig()
		ln = tls.NewListener(ln, public.TLSConfig)
	}
	servers := []*http.Server{public}
	listeners := []net.Listener{ln}
	var redirectAddr, adminAddr net.Addr
	if s.tlsConfig != nil && cfg.Listen.HTTPRedirectAddress != "" {
		rl, err := net.Listen("tcp", cfg.Listen.HTTPRedirectAddress)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen.http_redirect_address: %w", err)
		}
		redirectAddr = rl.Addr()
		servers = append(servers, &http.Server{Handler: s.tlsConfig.mgr.HTTPHandler(nil), ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog})
		listeners = append(listeners, rl)
	}
	if cfg.Admin.Address != "" {
		al, err := net.Listen("tcp", cfg.Admin.Address)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return fmt.Errorf("admin.address: %w", err)
		}
		adminAddr = al.Addr()
		servers = append(servers, &http.Server{Handler: s.metrics.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog})
		listeners = append(listeners, al)
	}

	// Every listener is bound: only now is a first-start password worth
	// printing (a start that failed to bind would lose it).
	if err := s.firstStart(context.Background()); err != nil {
		for _, l := range listeners {
			l.Close()
		}
		return fmt.Errorf("first start: %w", err)
	}

	// Background work: health checks and revocation polling.
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	s.runMu.Lock()
	s.runCtx = bg
	for _, e := range s.gen.Load().pools {
		s.startPool(e)
	}
	s.runMu.Unlock()
	go s.watchStreams(bg, time.Second)
	poll := s.opts.PollEvery
	if poll <= 0 {
		poll = 2 * time.Second
	}
	go s.revoked.Poll(bg, s.store, poll, s.log.With("component", "revocations"))
	unlocked := make(chan struct{}, 1)
	unlockPoll := local.DefaultUnlockPoll
	if s.opts.PollEvery > 0 {
		unlockPoll = s.opts.PollEvery
	}
	go s.throttle.PollUnlocks(bg, s.store, unlockPoll, s.log.With("component", "local"), unlocked) // `sekisho user unlock`
	if n, ok := s.store.(store.Notifier); ok {
		go n.Listen(bg, func(table string) { s.storeChanged(bg, table, unlocked) }, s.log)
	}
	go s.pruneRevocations(bg, 10*time.Minute)
	if s.runLimiter != nil {
		go s.runLimiter(bg)
	}
	apikeysDone := make(chan struct{})
	go func() { s.apikeys.Poll(bg, 0); close(apikeysDone) }()
	defer func() { stopBG(); <-apikeysDone }() // Poll flushes last-used times as it stops

	serveErr := make(chan error, len(servers))
	for i := range servers {
		go func(srv *http.Server, l net.Listener) {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				serveErr <- err
			}
		}(servers[i], listeners[i])
	}
	scheme := "http"
	if s.tlsConfig != nil {
		scheme = "https"
	}
	s.log.Info("sekisho is serving", "address", ln.Addr().String(), "url", scheme+"://"+displayAddr(ln.Addr()), "routes", len(cfg.Routes), "tls", cfg.Listen.TLS.Mode)
	if ready != nil {
		ready(ln.Addr(), redirectAddr, adminAddr)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-serveErr:
	}
	s.shutdown(servers, cancelBase)
	return runErr
}

// storeChanged is told by the store (Postgres: LISTEN/NOTIFY) that a log
// replicas follow changed: the change is read at once rather than at the
// next poll, and open streams whose credential it revoked are ended.
func (s *Server) storeChanged(ctx context.Context, table string, unlocked chan<- struct{}) {
	if table == store.ChangedAll || table == store.ChangedRevocations {
		if err := s.revoked.Sync(ctx, s.store); err != nil && ctx.Err() == nil {
			s.log.Warn("read revocations on notification (the poll retries)", "component", "revocations", "err", err)
		}
	}
	if table == store.ChangedAll || table == store.ChangedAPIKeys {
		if err := s.apikeys.Sync(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("read API key changes on notification (the poll retries)", "component", "apikey", "err", err)
		}
	}
	if table == store.ChangedAll || table == store.ChangedUnlocks {
		select {
		case unlocked <- struct{}{}:
		default: // a wake is already pending
		}
	}
	s.sweepRevoked()
}

// shutdown drains every server within the grace period; what is still open
// then (long streams) is ended by cancelling the request contexts, so each
// stream's handler returns and the response is terminated properly.
func (s *Server) shutdown(servers []*http.Server, cancelBase context.CancelFunc) {
	grace := s.cfg.ShutdownGrace.D()
	s.log.Info("shutting down", "grace", grace.String())
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Add(1)
		go func(srv *http.Server) {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				cancelBase()
				end, c2 := context.WithTimeout(context.Background(), 2*time.Second)
				defer c2()
				if srv.Shutdown(end) != nil {
					srv.Close()
				}
			}
		}(srv)
	}
	wg.Wait()
	cancelBase() // WebSockets (hijacked, invisible to Shutdown) end here
	if err := s.audit.Flush(); err != nil {
		s.log.Error("flush audit log", "err", err)
	}
	s.log.Info("stopped")
}

func displayAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if host == "127.0.0.1" || host == "::1" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
