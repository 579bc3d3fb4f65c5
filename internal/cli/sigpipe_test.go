package cli

import (
	"net/http"
	"os"
	"os/exec"
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
	p := startServe(t, bin, cfg, w)
	w.Close()
	addr := p.addr
	unhealthy := false
	waitUntil(t, "healthz says the audit log cannot be written", func() bool {
		p.alive(t) // dead on the closed stdout pipe: "signal: broken pipe"
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
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.gone
	if ee, ok := p.err.(*exec.ExitError); ok && strings.Contains(ee.String(), "signal") {
		t.Fatalf("serve ended by a signal after SIGTERM: %v", p.err)
	}
}
