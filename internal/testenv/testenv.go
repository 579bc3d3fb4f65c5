// Package testenv starts a real gateway in-process for tests: a config, a
// recording upstream, the server's own Run on a loopback port, and helpers
// to create accounts and sign in, so a security test reads as the story it
// checks.
package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/authn/local"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/secret"
	"github.com/sekisho/sekisho/internal/server"
	"github.com/sekisho/sekisho/internal/store"
)

// Upstream records what the app behind the gateway receives.
type Upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
	// Handler, when set, answers instead of the default 200 "upstream ok".
	Handler http.HandlerFunc
}

// Requests returns copies of the requests received so far.
func (u *Upstream) Requests() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*http.Request(nil), u.reqs...)
}

// Last returns the last request received, or nil.
func (u *Upstream) Last() *http.Request {
	r := u.Requests()
	if len(r) == 0 {
		return nil
	}
	return r[len(r)-1]
}

// NewUpstream starts a recording upstream on loopback.
func NewUpstream(t testing.TB) *Upstream {
	u := &Upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Clone(context.Background()))
		h := u.Handler
		u.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		io.WriteString(w, "upstream ok")
	}))
	t.Cleanup(u.Close)
	return u
}

// Env is a running gateway.
type Env struct {
	T    testing.TB
	URL  string // http://127.0.0.1:port, or https:// when TLS is on
	Addr string
	// RedirectAddr and AdminAddr are the plain-HTTP redirect and admin
	// listeners' addresses, "" when not configured.
	RedirectAddr, AdminAddr string
	Config                  *config.Config
	Server                  *server.Server
	Upstream                *Upstream
	Audit                   *SyncBuffer
	DataDir                 string
	// data is the temp dir {{DATA}} stands for.
	data string
	stop context.CancelFunc
	done chan error
}

// SyncBuffer is a goroutine-safe buffer for captured output.
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Start runs a gateway with the YAML config cfg, in which {{UPSTREAM}} is
// replaced by the recording upstream's URL and {{DATA}} by a temp dir. The
// listen address is forced to 127.0.0.1:0. The gateway stops at cleanup.
func Start(t testing.TB, cfg string) *Env {
	t.Helper()
	return StartWith(t, cfg, server.Options{})
}

// StartWith is Start with server options (PollEvery, Now); the logger and
// the outputs are the test's.
func StartWith(t testing.TB, cfg string, opts server.Options) *Env {
	t.Helper()
	up := NewUpstream(t)
	data := t.TempDir()
	cfg = strings.ReplaceAll(cfg, "{{UPSTREAM}}", up.URL)
	cfg = strings.ReplaceAll(cfg, "{{DATA}}", data)
	c, err := config.Parse("test.yaml", []byte(cfg))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	// A concrete port (not :0) so redirects to HTTPS can name it.
	c.Listen.Address = freeAddr(t)
	if c.DataDir == config.DefaultDataDir {
		c.DataDir = data
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	e := &Env{T: t, Config: c, Upstream: up, Audit: &SyncBuffer{}, DataDir: c.DataDir, data: data, done: make(chan error, 1)}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts.Logger, opts.Stdout, opts.Stderr = logger, e.Audit, io.Discard
	srv, err := server.New(c, opts)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	e.Server = srv
	ctx, cancel := context.WithCancel(context.Background())
	e.stop = cancel
	ready := make(chan [3]net.Addr, 1)
	go func() {
		e.done <- srv.Run(ctx, func(pub, redir, admin net.Addr) { ready <- [3]net.Addr{pub, redir, admin} })
	}()
	select {
	case a := <-ready:
		e.Addr = a[0].String()
		e.URL = "http://" + e.Addr
		if c.TLSOn() {
			e.URL = "https://" + e.Addr
		}
		if a[1] != nil {
			e.RedirectAddr = a[1].String()
		}
		if a[2] != nil {
			e.AdminAddr = a[2].String()
		}
	case err := <-e.done:
		t.Fatalf("gateway did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not start within 10s")
	}
	t.Cleanup(func() { e.Stop(); srv.Close() })
	return e
}

// ParseConfig parses cfg as Start does ({{UPSTREAM}}, {{DATA}}), with the
// running gateway's listen address and data dir, for Reload. It does not
// validate: Reload does.
func (e *Env) ParseConfig(cfg string) (*config.Config, error) {
	cfg = strings.ReplaceAll(cfg, "{{UPSTREAM}}", e.Upstream.URL)
	cfg = strings.ReplaceAll(cfg, "{{DATA}}", e.data)
	c, err := config.Parse("test.yaml", []byte(cfg))
	if err != nil {
		return nil, err
	}
	c.Listen.Address = e.Config.Listen.Address
	if c.DataDir == config.DefaultDataDir {
		c.DataDir = e.DataDir
	}
	return c, nil
}

// Reload applies the YAML config cfg to the running gateway (see
// server.Server.Reload).
func (e *Env) Reload(cfg string) error {
	c, err := e.ParseConfig(cfg)
	if err != nil {
		return err
	}
	return e.Server.Reload(c)
}

// Stop shuts the gateway down (graceful) and waits for Run to return.
func (e *Env) Stop() error {
	if e.stop == nil {
		return nil
	}
	e.stop()
	e.stop = nil
	select {
	case err := <-e.done:
		return err
	case <-time.After(time.Minute):
		e.T.Error("gateway did not stop within a minute")
		return nil
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// AddUser creates a local account through a second store handle, the way
// the `sekisho user` command does from another process.
func (e *Env) AddUser(name, password, email string, groups ...string) {
	e.T.Helper()
	st := e.Store()
	hash, err := local.Hash(password)
	if err != nil {
		e.T.Fatal(err)
	}
	if err := st.CreateUser(context.Background(), store.User{Name: name, Email: email, Groups: groups, PasswordHash: hash}); err != nil {
		e.T.Fatal(err)
	}
}

// Store opens a second handle on the gateway's database, SQLite or
// Postgres as the config says (closed at cleanup): what another process,
// the CLI or a second replica, would open.
func (e *Env) Store() store.Backend {
	e.T.Helper()
	st, err := server.OpenStore(e.Config, secret.Resolver{})
	if err != nil {
		e.T.Fatal(err)
	}
	e.T.Cleanup(func() { st.Close() })
	return st
}

// Client returns a client with a cookie jar that does not follow redirects.
// With TLS on it trusts the gateway's self-signed certificate and speaks
// HTTP/2 when the server offers it.
func (e *Env) Client() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	if e.Config.TLSOn() {
		pem, err := os.ReadFile(filepath.Join(e.DataDir, "selfsigned.crt"))
		if err != nil {
			e.T.Fatalf("test client: %v (only self_signed TLS is supported here)", err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		c.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}, ForceAttemptHTTP2: true}
	}
	return c
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// LoginForm fetches the sign-in page with c and returns the CSRF token.
func (e *Env) LoginForm(c *http.Client) string {
	e.T.Helper()
	res, err := c.Get(e.URL + "/.sekisho/login")
	if err != nil {
		e.T.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := csrfRE.FindSubmatch(body)
	if m == nil {
		e.T.Fatalf("no csrf field on the sign-in page (status %d)", res.StatusCode)
	}
	return string(m[1])
}

// PostLogin submits the sign-in form and returns the response (body read).
func (e *Env) PostLogin(c *http.Client, user, password, rd string) *http.Response {
	e.T.Helper()
	token := e.LoginForm(c)
	res, err := c.PostForm(e.URL+"/.sekisho/login", url.Values{"csrf": {token}, "username": {user}, "password": {password}, "rd": {rd}})
	if err != nil {
		e.T.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

// Login signs in and returns a client carrying the session cookie.
func (e *Env) Login(user, password string) *http.Client {
	e.T.Helper()
	c := e.Client()
	if res := e.PostLogin(c, user, password, "/"); res.StatusCode != http.StatusSeeOther {
		e.T.Fatalf("sign-in as %s: status %d, want 303", user, res.StatusCode)
	}
	return c
}

// Get sends a GET with optional header pairs and returns status, body, headers.
func (e *Env) Get(c *http.Client, path string, headers ...string) (int, string, http.Header) {
	e.T.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.URL+path, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	return e.Do(c, req)
}

// Do sends req with c and returns status, body and headers.
func (e *Env) Do(c *http.Client, req *http.Request) (int, string, http.Header) {
	e.T.Helper()
	res, err := c.Do(req)
	if err != nil {
		e.T.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), res.Header
}

// freeAddr returns a loopback address with a port that was free just now.
func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
