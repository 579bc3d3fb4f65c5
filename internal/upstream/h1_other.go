//go:build !unix

package upstream

import "syscall"

// idleConnUsable cannot peek on this platform: an idle connection the
// upstream closed shows as an error on use, and a request that may be
// sent twice is then sent again on a new connection (h1Conns.roundTrip).
func idleConnUsable(syscall.RawConn) bool { return true }
