//go:build unix

package upstream

import "syscall"

// idleConnUsable reports whether an idle connection may carry a request:
// the upstream has not closed it (a peek would read end of file or fail)
// and has not sent bytes nobody asked for (a peek would find them). It
// peeks without waiting: one system call, where http.Transport instead
// keeps a goroutine reading every idle connection. Without a file
// descriptor (raw is nil) it cannot tell and says yes.
func idleConnUsable(raw syscall.RawConn) bool {
	if raw == nil {
		return true
	}
	usable := false
	var b [1]byte
	err := raw.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		usable = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && usable
}
