package waf

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// benchChat is a typical chat POST: an OpenAI-style request with a system
// prompt, a short history and a question (about 1 KiB).
var benchChat = chatBodyHistory()

func chatBodyHistory() string {
	return `{"model":"gpt-4o","stream":true,"temperature":0.2,"messages":[` +
		`{"role":"system","content":"You are a helpful assistant for the data team. Answer briefly and cite the table names you use."},` +
		`{"role":"user","content":"Which tables hold the monthly revenue figures?"},` +
		`{"role":"assistant","content":"Monthly revenue is in finance.revenue_monthly, keyed by month and region. The raw invoices are in finance.invoices."},` +
		`{"role":"user","content":"Can you explain what this query does: SELECT name FROM users WHERE id = 1? Would an index on id help, and how would I check whether the planner uses it? Please keep the answer short, with one example."}]}`
}

// upstream stands in for the proxy: it reads the whole body, as forwarding does.
var upstream = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.WriteHeader(http.StatusOK)
})

func withWAF(w *WAF, next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		v, err := w.Inspect(r)
		if err != nil || v.Matched {
			rw.WriteHeader(http.StatusForbidden)
			return
		}
		next.ServeHTTP(rw, r)
	})
}

func benchChatPOST(b *testing.B, h http.Handler) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchChat)))
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(benchChat))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Content-Length", itoa(len(benchChat)))
		r.Header.Set("User-Agent", "OpenAI/Python 1.35.0")
		r.Header.Set("Accept", "text/event-stream")
		r.Header.Set("Authorization", "Bearer sk-test")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

// BenchmarkChatPOSTNoWAF is the baseline for BenchmarkChatPOSTWAF: the same
// request through the same handler, without inspection.
func BenchmarkChatPOSTNoWAF(b *testing.B) { benchChatPOST(b, upstream) }

// BenchmarkChatPOSTWAF is a typical chat POST inspected at paranoia 1 with
// every group and ParseJSON; the difference to BenchmarkChatPOSTNoWAF is the
// WAF's cost per request.
func BenchmarkChatPOSTWAF(b *testing.B) { benchChatPOST(b, withWAF(baseWAF.get(b), upstream)) }
