package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestLogOneLinePerEntry(t *testing.T) {
	var buf syncBuf
	l := New(&buf)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Log(&Entry{Time: time.Unix(0, 0), RequestID: "r", Host: "h", Method: "GET", Path: "/p\nforged", Decision: "allow", Status: 200})
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 50 {
		t.Fatalf("got %d lines, want 50", len(lines))
	}
	for _, ln := range lines {
		var e map[string]any
		if err := json.Unmarshal([]byte(ln), &e); err != nil {
			t.Fatalf("line is not JSON (log injection via newline in path?): %q", ln)
		}
		if e["path"] != "/p\nforged" {
			t.Fatalf("path = %q", e["path"])
		}
	}
}

func TestEntryHasNoCredentialFields(t *testing.T) {
	b, _ := json.Marshal(Entry{})
	for _, banned := range []string{"cookie", "authorization", "query", "token", "password"} {
		if strings.Contains(strings.ToLower(string(b)), banned) {
			t.Errorf("audit entry has a field named like %q: %s", banned, b)
		}
	}
}

// BenchmarkLog measures Log as a request pays for it, against the old way
// (json.Marshal, then the write) in the same run.
func BenchmarkLog(b *testing.B) {
	e := &Entry{Time: time.Now(), RequestID: "0123456789abcdef", Route: "r", Host: "h", Method: "GET", Path: "/", ClientIP: "127.0.0.1", User: "alice", Kind: "session", Decision: "allow", Reason: "any signed-in identity is allowed", Status: 200}
	for _, tc := range []struct {
		name string
		log  func(*Logger, *Entry)
	}{{"json.Marshal", logWithMarshal}, {"appendEntry", (*Logger).Log}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			l := New(discard{})
			for b.Loop() {
				tc.log(l, e)
			}
			l.Close()
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
