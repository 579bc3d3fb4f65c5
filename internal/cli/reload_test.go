package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// reloadTestConfig is a public route to the upstream at URL.
const reloadTestConfig = `version: 1
data_dir: DATA
listen: {address: "127.0.0.1:0"}
pools: [{name: app, urls: ["URL"]}]
routes: [{name: app, host: "*", pool: app, policy: {public: true}}]
`

func reloadCfg(data, url string) string {
	return strings.NewReplacer("DATA", data, "URL", url).Replace(reloadTestConfig)
}

func upstreamSaying(t *testing.T, word string) string {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, word) }))
	t.Cleanup(ts.Close)
	return ts.URL
}

func getBody(t *testing.T, addr string) string {
	t.Helper()
	res, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("GET: %v (is the gateway still up?)", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// runBin runs the built binary and returns its exit code and output.
func runBin(t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), out.String(), errb.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

// `sekisho reload` and SIGHUP against a real serve process: a good config
// is applied (exit 0), a broken one and one that needs a restart are
// refused with their problems (exit 3) and change nothing, and with no
// gateway running reload says so (exit 1).
func TestReloadCommandAndSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the sekisho binary")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "sekisho.yaml")
	one, two := upstreamSaying(t, "one"), upstreamSaying(t, "two")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(reloadCfg(data, one))
	p := startServe(t, bin, cfg, io.Discard)
	if got := getBody(t, p.addr); got != "one" {
		t.Fatalf("before any reload: %q", got)
	}
	waitUntil(t, "the control socket exists", func() bool {
		m, _ := filepath.Glob(filepath.Join(data, "control-*.sock"))
		return len(m) == 1
	})
	if fi, err := os.Stat(filepath.Join(data, fmt.Sprintf("control-%d.sock", p.cmd.Process.Pid))); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket: %v, mode %v; want 0600", err, fi)
	}

	write(reloadCfg(data, two))
	code, stdout, stderr := runBin(t, bin, "reload", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, "applied sha256 ") {
		t.Fatalf("reload of a good config: exit %d\n%s%s", code, stdout, stderr)
	}
	if got := getBody(t, p.addr); got != "two" {
		t.Fatalf("after the reload: %q, want two", got)
	}

	write(strings.Replace(reloadCfg(data, one), "pool: app,", "pool: nope,", 1))
	code, _, stderr = runBin(t, bin, "reload", "--config", cfg)
	if code != ExitConfig || !strings.Contains(stderr, "sekisho.yaml:5") || !strings.Contains(stderr, `"nope"`) {
		t.Fatalf("reload of a broken config: exit %d, want %d naming the line\n%s", code, ExitConfig, stderr)
	}
	write(reloadCfg(data, one) + "session: {lifetime: 1h}\n")
	code, _, stderr = runBin(t, bin, "reload", "--config", cfg)
	if code != ExitConfig || !strings.Contains(stderr, "sekisho.yaml:6: session.lifetime changed: it takes a restart") {
		t.Fatalf("reload needing a restart: exit %d\n%s", code, stderr)
	}
	if got := getBody(t, p.addr); got != "two" {
		t.Fatalf("a refused reload changed the gateway: %q", got)
	}

	write(reloadCfg(data, one))
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "SIGHUP applied the config", func() bool { return p.alive(t) && getBody(t, p.addr) == "one" })

	code, _, stderr = runBin(t, bin, "reload", "--data-dir", t.TempDir())
	if code != ExitError || !strings.Contains(stderr, "no running gateway") {
		t.Fatalf("reload with no gateway: exit %d\n%s", code, stderr)
	}
}

// --watch follows a Kubernetes ConfigMap volume: the file is a symlink
// through "..data", which kubelet swaps atomically to a new directory.
// Rewriting the same bytes reloads nothing.
func TestWatchFollowsConfigMapSwap(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the sekisho binary")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	data := filepath.Join(dir, "data")
	vol := filepath.Join(dir, "config")
	one, two := upstreamSaying(t, "one"), upstreamSaying(t, "two")
	version := func(name, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(vol, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(vol, name, "sekisho.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		// kubelet: a new ..data_tmp symlink renamed over ..data.
		tmp := filepath.Join(vol, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(vol, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_12_08_01", reloadCfg(data, one))
	cfg := filepath.Join(vol, "sekisho.yaml")
	if err := os.Symlink(filepath.Join("..data", "sekisho.yaml"), cfg); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, bin, cfg, io.Discard, "--watch")
	if got := getBody(t, p.addr); got != "one" {
		t.Fatalf("at start: %q", got)
	}
	version("..2026_12_08_02", reloadCfg(data, two))
	waitUntil(t, "--watch applied the swapped ConfigMap", func() bool { return p.alive(t) && getBody(t, p.addr) == "two" })
	version("..2026_12_08_03", reloadCfg(data, two)) // the same bytes again
	version("..2026_12_08_04", strings.Replace(reloadCfg(data, one), "pool: app,", "pool: nope,", 1))
	waitUntil(t, "the broken version is refused", func() bool {
		return strings.Contains(p.stderr.String(), "config reload refused")
	})
	if got := getBody(t, p.addr); got != "two" {
		t.Fatalf("a broken ConfigMap changed the gateway: %q", got)
	}
	if n := strings.Count(p.stderr.String(), `msg="config reloaded"`); n != 1 {
		t.Errorf("%d reloads applied, want 1 (the same bytes again reload nothing)", n)
	}
	code, _, _ := runBin(t, bin, "serve", "--watch")
	if code != ExitUsage {
		t.Errorf("--watch without --config: exit %d, want %d", code, ExitUsage)
	}
}
