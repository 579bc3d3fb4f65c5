package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

// onHangup is what SIGHUP does in serve: each signal reopens, a failed
// reopen is logged and the loop goes on, and it ends with its context.
func TestHangupReopensAndNeverStops(t *testing.T) {
	var ops strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &ops}, nil))
	hup := make(chan os.Signal)
	calls := make(chan struct{}, 3)
	fail := true
	reopen := func() error {
		calls <- struct{}{}
		if fail {
			fail = false
			return errors.New("audit.output: permission denied")
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { onHangup(ctx, hup, reopen, log); close(done) }()
	for i := 0; i < 3; i++ {
		hup <- syscall.SIGHUP // blocks until the loop takes it: it is still running
		<-calls
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("onHangup did not end with its context")
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(ops.String(), "level=ERROR") || !strings.Contains(ops.String(), "permission denied") {
		t.Errorf("the failed reopen was not logged:\n%s", ops.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// SIGHUP, as logrotate sends it after moving the audit file away, used to
// kill the gateway (status 129) and reset the requests in flight. The real
// binary must stay up, finish the request in flight, and write the next
// audit lines to the new file.
func TestSIGHUPDoesNotKillServeAndReopensAuditFile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the sekisho binary")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	auditPath := filepath.Join(dir, "audit.log")
	_, cfg := writeConfig(t, `version: 1
data_dir: {{DATA}}
listen: {address: "127.0.0.1:0"}
audit: {output: `+auditPath+`}
pools: [{name: app, urls: ["http://127.0.0.1:9"]}]
routes: [{name: app, host: "*", pool: app, policy: {allow_authenticated: true}}]
`)
	var stdout lockedBuffer
	p := startServe(t, bin, cfg, &stdout)
	cmd, addr, stderr, exited := p.cmd, p.addr, &p.stderr, p.exited
	// alive fails the test at once if the gateway died (SIGHUP's default
	// action gives "signal: hangup").
	alive := func() bool { return p.alive(t) }
	hangup := func() {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) {
		t.Helper()
		res, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v (is the gateway still up?)", path, err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusFound {
			t.Fatalf("GET %s = %d, want 302 to sign in", path, res.StatusCode)
		}
	}
	get("/before")
	waitForFile(t, auditPath, `"path":"/before"`)

	// A request in flight across the SIGHUP: its headers are half sent.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /in-flight HTTP/1.1\r\nHost: example.com\r\n"); err != nil {
		t.Fatal(err)
	}

	// logrotate "create": move the file away, then SIGHUP.
	if err := os.Rename(auditPath, auditPath+".1"); err != nil {
		t.Fatal(err)
	}
	hangup()
	waitUntil(t, "stderr says the audit file was reopened", func() bool {
		return alive() && strings.Contains(stderr.String(), `msg="audit file reopened"`)
	})
	hangup() // and once more: a second SIGHUP is no more fatal than the first

	if _, err := io.WriteString(conn, "Connection: close\r\n\r\n"); err != nil {
		t.Fatalf("the request in flight was cut: %v", err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the request in flight got no response: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusFound {
		t.Fatalf("request in flight = %d, want 302", res.StatusCode)
	}
	get("/after")
	waitForFile(t, auditPath, `"path":"/after"`)
	waitForFile(t, auditPath, `"path":"/in-flight"`)
	rotated, err := os.ReadFile(auditPath + ".1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rotated), `"path":"/before"`) || strings.Contains(string(rotated), `"path":"/after"`) {
		t.Fatalf("the rotated file has:\n%s\nwant /before and not /after", rotated)
	}
	select {
	case err := <-exited:
		t.Fatalf("serve exited after SIGHUP: %v", err)
	default:
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not stop within 60s of SIGTERM")
	}
}

// buildBinary builds cmd/sekisho into dir.
func buildBinary(t *testing.T, dir string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "sekisho")
	cmd := exec.Command(goTool, "build", "-o", bin, "github.com/sekisho/sekisho/cmd/sekisho")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func waitForFile(t *testing.T, path, text string) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%s holds %s", path, text), func() bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), text)
	})
}

// waitUntil polls cond; the timeout is a mechanism, generous for a loaded machine.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
