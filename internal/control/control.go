// Package control is the running gateway's control socket: a Unix socket
// in the data directory, readable only by the gateway's user, through
// which `sekisho reload` asks every gateway using that directory to read
// its config again. Each gateway process has its own socket
// (control-PID.sock), so replicas sharing a data directory on one machine
// are all reached.
package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// maxSocketPath is the longest path a Unix socket address holds on Linux
// (108 bytes with its terminating NUL).
const maxSocketPath = 107

// Listen creates this process's control socket in dir, mode 0600.
func Listen(dir string) (net.Listener, error) {
	path := filepath.Join(dir, fmt.Sprintf("control-%d.sock", os.Getpid()))
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("control socket %s: the path is longer than the %d bytes a Unix socket allows; use a shorter data_dir, or reload with SIGHUP", path, maxSocketPath)
	}
	_ = os.Remove(path) // a process with our pid before us left it
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// The data directory is the gateway's own (0700); the socket is
	// narrowed to its user as well. At worst, a reload asked for by someone
	// else re-reads the operator's own file.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// Reloader reloads the gateway's config and says what is in force: the
// config's digest, or why the reload was refused.
type Reloader func() (digest string, err error)

// Serve answers the control socket until ctx ends: POST /reload calls
// reload and answers 200 with "applied sha256 DIGEST", or 422 with the
// problems (the config in force stays).
func Serve(ctx context.Context, ln net.Listener, reload Reloader, logger *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, r *http.Request) {
		logger.Info("config reload asked for on the control socket", "component", "control")
		digest, err := reload()
		if err != nil {
			w.WriteHeader(http.StatusUnprocessableEntity)
			io.WriteString(w, err.Error())
			return
		}
		io.WriteString(w, "applied sha256 "+digest)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Error("control socket stopped", "component", "control", "err", err)
	}
	os.Remove(ln.Addr().String())
}

// Result is one gateway's answer to a reload.
type Result struct {
	// Socket is the gateway's control socket.
	Socket string
	// Applied is true when the new config is in force; Message is
	// "applied sha256 ..." or the problems.
	Applied bool
	Message string
}

// ErrNoGateway means no running gateway uses the data directory.
var ErrNoGateway = errors.New("no running gateway uses this data directory")

// ReloadAll asks every gateway with a control socket in dir to reload.
// Sockets nobody listens on (a gateway that crashed) are removed. The
// error is ErrNoGateway when no gateway answered, or a failure to reach
// one that listens.
func ReloadAll(ctx context.Context, dir string) ([]Result, error) {
	socks, err := filepath.Glob(filepath.Join(dir, "control-*.sock"))
	if err != nil {
		return nil, err
	}
	sort.Strings(socks)
	var out []Result
	var errs []error
	for _, sock := range socks {
		res, err := reloadOne(ctx, sock)
		switch {
		case errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, os.ErrNotExist):
			os.Remove(sock) // stale: its gateway is gone
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", sock, err))
		default:
			out = append(out, res)
		}
	}
	if len(out) == 0 && len(errs) == 0 {
		return nil, fmt.Errorf("%w (no control socket in %s): is `sekisho serve` running with this config?", ErrNoGateway, dir)
	}
	return out, errors.Join(errs...)
}

func reloadOne(ctx context.Context, sock string) (Result, error) {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "POST", "http://gateway/reload", nil)
	if err != nil {
		return Result{}, err
	}
	res, err := c.Do(req)
	if err != nil {
		return Result{}, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return Result{}, err
	}
	r := Result{Socket: sock, Message: strings.TrimSpace(string(body))}
	switch res.StatusCode {
	case http.StatusOK:
		r.Applied = true
	case http.StatusUnprocessableEntity:
	default:
		return Result{}, fmt.Errorf("unexpected answer %s: %s", res.Status, r.Message)
	}
	return r, nil
}
