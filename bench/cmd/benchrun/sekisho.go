package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

const (
	benchUser     = "bench"
	benchPassword = "bench-password-0123456789"
)

// gateway is one sekisho set-up: its binary, config and data directory.
// Several processes may be started from it one after the other; they share
// the data directory and so the session key, so one cookie serves all.
type gateway struct {
	bin, dir, config, addr, audit string
}

// newGateway writes a config with one route (any host, "/", policy
// allow_authenticated) to the upstream, the audit log to a file in dir, and
// creates the user.
func newGateway(bin, dir, upstream string) (*gateway, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	g := &gateway{bin: bin, dir: dir, addr: addr,
		config: filepath.Join(dir, "sekisho.yaml"), audit: filepath.Join(dir, "audit.log")}
	cfg := fmt.Sprintf(`version: 1
data_dir: %s
listen:
  address: %s
  tls: {mode: "off"}
audit:
  output: %s
pools:
  - name: app
    urls: ["http://%s"]
routes:
  - name: app
    host: "*"
    path: /
    pool: app
    policy: {allow_authenticated: true}
`, filepath.Join(dir, "data"), addr, g.audit, upstream)
	if err := os.WriteFile(g.config, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "user", "add", benchUser, "--password-stdin", "--config", g.config)
	cmd.Stdin = strings.NewReader(benchPassword + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("sekisho user add: %v: %s", err, out)
	}
	return g, nil
}

// serve starts `sekisho serve` and waits until /.sekisho/healthz answers.
func (g *gateway) serve(logName string) (*child, error) {
	c, _, err := start("sekisho", filepath.Join(g.dir, logName), false, g.bin, "serve", "--config", g.config)
	if err != nil {
		return nil, err
	}
	if err := waitHealthy(g.url("/.sekisho/healthz"), 20*time.Second); err != nil {
		c.stop()
		return nil, fmt.Errorf("%w (log: %s)", err, filepath.Join(g.dir, logName))
	}
	return c, nil
}

func (g *gateway) url(path string) string { return "http://" + g.addr + path }

var hiddenInput = regexp.MustCompile(`name="(csrf|rd)" value="([^"]*)"`)

// signIn signs in with plain net/http as a browser would and returns the
// session cookie's value.
func (g *gateway) signIn() (string, error) {
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Get(g.url("/.sekisho/login"))
	if err != nil {
		return "", err
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	form := url.Values{"username": {benchUser}, "password": {benchPassword}, "rd": {"/"}}
	for _, m := range hiddenInput.FindAllStringSubmatch(string(page), -1) {
		form.Set(m[1], m[2])
	}
	if form.Get("csrf") == "" {
		return "", fmt.Errorf("login page (status %d) has no csrf field", res.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPost, g.url("/.sekisho/login"), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range res.Cookies() {
		req.AddCookie(c)
	}
	res, err = client.Do(req)
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther {
		return "", fmt.Errorf("sign-in answered %d, want 303", res.StatusCode)
	}
	for _, c := range res.Cookies() {
		if c.Name == "sekisho" {
			return c.Value, nil
		}
	}
	return "", fmt.Errorf("sign-in set no cookie named sekisho")
}

// checkThrough makes sure a request with the cookie reaches the upstream
// as the bench user (not a redirect to sign in).
func (g *gateway) checkThrough(cookie string) error {
	req, _ := http.NewRequest(http.MethodGet, g.url("/whoami"), nil)
	req.Header.Set("Cookie", "sekisho="+cookie)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || string(b) != benchUser {
		return fmt.Errorf("GET /whoami with the session cookie: status %d, body %q; want 200 %q", res.StatusCode, b, benchUser)
	}
	return nil
}
