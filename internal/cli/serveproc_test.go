package cli

import (
	"bufio"
	"io"
	"os/exec"
	"regexp"
	"testing"
	"time"
)

// serveProc is a real `sekisho serve` process started by a test, with its
// stderr captured and the address it serves on read from its log.
type serveProc struct {
	cmd    *exec.Cmd
	addr   string
	stderr lockedBuffer
	exited chan error    // receives the exit once
	gone   chan struct{} // closed when the process has exited
	err    error         // the exit, once gone is closed
}

// startServe runs bin serve --config cfg [extra...] with stdout going to
// stdout, and waits until it says where it serves. It is killed at cleanup, and its
// stderr is logged when the test failed.
func startServe(t *testing.T, bin, cfg string, stdout io.Writer, extra ...string) *serveProc {
	t.Helper()
	p := &serveProc{cmd: exec.Command(bin, append([]string{"serve", "--config", cfg}, extra...)...), exited: make(chan error, 1), gone: make(chan struct{})}
	p.cmd.Stdout = stdout
	errPipe, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan string, 1)
	go func() {
		addrRE := regexp.MustCompile(`msg="sekisho is serving" address=(\S+)`)
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			p.stderr.Write([]byte(sc.Text() + "\n"))
			if m := addrRE.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
		p.err = p.cmd.Wait()
		close(p.gone)
		p.exited <- p.err
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("stderr of sekisho serve:\n%s", p.stderr.String())
		}
	})
	select {
	case p.addr = <-addrc:
	case err := <-p.exited:
		t.Fatalf("serve exited before serving: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not report its address within 60s")
	}
	return p
}

// alive fails the test at once if the process has exited.
func (p *serveProc) alive(t *testing.T) bool {
	t.Helper()
	select {
	case <-p.gone:
		t.Fatalf("sekisho serve exited: %v", p.err)
	default:
	}
	return true
}
