package oidc

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/session"
)

// TestMain removes the test provider binary built for the package.
func TestMain(m *testing.M) {
	code := m.Run()
	if opBuild.dir != "" {
		os.RemoveAll(opBuild.dir)
	}
	os.Exit(code)
}

// opBuild is the test provider (test/oidcprovider), built once per test binary.
var opBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func providerBinary(t *testing.T) string {
	t.Helper()
	opBuild.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		opBuild.dir, opBuild.err = os.MkdirTemp("", "sekisho-oidcprovider-")
		if opBuild.err != nil {
			return
		}
		opBuild.path = filepath.Join(opBuild.dir, "oidcprovider")
		cmd := exec.Command(goTool, "build", "-o", opBuild.path, "./test/oidcprovider")
		cmd.Dir = filepath.Join("..", "..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			opBuild.err = fmt.Errorf("go build ./test/oidcprovider: %v\n%s", err, out)
		}
	})
	if opBuild.err != nil {
		t.Fatal(opBuild.err)
	}
	return opBuild.path
}

// realOP is a running test provider process.
type realOP struct {
	issuer string
	cmd    *exec.Cmd
	done   chan struct{}
}

// kill stops the provider at once (an outage) and waits for it to exit.
func (o *realOP) kill() {
	o.cmd.Process.Kill()
	<-o.done
}

type opUser struct {
	Username      string         `json:"username"`
	Password      string         `json:"password"`
	Email         string         `json:"email,omitempty"`
	EmailVerified bool           `json:"email_verified"`
	Groups        []string       `json:"groups,omitempty"`
	Claims        map[string]any `json:"claims,omitempty"`
}

var testUsers = []opUser{
	{Username: "alice", Password: "alice-pw", Email: "alice@example.com", EmailVerified: true, Groups: []string{"admins", "dev"},
		Claims: map[string]any{"realm_access": map[string]any{"roles": []string{"app-user"}}, "https://example.com/team": "blue"}},
	{Username: "bob", Password: "bob-pw", Email: "bob@example.com", EmailVerified: false},
	{Username: "carol", Password: "carol-pw", Email: "alice", EmailVerified: true}, // a user name in the email claim
}

// startRealOP starts the provider for the gateway g on port (0: any).
func startRealOP(t *testing.T, g *gateway, port int, extra ...string) *realOP {
	t.Helper()
	bin := providerBinary(t)
	users, _ := json.Marshal(testUsers)
	uf := filepath.Join(t.TempDir(), "users.json")
	if err := os.WriteFile(uf, users, 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-port", fmt.Sprint(port), "-users", uf, "-client-id", "sekisho", "-client-secret", "op-secret",
		"-redirect-uris", g.URL + CallbackPath, "-post-logout-uris", g.URL + SignedOutPath}, extra...)
	cmd := exec.Command(bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	o := &realOP{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(o.done) }()
	t.Cleanup(o.kill)
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "issuer="); ok {
				line <- v
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case o.issuer = <-line:
	case <-o.done:
		t.Fatal("the test provider exited before listening")
	case <-time.After(30 * time.Second):
		t.Fatal("the test provider did not print its issuer within 30s")
	}
	return o
}

var hiddenID = regexp.MustCompile(`name="id" value="([^"]+)"`)

// signIn starts signing in with the browser c; if the provider shows its
// form, it posts user's credentials. It returns the final response and body.
func signIn(t *testing.T, c *http.Client, g *gateway, o *realOP, start, user, password string) (*http.Response, string) {
	t.Helper()
	resp, body := get(t, c, g.URL+start)
	if !strings.HasPrefix(resp.Request.URL.String(), o.issuer+"/login") {
		return resp, body // answered without the form (SSO), or refused
	}
	m := hiddenID.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no auth request id in the provider's form:\n%s", body)
	}
	resp, err := c.PostForm(o.issuer+"/login", url.Values{"id": {m[1]}, "username": {user}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// sessionOf decodes the /app answer.
func sessionOf(t *testing.T, resp *http.Response, body string) session.Session {
	t.Helper()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/app" {
		t.Fatalf("status %d at %s, want 200 at /app; body:\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	var s session.Session
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("/app answered %v:\n%s", err, body)
	}
	return s
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
