// Command bareproxy is the benchmark's ceiling for a Go proxy: the standard
// library's httputil.ReverseProxy in a few lines, tuned as sekisho is so
// that the comparison measures sekisho's request path and nothing else: the
// same upstream keep-alive pool (256 idle connections per host and no
// total cap; the default transport keeps only 2 per host, which would make
// it open connections under load and measure the kernel), no
// Accept-Encoding added, and a pool of 32 KiB copy buffers
// (without one, ReverseProxy allocates a fresh 32 KiB buffer per request).
//
// With -pprof ADDR it also serves net/http/pprof there (benchrun -pprof
// compares its allocations with sekisho's); the proxy itself does not use
// http.DefaultServeMux, so this changes nothing on the measured path.
//
// With -h1 the transport is sekisho's upstream pool instead, whose own
// HTTP/1.1 client sends plain-http requests (internal/upstream/h1.go):
// benchrun's target (d), which shows what sekisho's sign-in, identity
// headers and audit cost on the same transport.
//
// It prints "listening ADDR" on its first line of stdout.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	_ "net/http/pprof" // only served with -pprof
	"net/url"
	"sync"

	"github.com/sekisho/sekisho/internal/upstream"
)

type bufferPool struct{ sync.Pool }

func (b *bufferPool) Get() []byte  { return *b.Pool.Get().(*[]byte) }
func (b *bufferPool) Put(p []byte) { b.Pool.Put(&p) }

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	target := flag.String("target", "", "upstream base URL")
	pprof := flag.String("pprof", "", "serve net/http/pprof on this address")
	h1 := flag.Bool("h1", false, "send through sekisho's upstream pool (its own HTTP/1.1 client) instead of http.Transport")
	flag.Parse()
	if *pprof != "" {
		go func() { log.Print(http.ListenAndServe(*pprof, nil)) }()
	}
	u, err := url.Parse(*target)
	if err != nil || u.Host == "" {
		log.Fatalf("bad -target %q", *target)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost, tr.DisableCompression = 0, 256, true // as sekisho's pools
	rp := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() },
		Transport:  tr,
		BufferPool: &bufferPool{sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}},
	}
	if *h1 {
		pool, err := upstream.NewPool(upstream.PoolOptions{Name: "bare", Targets: []*url.URL{u}})
		if err != nil {
			log.Fatal(err)
		}
		rp.Transport = pool
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	log.Fatal(http.Serve(ln, rp))
}
