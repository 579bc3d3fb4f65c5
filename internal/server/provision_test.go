package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/internal/ratelimit"
	"github.com/sekisho/sekisho/internal/secret"
)

func testConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	c, err := config.Parse("t.yaml", []byte(`version: 1
data_dir: `+t.TempDir()+`
pools: [{name: app, builtin: whoami}]
routes: [{name: app, host: "*", pool: app, policy: {allow_authenticated: true}}]
`+extra))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func newServer(t *testing.T, c *config.Config, env map[string]string, stderr io.Writer) *Server {
	t.Helper()
	s, err := New(c, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Stdout: io.Discard, Stderr: stderr,
		Secrets: secret.Resolver{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// Run does this once it is listening; these tests serve the handler alone.
	if err := s.firstStart(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

var pwRE = regexp.MustCompile(`password\n\n    (\S+)\n`)

func signIn(t *testing.T, h http.Handler, user, pass string) *http.Cookie {
	t.Helper()
	ts := httptest.NewServer(h)
	defer ts.Close()
	c := ts.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err := c.Get(ts.URL + "/.sekisho/login")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no csrf token")
	}
	req, _ := http.NewRequest("POST", ts.URL+"/.sekisho/login", strings.NewReader(url.Values{"csrf": {string(m[1])}, "username": {user}, "password": {pass}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, ck := range res.Cookies() {
		req.AddCookie(ck)
	}
	res, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	for _, ck := range res.Cookies() {
		if ck.Name == "sekisho" {
			return ck
		}
	}
	t.Fatalf("sign-in as %s: status %d, no session cookie", user, res.StatusCode)
	return nil
}

func statusWith(h http.Handler, ck *http.Cookie) int {
	r := httptest.NewRequest("GET", "http://127.0.0.1/", nil) // the host signIn's httptest server issued the cookie on
	r.AddCookie(ck)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

// The first start creates "admin" with a password printed once; that
// password signs in; a second start prints nothing.
func TestFirstStartAdmin(t *testing.T) {
	c := testConfig(t, "")
	var stderr bytes.Buffer
	s := newServer(t, c, nil, &stderr)
	m := pwRE.FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("first start printed no password:\n%s", stderr.String())
	}
	ck := signIn(t, s.Handler(), "admin", m[1])
	if code := statusWith(s.Handler(), ck); code != 200 {
		t.Fatalf("admin with the printed password: %d", code)
	}
	s.Close()
	stderr.Reset()
	newServer(t, c, nil, &stderr)
	if strings.Contains(stderr.String(), "password") {
		t.Fatalf("second start printed a password again:\n%s", stderr.String())
	}
}

// A first start whose port is taken must not create the admin account: its
// password would be printed and lost with the failed start, or never shown.
func TestFirstStartPasswordNotLostOnBusyPort(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	c := testConfig(t, "")
	c.Listen.Address = busy.Addr().String()
	var stderr bytes.Buffer
	s, err := New(c, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Stdout: io.Discard, Stderr: &stderr})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Run(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "listen.address") {
		t.Fatalf("Run on a busy port = %v, want a listen.address error", err)
	}
	if strings.Contains(stderr.String(), "password") {
		t.Fatalf("a start that could not listen printed the password:\n%s", stderr.String())
	}
	if n, err := s.store.CountUsers(context.Background()); err != nil || n != 0 {
		t.Fatalf("a start that could not listen created %d accounts (err %v)", n, err)
	}
}

// Session keys from the config: the first seals, all open (rotation); a
// key dropped from the list no longer opens its cookies.
func TestSessionKeyRotationFromConfig(t *testing.T) {
	key := func() string {
		b := make([]byte, 32)
		rand.Read(b)
		return base64.StdEncoding.EncodeToString(b)
	}
	env := map[string]string{"OLD": key(), "NEW": key()}
	c := testConfig(t, `session: {keys: ["env:OLD"]}`)
	var stderr bytes.Buffer
	s := newServer(t, c, env, &stderr)
	pass := pwRE.FindStringSubmatch(stderr.String())[1]
	old := signIn(t, s.Handler(), "admin", pass)
	s.Close()

	c.Session.Keys = []secret.Ref{"env:NEW", "env:OLD"}
	s = newServer(t, c, env, io.Discard)
	if code := statusWith(s.Handler(), old); code != 200 {
		t.Fatalf("cookie sealed with the old key after rotation: %d, want 200", code)
	}
	s.Close()

	c.Session.Keys = []secret.Ref{"env:NEW"}
	s = newServer(t, c, env, io.Discard)
	if code := statusWith(s.Handler(), old); code != http.StatusFound {
		t.Fatalf("cookie sealed with a retired key: %d, want 302 to sign-in", code)
	}
}

func TestCheckHasNoSideEffects(t *testing.T) {
	c := testConfig(t, "")
	if err := Check(c, secret.Resolver{}); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(c.DataDir); len(entries) != 0 {
		t.Fatalf("check wrote into the data dir: %v", entries)
	}
}

// serve checks the config, then provisions it: the WAF (the Core Rule Set,
// the slowest thing to compile at start) and, without Redis, the rule sets
// are compiled once, by the check.
func TestNewReusesWhatCheckCompiled(t *testing.T) {
	c := testConfig(t, "waf: {groups: [sqli]}\nrules: [{priority: 10, description: waf, match: {waf: true}, action: deny}]\n")
	checked, err := CheckKeep(c, secret.Resolver{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if checked.waf == nil || checked.sets["app"] == nil {
		t.Fatal("CheckKeep compiled no WAF or no rule set for a config with both")
	}
	s, err := New(c, Options{Logger: slog.New(slog.DiscardHandler), Stdout: io.Discard, Stderr: io.Discard, Checked: checked})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.gen.Load().waf != checked.waf {
		t.Error("New compiled the WAF again instead of using the checked one")
	}
	if rt, ok := s.gen.Load().pipeline.Router.Match("app.example.com", "/"); !ok || rt.Rules != checked.sets["app"] {
		t.Error("New compiled the rule set again instead of using the checked one")
	}
	if s.runLimiter == nil {
		t.Error("the checked in-memory limiter's janitor is not run")
	}

	// A Checked of another config is not used: New compiles its own.
	other := testConfig(t, "waf: {groups: [xss]}\nrules: [{priority: 10, description: waf, match: {waf: true}, action: deny}]\n")
	s2, err := New(other, Options{Logger: slog.New(slog.DiscardHandler), Stdout: io.Discard, Stderr: io.Discard, Checked: checked})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.gen.Load().waf == nil || s2.gen.Load().waf == checked.waf {
		t.Error("New used the WAF checked for another config")
	}
	if rt, ok := s2.gen.Load().pipeline.Router.Match("app.example.com", "/"); !ok || rt.Rules == nil || rt.Rules == checked.sets["app"] {
		t.Error("New used the rule set checked for another config")
	}
}

// check builds the generation through the same build as serve and reload:
// what only building finds is reported by check. Here a pool target that
// validation never saw (set after it) is refused by the pool's own
// constructor, and the error says so.
func TestCheckBuildsTheGenerationServeWould(t *testing.T) {
	c := testConfig(t, "")
	if _, err := CheckKeep(c, secret.Resolver{}, nil); err != nil {
		t.Fatalf("a valid config: %v", err)
	}
	c.Pools[0].Builtin, c.Pools[0].URLs = "", []string{"ftp://files.example.com/"}
	mem, _ := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	err := dryBuild(c, secret.Resolver{}, nil, nil, mem)
	if err == nil || !strings.Contains(err.Error(), `upstream pool "app"`) {
		t.Fatalf("dry build of a pool with an ftp target: %v, want the pool's error", err)
	}
	if entries, _ := os.ReadDir(c.DataDir); len(entries) != 0 {
		t.Fatalf("the dry build wrote into the data dir: %v", entries)
	}
}
