package waf

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	// smallBodyWAF inspects only the first 1 KiB of a body.
	smallBodyWAF = &lazyWAF{opts: Options{ParseJSON: true, BodyLimit: 1024}}
	// noJSONWAF does not parse JSON bodies.
	noJSONWAF = &lazyWAF{opts: Options{}}
)

// jsonPadded is a JSON object whose "q" field holds q, padded with a
// benign field to total bytes; attackFirst puts q before the padding.
func jsonPadded(q string, total int, attackFirst bool) string {
	pad := func(n int) string { return `"pad":"` + strings.Repeat("a", max(n, 0)) + `"` }
	fixed := len(`{"q":"` + q + `",` + pad(0) + `}`)
	if attackFirst {
		return `{"q":"` + q + `",` + pad(total-fixed) + `}`
	}
	return `{` + pad(total-fixed) + `,"q":"` + q + `"}`
}

func TestBodyBeyondLimit(t *testing.T) {
	w := smallBodyWAF.get(t)
	const xss = "<script>alert(1)</script>"
	tests := []struct {
		name    string
		body    string
		matched bool
	}{
		// The first BodyLimit bytes of a longer body are inspected; the cut
		// JSON is parsed best-effort and not denied for being cut.
		{"body_beyond_limit_attack_in_inspected_head_blocked", jsonPadded(xss, 4096, true), true},
		{"body_beyond_limit_benign_cut_json_not_denied", jsonPadded("hello", 4096, true), false},
		// Documented limit: bytes past BodyLimit are not seen.
		{"body_beyond_limit_attack_past_limit_not_seen", jsonPadded(xss, 4096, false), false},
		// A body of exactly BodyLimit bytes is whole: a parse error denies.
		{"body_at_exact_limit_malformed_json_denied", `{"q":"` + strings.Repeat("a", 1024-len(`{"q":"`)), true},
		{"body_at_exact_limit_valid_json_passes", jsonPadded("hello", 1024, true), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := inspect(t, w, req{method: "POST", target: "/api", body: tc.body})
			if v.Matched != tc.matched {
				t.Errorf("len %d: matched = %v, want %v: %+v", len(tc.body), v.Matched, tc.matched, v)
			}
		})
	}
}

// trackingBody records how it is used.
type trackingBody struct {
	io.Reader
	mu     sync.Mutex
	closed bool
}

func (b *trackingBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}

func TestBodyRestoredForUpstream(t *testing.T) {
	big := jsonPadded("hello", 300<<10, true) // past the default 128 KiB
	tests := []struct {
		name string
		w    *lazyWAF
		body string
		ct   string
	}{
		{"body_restored_for_upstream_small_json", baseWAF, chatBody("hi"), "application/json"},
		{"body_restored_for_upstream_beyond_limit", baseWAF, big, "application/json"},
		{"body_restored_for_upstream_beyond_small_limit", smallBodyWAF, big, "application/json"},
		{"body_restored_for_upstream_binary", baseWAF, string(bytes.Repeat([]byte{0, 1, 2, 0xff}, 1000)), "application/octet-stream"},
		{"body_restored_for_upstream_json_not_parsed", noJSONWAF, chatBody("hi"), "application/json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := req{method: "POST", target: "/v1/chat/completions", body: tc.body, contentType: tc.ct}.build(t)
			orig := &trackingBody{Reader: strings.NewReader(tc.body)}
			r.Body = orig
			if _, err := tc.w.get(t).Inspect(r); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r.Body)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, []byte(tc.body)) {
				t.Fatalf("upstream gets %d bytes, want the %d sent (first diff: %s)", len(got), len(tc.body),
					cmp.Diff(tc.body[:min(64, len(tc.body))], string(got[:min(64, len(got))])))
			}
			if err := r.Body.Close(); err != nil {
				t.Fatal(err)
			}
			if !orig.closed {
				t.Error("closing the restored body does not close the original")
			}
		})
	}
}

// failingReader yields n bytes, then an error: a client that hangs up.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("connection reset by peer")
	}
	k := min(len(p), f.n)
	for i := range p[:k] {
		p[i] = 'a'
	}
	f.n -= k
	return k, nil
}

func TestBodyReadErrorIsAnError(t *testing.T) {
	r := req{method: "POST", target: "/api", body: "x"}.build(t)
	r.Body = io.NopCloser(&failingReader{n: 100})
	r.ContentLength = 1000
	_, err := baseWAF.get(t).Inspect(r)
	if err == nil || !strings.Contains(err.Error(), "reading the request body") {
		t.Fatalf("err = %v, want a body read error", err)
	}
	got, _ := io.ReadAll(r.Body)
	if len(got) != 100 {
		t.Errorf("restored body has %d bytes, want the 100 read before the failure", len(got))
	}
}

func TestJSONNotParsedNotInspected(t *testing.T) {
	w := noJSONWAF.get(t)
	tests := []struct {
		name string
		body string
	}{
		{"json_attack_not_inspected_without_parse_json", `{"q":"<script>alert(1)</script>"}`},
		{"malformed_json_not_denied_without_parse_json", `{"a": [1, 2`},
		{"chat_prompt_with_code_not_read_as_form", chatBody("What does SELECT a FROM b UNION SELECT c FROM d do?")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if v := inspect(t, w, req{method: "POST", target: "/api", body: tc.body}); v.Matched {
				t.Errorf("denied: %+v", v)
			}
		})
	}
	// The rest of the request is still inspected.
	if v := inspect(t, w, req{method: "POST", target: "/api?q=%3Cscript%3Ealert(1)%3C/script%3E", body: `{}`}); !v.Matched {
		t.Errorf("query attack on a JSON request passed: %+v", v)
	}
}

func TestHugeAndOddInputNeverCrash(t *testing.T) {
	w := baseWAF.get(t)
	huge := strings.Repeat("a", 1<<20)
	tests := []struct {
		name string
		req  req
		want int // a rule the verdict must name; 0: any verdict, no error
	}{
		{"huge_header_value_denied", req{target: "/", header: http.Header{"X-Big": {huge}}}, RuleOversizedHeaders},
		{"many_headers_denied", req{target: "/", header: func() http.Header {
			h := http.Header{}
			for i := range 2000 {
				h.Add("X-H", strings.Repeat("b", i%50))
			}
			return h
		}()}, RuleOversizedHeaders},
		{"huge_cookie_denied", req{target: "/", header: http.Header{"Cookie": {"c=" + huge}}}, RuleOversizedHeaders},
		{"huge_query_denied", req{target: "/?q=" + huge}, RuleOversizedURI},
		{"huge_path_denied", req{target: "/" + huge}, RuleOversizedURI},
		{"header_under_limit_inspected", req{target: "/", header: http.Header{"X-Big": {huge[:16<<10]}}}, 0},
		{"many_query_args", req{target: "/?" + strings.Repeat("a=1&", 1500)}, 0},
		{"deeply_nested_json_denied", req{method: "POST", target: "/api", body: strings.Repeat("[", 1000) + strings.Repeat("]", 1000)}, 200002},
		{"wide_json_array", req{method: "POST", target: "/api", body: "[" + strings.Repeat("1,", 20000) + "1]"}, 0},
		{"broken_multipart_denied", req{method: "POST", target: "/upload", body: "--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--x", contentType: "multipart/form-data; boundary=x"}, 200002},
		{"multipart_without_boundary_denied", req{method: "POST", target: "/upload", body: "abc", contentType: "multipart/form-data"}, 200002},
		{"malformed_xml", req{method: "POST", target: "/soap", body: "<a><b></a>", contentType: "text/xml"}, 0},
		{"unknown_method_and_asterisk_target", req{method: "X", target: "*"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := w.Inspect(tc.req.build(t))
			if err != nil {
				t.Fatalf("err = %v: odd input must give a verdict, not an error", err)
			}
			if v.Matched != (len(v.RuleIDs) > 0) {
				t.Errorf("inconsistent verdict %+v", v)
			}
			if tc.want != 0 && (!v.Matched || !hasRuleIn(v.RuleIDs, tc.want)) {
				t.Errorf("got %+v, want a deny naming rule %d", v, tc.want)
			}
		})
	}
}

func TestConcurrentInspect(t *testing.T) {
	w := baseWAF.get(t)
	attack := req{target: "/search?q=1%27%20OR%20%271%27%3D%271"}
	benign := req{method: "POST", target: "/v1/chat/completions", body: chatBody("hello there")}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				c, want := benign, false
				if (g+i)%2 == 0 {
					c, want = attack, true
				}
				v, err := w.Inspect(c.build(t))
				if err != nil || v.Matched != want {
					errs <- c.target
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("wrong verdict under concurrency for %s", e)
	}
}
