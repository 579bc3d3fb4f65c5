//go:build !unix

package upstream

import "syscall"

// h1Supported is false: without a way to peek at an idle connection, bytes
// an upstream sent unasked could not be told from the next response, so
// every target uses http.Transport, whose reader goroutine watches each
// idle connection.
const h1Supported = false

// idleConnUsable is never reached where h1Supported is false.
func idleConnUsable(syscall.RawConn) bool { return false }
