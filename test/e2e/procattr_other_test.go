//go:build !linux

package e2e

import "os/exec"

// setDeathSignal does nothing outside Linux; the test's cleanups stop the
// gateway.
func setDeathSignal(cmd *exec.Cmd) {}
