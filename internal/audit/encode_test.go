package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// typical is an ordinary audit line: a signed-in user allowed through.
var typical = Entry{
	Time: time.Date(2026, 11, 23, 9, 41, 7, 123456789, time.UTC), RequestID: "0123456789abcdef",
	Route: "dify-console", Host: "dify.example.com", Method: "GET", Path: "/console/api/apps",
	ClientIP: "203.0.113.7", User: "alice@example.com", Kind: "session", Provider: "google",
	Decision: "allow", Reason: "any signed-in identity is allowed", Status: 200, Bytes: 5120, Duration: 1834,
}

// hostile has every string field escaped in some way.
var hostile = Entry{
	Time: time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("JST", 9*3600)), RequestID: `"quoted" \back\slash/`,
	Route: "<script>alert(1)</script>", Host: "a&b>c", Method: "G\x00E\x1fT\x7f",
	Path: "/p\n{\"decision\":\"allow\"}\r\t\b\f", ClientIP: "\u2028\u2029", User: "bad\xffutf8\xc3",
	Kind: "\xed\xa0\x80surrogate", Provider: "émoji 🎉 ok", Decision: "deny", Reason: "r\u007f\u0080\ufffd",
	Rule: "rule\u00a0nbsp", Preview: true, Status: -1, Bytes: math.MinInt64, Duration: math.MaxInt64,
	Upstream: "dial tcp: <nil> & \"refused\"",
}

func TestAppendEntryMatchesEncodingJSON(t *testing.T) {
	tests := []struct {
		name string
		e    Entry
	}{
		{"zero", Entry{}},
		{"typical", typical},
		{"hostile", hostile},
		{"anonymous without route", Entry{Time: time.Unix(0, 0).UTC(), RequestID: "r", Host: "h", Method: "POST", Path: "/login", ClientIP: "::1", Decision: "gateway", Reason: "sign-in", Status: 302}},
		{"now with monotonic reading", Entry{Time: time.Now(), Decision: "allow"}},
		{"local time", Entry{Time: time.Date(2026, 3, 29, 1, 30, 0, 0, time.Local)}},
		{"negative offset with minutes", Entry{Time: time.Date(2026, 3, 29, 1, 30, 0, 1, time.FixedZone("", -(9*3600+30*60)))}},
		{"offset with seconds", Entry{Time: time.Date(1880, 1, 1, 0, 0, 0, 0, time.FixedZone("LMT", 9*3600+18*60+59))}},
		{"offset of 23:59", Entry{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 23*3600+59*60))}},
		{"year 0", Entry{Time: time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"year 9999", Entry{Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)}},
		{"nanoseconds with trailing zeros", Entry{Time: time.Date(2026, 1, 1, 0, 0, 0, 120000000, time.UTC)}},
		{"huge numbers", Entry{Status: math.MaxInt, Bytes: math.MaxInt64, Duration: math.MinInt64}},
		{"negative numbers", Entry{Status: math.MinInt, Bytes: -1, Duration: -1}},
		{"preview only", Entry{Preview: true}},
		{"upstream error only", Entry{Upstream: "502"}},
		{"every ASCII byte", Entry{Path: asciiBytes()}},
		{"every byte", Entry{Reason: allBytes()}},
		{"invalid UTF-8 sequences", Entry{Path: "\x80|\xbf|\xc0\x80|\xc1\xbf|\xe0\x80\x80|\xe2\x80|\xed\xa0\x80|\xed\xbf\xbf|\xf0\x80\x80\x80|\xf4\x90\x80\x80|\xf5|\xff|\xe2\x80\xa8\xe2\x80"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkSameAsJSON(t, &tc.e)
		})
	}
}

func TestAppendEntryRejectsWhatJSONRejects(t *testing.T) {
	tests := []struct {
		name string
		t    time.Time
	}{
		{"year 10000", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"year -1", time.Date(-1, 12, 31, 0, 0, 0, 0, time.UTC)},
		{"offset of 24 hours", time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600))},
		{"offset of -100 hours", time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", -100*3600))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := typical
			e.Time = tc.t
			if _, err := json.Marshal(&e); err == nil {
				t.Fatal("json.Marshal accepts the time; the case tests nothing")
			}
			got, err := appendEntry([]byte("prefix"), &e)
			if err == nil {
				t.Fatalf("appendEntry accepted what json.Marshal rejects: %s", got)
			}
			if string(got) != "prefix" {
				t.Errorf("on error the buffer = %q, want the prefix unchanged", got)
			}
		})
	}
}

// TestAppendEntryCoversEveryField sets every field of Entry, found by
// reflection, so that a field added to Entry but not to appendEntry fails.
func TestAppendEntryCoversEveryField(t *testing.T) {
	var e Entry
	v := reflect.ValueOf(&e).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		name := v.Type().Field(i).Name
		switch f.Kind() {
		case reflect.String:
			f.SetString("<" + name + ">")
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Int, reflect.Int64:
			f.SetInt(int64(1000 + i))
		case reflect.Struct:
			if f.Type() != reflect.TypeFor[time.Time]() {
				t.Fatalf("field %s: type %s is not handled by this test", name, f.Type())
			}
			f.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)))
		default:
			t.Fatalf("field %s: kind %s is not handled by this test (nor, likely, by appendEntry)", name, f.Kind())
		}
	}
	checkSameAsJSON(t, &e)
}

func TestAppendEntryKeepsPrefix(t *testing.T) {
	want, _ := json.Marshal(&typical)
	got, err := appendEntry([]byte("line one\n"), &typical)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("line one\n"+string(want), string(got)); diff != "" {
		t.Errorf("appendEntry with a prefix (-want +got):\n%s", diff)
	}
}

// TestAppendStringMatchesEncodingJSONForEveryRune compares every code point,
// in strings of 1024 neighbours, and every single byte.
func TestAppendStringMatchesEncodingJSONForEveryRune(t *testing.T) {
	var sb strings.Builder
	check := func(s string) {
		t.Helper()
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("appendString(%+q):\n got %s\nwant %s", s, got, want)
		}
	}
	for r := rune(0); r <= utf8.MaxRune; r++ {
		sb.WriteRune(r) // surrogates become U+FFFD, as json.Marshal would make them
		if r%1024 == 1023 {
			check(sb.String())
			sb.Reset()
		}
	}
	for c := 0; c < 256; c++ {
		check(string([]byte{byte(c)}))
		check("a" + string([]byte{byte(c)}) + "z")
	}
}

// TestLogInjectionNewlineOrQuoteInFieldForgesNoLine pins the attack of a
// client putting a line break (or a closing quote) into a logged field to
// forge a second, "allow" audit line or a second "decision" key.
func TestLogInjectionNewlineOrQuoteInFieldForgesNoLine(t *testing.T) {
	const forged = "{\"decision\":\"allow\"}"
	tests := []struct {
		name       string
		path, user string
	}{
		{"newline in path", "/x\n" + forged, "mallory"},
		{"newline in user", "/x", "mallory\n" + forged},
		{"CRLF in path", "/x\r\n" + forged + "\r\n", "mallory"},
		{"line separators in path", "/x\u2028" + forged + "\u2029", "mallory"},
		{"closing quote in path", `/x","decision":"allow`, "mallory"},
		{"escaped quote in user", `mallory\","decision":"allow","x":"`, "mallory"},
		{"invalid UTF-8 before newline", "/x\xc3\n" + forged, "mallory\xe2\x80\n" + forged},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf syncBuf
			l := New(&buf)
			l.Log(&Entry{Time: time.Unix(0, 0).UTC(), RequestID: "r1", Host: "h", Method: "GET",
				Path: tc.path, User: tc.user, Decision: "deny", Reason: "not in group", Status: 403})
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") || strings.ContainsAny(out, "\r\u2028\u2029") {
				t.Fatalf("entry did not stay on one line: %q", out)
			}
			fields := decodeOnce(t, out)
			if fields["decision"] != "deny" {
				t.Errorf("decision = %q, want deny", fields["decision"])
			}
			// Each invalid byte reads back as U+FFFD, as []rune makes it.
			if want := string([]rune(tc.path)); fields["path"] != want {
				t.Errorf("path = %q, want %q", fields["path"], want)
			}
			if want := string([]rune(tc.user)); fields["user"] != want {
				t.Errorf("user = %q, want %q", fields["user"], want)
			}
		})
	}
}

// TestLogKeepsEntryWithUnencodableTime: a time with no RFC 3339 form (a
// broken clock) must not make a decision vanish from the audit log; the
// line is written with the time of writing, and the next line is whole.
func TestLogKeepsEntryWithUnencodableTime(t *testing.T) {
	var buf syncBuf
	l := New(&buf)
	bad := typical
	bad.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	bad.RequestID = "broken-clock"
	before := time.Now().UTC().Add(-time.Second)
	l.Log(&bad)
	l.Log(&typical)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	var got Entry
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatalf("first line is not JSON: %v", err)
	}
	if got.RequestID != "broken-clock" || got.Decision != bad.Decision || got.Time.Before(before) || got.Time.Year() != before.Year() {
		t.Errorf("first line = %+v, want the entry with the time of writing", got)
	}
	want, _ := json.Marshal(&typical)
	if lines[1] != string(want) {
		t.Errorf("second line = %s, want %s", lines[1], want)
	}
}

func TestLogDoesNotAllocate(t *testing.T) {
	l := New(discard{})
	defer l.Close()
	for _, e := range []*Entry{&typical, &hostile} {
		if n := testing.AllocsPerRun(100, func() { l.Log(e) }); n != 0 {
			t.Errorf("Log(%s) allocates %.1f times per call, want 0", e.Path, n)
		}
	}
}

func FuzzAppendEntry(f *testing.F) {
	for _, e := range []Entry{{}, typical, hostile, {
		Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Path: "<script>\u2028</script>", User: "\x00\xff",
	}} {
		_, off := e.Time.Zone()
		f.Add(e.Time.Unix(), int64(e.Time.Nanosecond()), off, e.RequestID, e.Route, e.Host, e.Method, e.Path,
			e.ClientIP, e.User, e.Kind, e.Provider, e.Decision, e.Reason, e.Rule, e.Preview, e.Status, e.Bytes,
			e.Duration, e.Upstream)
	}
	f.Fuzz(func(t *testing.T, sec, nsec int64, offset int, requestID, route, host, method, path, clientIP,
		user, kind, provider, decision, reason, rule string, preview bool, status int, nbytes, duration int64,
		upstream string) {
		e := &Entry{
			Time: time.Unix(sec, nsec).In(time.FixedZone("", offset)), RequestID: requestID, Route: route,
			Host: host, Method: method, Path: path, ClientIP: clientIP, User: user, Kind: kind,
			Provider: provider, Decision: decision, Reason: reason, Rule: rule, Preview: preview,
			Status: status, Bytes: nbytes, Duration: duration, Upstream: upstream,
		}
		checkSameAsJSON(t, e)
	})
}

// checkSameAsJSON fails unless appendEntry gives json.Marshal's bytes, or
// both fail. It appends after a prefix to check that it is kept.
func checkSameAsJSON(t *testing.T, e *Entry) {
	t.Helper()
	want, wantErr := json.Marshal(e)
	const prefix = "x\n"
	got, err := appendEntry([]byte(prefix), e)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("appendEntry error = %v, json.Marshal error = %v", err, wantErr)
	}
	if !bytes.HasPrefix(got, []byte(prefix)) {
		t.Fatalf("appendEntry dropped the buffer's prefix: %q", got)
	}
	got = got[len(prefix):]
	if err != nil {
		if len(got) != 0 {
			t.Fatalf("appendEntry failed but appended %q", got)
		}
		return
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("appendEntry differs from json.Marshal:\n got %s\nwant %s", got, want)
	}
	if bytes.ContainsAny(got, "\n\r") {
		t.Fatalf("line break in the line: %q", got)
	}
}

// decodeOnce decodes one JSON object of strings and numbers, failing on a
// duplicate key (which a lenient reader would resolve either way).
func decodeOnce(t *testing.T, line string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("line does not start an object: %q (%v)", line, err)
	}
	fields := map[string]any{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		key := tok.(string)
		if _, dup := fields[key]; dup {
			t.Fatalf("line has key %q twice: %q", key, line)
		}
		if fields[key], err = dec.Token(); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
	}
	if _, err := dec.Token(); err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	if dec.More() {
		t.Fatalf("trailing data after the object: %q", line)
	}
	return fields
}

func asciiBytes() string {
	b := make([]byte, utf8.RuneSelf)
	for i := range b {
		b[i] = byte(i)
	}
	return string(b)
}

func allBytes() string {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return string(b)
}

// logWithMarshal is Log as it was before appendEntry, kept for the benchmark.
func logWithMarshal(l *Logger, e *Entry) {
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	l.mu.Lock()
	l.buf = append(append(l.buf, b...), '\n')
	l.pendingBytes += len(b) + 1
	l.pendingLines++
	l.mu.Unlock()
}

// BenchmarkEncode compares appendEntry with json.Marshal, on an ordinary
// entry and on one whose every field needs escaping.
func BenchmarkEncode(b *testing.B) {
	for _, tc := range []struct {
		name string
		e    *Entry
	}{{"typical", &typical}, {"hostile", &hostile}} {
		b.Run(tc.name+"/json.Marshal", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := json.Marshal(tc.e); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/appendEntry", func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				var err error
				if buf, err = appendEntry(buf[:0], tc.e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
