package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sekishoBin is the gateway binary that TestMain builds once for the package.
var sekishoBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sekisho-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	sekishoBin, err = buildSekisho(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building sekisho:", err)
		return 1
	}
	return m.Run()
}

// buildSekisho builds ./cmd/sekisho of the module two levels up into dir.
func buildSekisho(dir string) (string, error) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return "", err
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", err
	}
	if !bytes.Contains(mod, []byte("module github.com/sekisho/sekisho\n")) {
		return "", fmt.Errorf("%s is not the sekisho module root", root)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "sekisho")
	cmd := exec.Command(goTool, "build", "-o", bin, "./cmd/sekisho")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v\n%s", err, out)
	}
	return bin, nil
}

// Accounts that every gateway of this package has.
const (
	alicePassword = "alice-correct-horse-1"
	bobPassword   = "bob-battery-staple-22"
)

// gateway is a running `sekisho serve` subprocess.
type gateway struct {
	base   string // http://127.0.0.1:PORT, no trailing slash
	dir    string // config, data dir
	stdout *syncBuffer
	stderr *syncBuffer
}

// startGateway writes a config with two routes, adds alice (group admins) and
// bob (no groups), starts `sekisho serve` and waits until /.sekisho/healthz
// answers 200. At cleanup it sends SIGTERM and fails the test unless the
// gateway exits 0 in time; when the test failed it logs the gateway's audit
// log (stdout) and stderr.
func startGateway(t *testing.T) *gateway {
	t.Helper()
	dir := t.TempDir()
	const attempts = 3
	for i := 1; ; i++ {
		addr := freeAddr(t)
		cfg := writeConfig(t, dir, addr)
		if i == 1 {
			addUser(t, cfg, "alice", alicePassword, "--email", "alice@example.com", "--groups", "admins")
			addUser(t, cfg, "bob", bobPassword)
		}
		g, err := serve(t, dir, cfg, addr)
		if err == nil {
			return g
		}
		// Another process may take the port between freeAddr and the
		// gateway's listen; try another one.
		if i < attempts && strings.Contains(err.Error(), "address already in use") {
			t.Logf("port %s was taken, retrying: %v", addr, err)
			continue
		}
		t.Fatalf("starting the gateway: %v", err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func writeConfig(t *testing.T, dir, addr string) string {
	t.Helper()
	cfg := fmt.Sprintf(`version: 1
data_dir: %q
shutdown_grace: 5s
listen:
  address: %q
  tls:
    mode: "off"
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
    policy:
      groups: [admins]
`, filepath.Join(dir, "data"), addr)
	path := filepath.Join(dir, "sekisho.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func addUser(t *testing.T, cfg, name, password string, args ...string) {
	t.Helper()
	args = append([]string{"user", "add", name, "--password-stdin", "--config", cfg}, args...)
	cmd := exec.Command(sekishoBin, args...)
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sekisho user add %s: %v\n%s", name, err, out)
	}
}

func serve(t *testing.T, dir, cfg, addr string) (*gateway, error) {
	t.Helper()
	g := &gateway{
		base:   "http://" + addr,
		dir:    dir,
		stdout: new(syncBuffer),
		stderr: new(syncBuffer),
	}
	cmd := exec.Command(sekishoBin, "serve", "--config", cfg)
	cmd.Dir = dir
	cmd.Stdout = g.stdout
	cmd.Stderr = g.stderr
	setDeathSignal(cmd)
	// On Linux the death signal fires when the OS thread that started the
	// process exits, not when the test process does; so start and wait on
	// one goroutine locked to its thread for the gateway's whole life.
	started := make(chan error, 1)
	exited := make(chan struct{})
	var waitErr error
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		waitErr = cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		return nil, err
	}

	if err := waitHealthy(g.base, exited); err != nil {
		cmd.Process.Kill()
		<-exited
		return nil, fmt.Errorf("%v (exit: %v)\nstderr:\n%s", err, waitErr, g.stderr)
	}

	t.Cleanup(func() {
		defer func() {
			if t.Failed() {
				t.Logf("gateway audit log (stdout):\n%s", g.stdout)
				t.Logf("gateway stderr:\n%s", g.stderr)
			}
		}()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Errorf("SIGTERM to the gateway: %v", err)
		}
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("the gateway did not exit after SIGTERM; killed it")
			return
		}
		if waitErr != nil {
			t.Errorf("the gateway did not shut down cleanly after SIGTERM: %v", waitErr)
		}
	})
	return g, nil
}

// waitHealthy polls /.sekisho/healthz until it answers 200, the process
// exits, or a deadline passes.
func waitHealthy(base string, exited <-chan struct{}) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			return errors.New("the gateway exited before it was healthy")
		default:
		}
		resp, err := client.Get(base + "/.sekisho/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("GET /.sekisho/healthz: not 200 in time (last: %v)", errOrStatus(resp, err))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func errOrStatus(resp *http.Response, err error) any {
	if err != nil {
		return err
	}
	return resp.Status
}

// syncBuffer is a bytes.Buffer safe for a subprocess's writer goroutine and
// the test's reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// stepTimeout bounds one browser or HTTP step, so that a hang fails the test
// with a message instead of running into go test's global timeout. It is a
// safety net, not an assertion about speed.
const stepTimeout = 30 * time.Second
