package cli

import (
	"bufio"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// A log collector that dies closes the gateway's stdout (the default audit
// output). Go's runtime kills a process whose write to fd 1 or 2 meets a
// broken pipe, unless SIGPIPE is caught: the gateway must stay up, keep the
// lines it cannot write, and say unhealthy so traffic moves away.
func TestClosedStdoutPipeDoesNotKillServe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the sekisho binary")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	_, cfg := writeConfig(t, `version: 1
data_dir: {{DATA}}
listen: {address: "127.0.0.1:0"}
pools: [{name: app, urls: ["http://127.0.0.1:9"]}]
routes: [{name: app, host: "*", pool: app, policy: {public: true}}]
`)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // the collector is gone before the first line
	cmd := exec.Command(bin, "serve", "--config", cfg)
	cmd.Stdout = w
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var stderr lockedBuffer
	addrc, gone := make(chan string, 1), make(chan struct{})
	var exitErr error
	go func() {
		addrRE := regexp.MustCompile(`msg="sekisho is serving" address=(\S+)`)
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			stderr.Write([]byte(sc.Text() + "\n"))
			if m := addrRE.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
		exitErr = cmd.Wait()
		close(gone)
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("stderr of sekisho serve:\n%s", stderr.String())
		}
	})
	var addr string
	select {
	case addr = <-addrc:
	case <-gone:
		t.Fatalf("serve exited before serving: %v", exitErr)
	}
	unhealthy := false
	waitUntil(t, "healthz says the audit log cannot be written", func() bool {
		select {
		case <-gone:
			t.Fatalf("serve died on the closed stdout pipe: %v", exitErr)
		default:
		}
		res, err := http.Get("http://" + addr + "/public")
		if err == nil {
			res.Body.Close()
		}
		res, err = http.Get("http://" + addr + "/.sekisho/healthz")
		if err != nil {
			return false
		}
		res.Body.Close()
		unhealthy = res.StatusCode == http.StatusServiceUnavailable
		return unhealthy
	})
	cmd.Process.Signal(syscall.SIGTERM)
	<-gone
	if ee, ok := exitErr.(*exec.ExitError); ok && strings.Contains(ee.String(), "signal") {
		t.Fatalf("serve ended by a signal after SIGTERM: %v", exitErr)
	}
}
