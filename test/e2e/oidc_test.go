package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserOIDCSignIn: headless Chromium signs in through the real test
// provider's own login page (test/oidcprovider, a zitadel op server) and
// reaches the app; a group-restricted route admits a member and refuses a
// non-member.
func TestBrowserOIDCSignIn(t *testing.T) {
	chromium := chromiumPath(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	base := "http://" + addr
	op := startTestProvider(t, dir, base)
	cfg := writeOIDCConfig(t, dir, addr, op)
	if out, err := exec.Command(sekishoBin, "check", "--config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("sekisho check: %v\n%s", err, out)
	}
	g, err := serve(t, dir, cfg, addr)
	if err != nil {
		t.Fatalf("starting the gateway: %v", err)
	}
	b := startBrowser(t, chromium)
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}
	signInAt := func(t *testing.T, user, password string) {
		t.Helper()
		b.do(t, chromedp.Navigate(g.base+"/some/page"))
		b.click(t, chromedp.Search(`//a[contains(@href, "/.sekisho/oidc/corp/start")]`))
		if loc := location(t, b); !strings.HasPrefix(loc.String(), op+"/login") {
			t.Fatalf("after choosing Corp SSO the browser is at %s, want the provider's login page", loc)
		}
		b.do(t,
			chromedp.WaitVisible(chromedp.ID("op-username")),
			chromedp.SendKeys(chromedp.ID("op-username"), user),
			chromedp.SendKeys(chromedp.ID("op-password"), password),
		)
		b.click(t, button("Continue"))
	}

	step("alice signs in at the provider and reaches the app", func(t *testing.T) {
		signInAt(t, "alice", "alice-op-pw")
		if loc := location(t, b); loc.Path != "/some/page" {
			t.Fatalf("after sign-in the URL is %s, want %s/some/page", loc, g.base)
		}
		w := b.whoami(t)
		for name, want := range map[string]string{
			"X-Sekisho-User":   "alice@example.com",
			"X-Sekisho-Email":  "alice@example.com",
			"X-Sekisho-Groups": "admins",
		} {
			if got := w.rows[name]; got != want {
				t.Errorf("whoami shows %s = %q, want %q", name, got, want)
			}
		}
		if w.assertion != "valid" {
			t.Errorf("assertion is %q, want valid", w.assertion)
		}
		b.screenshot(t, "oidc-whoami")
	})

	step("alice, in group admins, may open /admin", func(t *testing.T) {
		resp := run(t, b, chromedp.NavigateResponse(g.base+"/admin"))
		if resp.Status != http.StatusOK {
			t.Errorf("status = %d, want 200", resp.Status)
		}
	})

	step("carol, not in admins, is refused /admin", func(t *testing.T) {
		// A second browser: carol has her own cookies at the gateway and
		// at the provider.
		b2 := startBrowser(t, chromium)
		orig := b
		b = b2
		defer func() { b = orig }()
		signInAt(t, "carol", "carol-op-pw")
		if w := b.whoami(t); w.rows["X-Sekisho-User"] != "carol@example.com" {
			t.Errorf("whoami shows user %q, want carol@example.com", w.rows["X-Sekisho-User"])
		}
		resp := run(t, b, chromedp.NavigateResponse(g.base+"/admin"))
		if resp.Status != http.StatusForbidden {
			t.Errorf("status = %d, want 403", resp.Status)
		}
	})
}

// startTestProvider builds and starts test/oidcprovider with alice (admins)
// and carol (no groups), the gateway at base as its client, and returns
// its issuer. It is killed at cleanup.
func startTestProvider(t *testing.T, dir, base string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "oidcprovider")
	build := exec.Command(goTool, "build", "-o", bin, "./test/oidcprovider")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./test/oidcprovider: %v\n%s", err, out)
	}
	users := `[{"username":"alice","password":"alice-op-pw","email":"alice@example.com","email_verified":true,"groups":["admins"]},
{"username":"carol","password":"carol-op-pw","email":"carol@example.com","email_verified":true}]`
	uf := filepath.Join(dir, "op-users.json")
	if err := os.WriteFile(uf, []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-users", uf, "-client-id", "sekisho", "-client-secret", "e2e-op-secret",
		"-redirect-uris", base+"/.sekisho/oidc/callback", "-post-logout-uris", base+"/.sekisho/oidc/signed-out")
	setDeathSignal(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := new(syncBuffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("test provider stderr:\n%s", stderr)
		}
	})
	issuer := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "issuer="); ok {
				issuer <- v
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case v := <-issuer:
		return v
	case <-done:
		t.Fatalf("the test provider exited:\n%s", stderr)
	case <-time.After(stepTimeout):
		t.Fatal("the test provider did not start")
	}
	return ""
}

// writeOIDCConfig is the proposed configuration: one generic OIDC provider
// next to local accounts; the whoami app for any signed-in user, /admin for
// group admins only.
func writeOIDCConfig(t *testing.T, dir, addr, issuer string) string {
	t.Helper()
	secret := filepath.Join(dir, "op-client-secret")
	if err := os.WriteFile(secret, []byte("e2e-op-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`version: 1
data_dir: %q
shutdown_grace: 5s
listen:
  address: %q
  tls:
    mode: "off"
oidc:
  providers:
    - name: corp
      label: Corp SSO
      issuer: %q
      client_id: sekisho
      client_secret: %q
      scopes: [openid, email, profile, offline_access]
      groups_claim: groups
pools:
  - name: whoami
    builtin: whoami
routes:
  - name: whoami
    host: "*"
    path: /
    pool: whoami
    policy:
      allow_authenticated: true
  - name: admins-only
    host: "*"
    path: /admin
    pool: whoami
    auth: {max_age: 12h}
    policy:
      groups: [admins]
`, filepath.Join(dir, "data"), addr, issuer, "file:"+secret)
	path := filepath.Join(dir, "sekisho.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
