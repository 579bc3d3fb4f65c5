//go:build unix

package upstream

import "syscall"

// h1Supported: idle connections can be peeked at here (idleConnUsable), so
// plain-http targets use sekisho's own HTTP/1.1 client.
const h1Supported = true

// idleConnUsable reports whether an idle connection may carry a request:
// the upstream has not closed it (a peek would read end of file or fail)
// and has not sent bytes nobody asked for (a peek would find them). It
// peeks without waiting: one system call, where http.Transport instead
// keeps a goroutine reading every idle connection. Without a file
// descriptor (raw is nil) it cannot tell and says no.
func idleConnUsable(raw syscall.RawConn) bool {
	if raw == nil {
		return false
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
