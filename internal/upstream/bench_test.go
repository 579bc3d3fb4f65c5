package upstream

import (
	"io"
	"net/http"
	"net/http/httputil"
	"testing"
	"time"
)

// benchGet sends GETs through front until the benchmark ends.
func benchGet(b *testing.B, c *http.Client, u string) {
	benchRoundTrip(b, c.Do, u)
}

// benchRoundTrip sends GETs of u with rt until the benchmark ends, reading
// and closing each body so that connections are reused.
func benchRoundTrip(b *testing.B, rt func(*http.Request) (*http.Response, error), u string) {
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		res, err := rt(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			b.Fatalf("status %d", res.StatusCode)
		}
	}
}

// BenchmarkProxy measures a GET through NewProxy to an httptest upstream.
// Compare with BenchmarkBareReverseProxy for the proxy's own cost.
func BenchmarkProxy(b *testing.B) {
	up := newServer(b, named("ok"))
	front := newFront(b, ProxyOptions{Pool: mustPool(b, PoolOptions{}, up.URL)})
	benchGet(b, front.Client(), front.URL+"/bench?q=1")
}

// BenchmarkBareReverseProxy is the baseline: a plain httputil.ReverseProxy
// with the same transport settings, to the same kind of upstream.
func BenchmarkBareReverseProxy(b *testing.B) {
	up := newServer(b, named("ok"))
	target := mustURL(b, up.URL)
	tr := NewTransport()
	b.Cleanup(tr.CloseIdleConnections)
	front := newServer(b, &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport: tr,
	})
	benchGet(b, front.Client(), front.URL+"/bench?q=1")
}

// BenchmarkRoundTrip sends GETs to an httptest upstream through sekisho's
// own HTTP/1.1 client (h1) and through http.Transport set up as NewTransport
// does, the two ways a pool may send a request. Both read and close each
// body, so connections are reused.
func BenchmarkRoundTrip(b *testing.B) {
	up := newServer(b, named("ok"))
	target := mustURL(b, up.URL)
	tr := NewTransport()
	b.Cleanup(tr.CloseIdleConnections)
	h1 := &h1Conns{addr: target.Host, dial: tr.DialContext, now: time.Now}
	b.Cleanup(h1.closeIdle)
	for _, tc := range []struct {
		name string
		rt   func(*http.Request) (*http.Response, error)
	}{
		{"h1", h1.roundTrip},
		{"http.Transport", tr.RoundTrip},
	} {
		b.Run(tc.name, func(b *testing.B) { benchRoundTrip(b, tc.rt, up.URL+"/bench?q=1") })
	}
}
