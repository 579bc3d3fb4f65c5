package route

import (
	"bufio"
	"net"
	"net/http"

	"github.com/sekisho/sekisho/internal/web"
)

// recorder notes the status and body size for the audit line. It exposes
// the underlying writer through Unwrap, so http.ResponseController (which
// the reverse proxy uses to flush streams and hijack WebSockets) reaches it.
type recorder struct {
	http.ResponseWriter
	status   int
	bytes    int64
	hijacked bool
	// generated is set when sekisho answers itself. Otherwise the response
	// is the app's, and the app may not claim to be the gateway.
	generated bool
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
		if !r.generated {
			r.Header().Del(web.GeneratedHeader)
		}
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController find Flush, Hijack and deadlines.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// FlushError is what http.ResponseController calls; ReverseProxy flushes
// streams through it. It calls the writer underneath itself rather than
// through a second ResponseController: a stream's first flush (which writes
// the response header) is the deepest point of its connection goroutine's
// stack, and every frame there counts (see Pipeline.ServeHTTP).
func (r *recorder) FlushError() error {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	if f, ok := r.ResponseWriter.(interface{ FlushError() error }); ok {
		return f.FlushError()
	}
	return http.NewResponseController(r.ResponseWriter).Flush()
}

// Flush is here too because some code type-asserts http.Flusher directly.
func (r *recorder) Flush() { _ = r.FlushError() }

// Hijack hands over the connection (WebSocket after a 101 from upstream).
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.hijacked = true
	}
	return c, rw, err
}
