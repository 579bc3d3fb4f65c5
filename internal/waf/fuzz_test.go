package waf

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"testing"
)

// verdictMessage is every Message Inspect can produce: built from rule
// ids and group names only, so no request byte can reach the audit log.
var verdictMessage = regexp.MustCompile(`^WAF (anomaly score reached the threshold \([a-z-]+(, [a-z-]+)*\)|could not parse the request body|found an invalid encoding in the request|refused an oversized request target or headers|refused an Expect header other than 100-continue|rule [0-9]+ denied the ([a-z-]+(, [a-z-]+)*|request))$`)

// FuzzInspect feeds attacker-controlled query, header, cookie and body
// bytes through the base WAF and checks what must hold for any input: no
// error and no panic for an in-memory body, the body handed on unchanged,
// a consistent verdict, and a message free of request data.
func FuzzInspect(f *testing.F) {
	f.Add("q=1%27%20OR%20%271%27%3D%271", "Mozilla/5.0", "a=b", []byte(`{"q":"hi"}`), uint8(0))
	f.Add("file=../../etc/passwd", "sqlmap/1.7", "", []byte{}, uint8(1))
	f.Add("q=%ff%fe", "x", "prefs=<script>", []byte("a=%zz&b=\x00"), uint8(1))
	f.Add("", "", "", []byte(`{"messages":[{"role":"user","content":"SELECT 1"}]`), uint8(0))
	f.Add("a", "b", "c", []byte("--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n--x--\r\n"), uint8(2))
	f.Add("x=<a>", "", "", []byte("<?xml version=\"1.0\"?><a>&x;</a>"), uint8(3))
	contentTypes := []string{"application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/xml", "application/octet-stream"}
	w := baseWAF.get(f)
	f.Fuzz(func(t *testing.T, query, ua, cookie string, body []byte, ct uint8) {
		r := &http.Request{
			Method: http.MethodPost, URL: &url.URL{Path: "/api", RawQuery: query}, RequestURI: "/api?" + query,
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Host: "app.example.com", RemoteAddr: "192.0.2.1:1234",
			Header: http.Header{"User-Agent": {ua}, "Cookie": {cookie}, "Content-Type": {contentTypes[int(ct)%len(contentTypes)]}},
			Body:   io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		}
		v, err := w.Inspect(r)
		if err != nil {
			t.Fatalf("Inspect: %v", err)
		}
		got, err := io.ReadAll(r.Body)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("body handed on changed: %q (err %v), sent %q", got, err, body)
		}
		if v.Matched != (len(v.RuleIDs) > 0) || v.Matched != (v.Message != "") {
			t.Fatalf("inconsistent verdict %+v", v)
		}
		if !slices.IsSorted(v.RuleIDs) || len(slices.Compact(slices.Clone(v.RuleIDs))) != len(v.RuleIDs) {
			t.Fatalf("rule ids not sorted and unique: %v", v.RuleIDs)
		}
		if !v.Matched && v.Score != 0 {
			t.Fatalf("score %d on a request that passed", v.Score)
		}
		if slices.ContainsFunc(v.RuleIDs, scoringMachinery) {
			t.Fatalf("rule ids %v name the scoring machinery, which no operator can disable", v.RuleIDs)
		}
		if v.Matched && !verdictMessage.MatchString(v.Message) {
			t.Fatalf("message %q is not one the WAF composes", v.Message)
		}
	})
}
