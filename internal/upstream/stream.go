package upstream

import (
	"io"
	"time"
)

// streamBody wraps a stream's response body. Every Read (and, for an
// upgrade, every Write) that moves bytes pushes the idle timer back; when it
// fires the request context is cancelled. A read that fails because the
// request context ended (idle timeout, client gone, server shutdown) reports
// io.EOF, so ReverseProxy ends the response normally instead of aborting
// the handler. A 101 body stays an io.ReadWriteCloser; cancelling the
// context makes ReverseProxy close both connections.
func (h *proxy) streamBody(body io.ReadCloser, st *reqState) io.ReadCloser {
	s := &idleBody{rc: body, st: st, idle: h.idle}
	if h.idle > 0 {
		s.timer = time.AfterFunc(h.idle, func() { st.cancel(errIdleTimeout) })
	}
	if rwc, ok := body.(io.ReadWriteCloser); ok {
		return &idleRWC{idleBody: s, w: rwc}
	}
	return s
}

type idleBody struct {
	rc    io.ReadCloser
	st    *reqState
	idle  time.Duration
	timer *time.Timer // nil: no idle timeout
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.touch()
	}
	if err != nil && err != io.EOF && b.st.ctx.Err() != nil {
		// The stream was ended on purpose: end the response cleanly.
		err = io.EOF
	}
	return n, err
}

func (b *idleBody) touch() {
	if b.timer != nil {
		b.timer.Reset(b.idle)
	}
}

func (b *idleBody) Close() error {
	if b.timer != nil {
		b.timer.Stop()
	}
	return b.rc.Close()
}

// idleRWC is the body of an upgraded connection. Its read errors are not
// turned into io.EOF: ReverseProxy must see the closed connection as an
// error to stop copying both ways and close the client's connection.
type idleRWC struct {
	*idleBody
	w io.Writer
}

func (b *idleRWC) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.touch()
	}
	return n, err
}

func (b *idleRWC) Write(p []byte) (int, error) {
	n, err := b.w.Write(p)
	if n > 0 {
		b.touch()
	}
	return n, err
}

// CloseWrite half-closes the upgraded connection to the upstream.
func (b *idleRWC) CloseWrite() error { return closeWrite(b.w) }
