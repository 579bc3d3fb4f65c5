package session

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/testclock"
)

// testHost is the host requestWith sends to, and the one test sessions are
// issued on.
const testHost = "127.0.0.1"

// t0 is the fixed start of every test clock.
var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

// clock is the settable test clock.
type clock = testclock.Clock

func newClock() *clock { return testclock.New(t0) }

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func testRing(t testing.TB, keys ...[]byte) *Keyring {
	t.Helper()
	if len(keys) == 0 {
		keys = [][]byte{testKey(1)}
	}
	k, err := NewKeyring(keys)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return k
}

func testCodec(t testing.TB, opts Options) *Codec {
	t.Helper()
	if opts.Keyring == nil {
		opts.Keyring = testRing(t)
	}
	c, err := NewCodec(opts)
	if err != nil {
		t.Fatalf("NewCodec: %v", err)
	}
	return c
}

func alice() identity.Identity {
	return identity.Identity{
		User:     "alice",
		Email:    "alice@example.com",
		Groups:   []string{"engineering", "llm-users", "dify-admins", "oncall", "staff"},
		Provider: "google",
		AuthTime: t0.Add(-time.Minute),
	}
}

// issue runs Issue and returns the Set-Cookie cookie.
func issue(t testing.TB, c *Codec, s Session) *http.Cookie {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := c.Issue(rec, s); err != nil {
		t.Fatalf("Issue: %v", err)
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("Issue set %d cookies, want 1", len(cookies))
	}
	return cookies[0]
}

// requestWith returns a request carrying the given raw Cookie header lines.
func requestWith(lines ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
	for _, l := range lines {
		r.Header.Add("Cookie", l)
	}
	return r
}
