// Command upstream is the benchmark's app: a small fixed body on every path,
// the sekisho identity header it received on /whoami, and on /sse a
// Server-Sent Events stream that stays open, sending a comment every
// -ping (default 15s) until the client goes away.
//
// It prints "listening ADDR" on its first line of stdout.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"time"
)

// body is the fixed response: small, like an API answer or a health probe.
var body = []byte("hello from the upstream: a fixed small body for the benchmark\n")

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	ping := flag.Duration("ping", 15*time.Second, "interval between SSE comments")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Sekisho-User"))
	})
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
		rc := http.NewResponseController(w)
		io.WriteString(w, ": open\n\n")
		if err := rc.Flush(); err != nil {
			return
		}
		t := time.NewTicker(*ping)
		defer t.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
				io.WriteString(w, ": ping\n\n")
				if err := rc.Flush(); err != nil {
					return
				}
			}
		}
	})
	fmt.Printf("listening %s\n", ln.Addr())
	log.Fatal((&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}).Serve(ln))
}
