package e2e

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel kill the gateway if the test process dies
// without running its cleanups, so that no gateway outlives a crashed test.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
