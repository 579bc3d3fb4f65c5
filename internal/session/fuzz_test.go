package session

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sekisho/sekisho/internal/identity"
)

// FuzzOpen feeds arbitrary cookie values to Open. Besides not panicking, every
// error must wrap one of the documented sentinels, and any value that opens
// must re-seal and re-open to the same session.
func FuzzOpen(f *testing.F) {
	clk := newClock()
	c := testCodec(f, Options{Secure: true, Now: clk.Now, Revocations: NewRevocations()})
	good, err := c.Seal(c.New(alice(), testHost))
	if err != nil {
		f.Fatal(err)
	}
	empty, err := c.Seal(c.New(identity.Identity{}, testHost))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		good, empty, "", "A", "====", good[:len(good)-1], good[:10], good + "A",
		strings.Repeat("A", 60), strings.Repeat("_", MaxCookieBytes), "\"" + good + "\"", "\x00\xff",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		s, err := c.Open(value, testHost)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrWrongHost) && !errors.Is(err, ErrExpired) && !errors.Is(err, ErrRevoked) {
				t.Fatalf("Open error %v wraps no sentinel", err)
			}
			if diff := cmp.Diff(Session{}, s); diff != "" {
				t.Fatalf("Open returned a session with its error:\n%s", diff)
			}
			return
		}
		if len(c.CookieName())+1+len(value) > MaxCookieBytes {
			t.Fatalf("Open accepted a %d-byte value", len(value))
		}
		again, err := c.Seal(s)
		if err != nil {
			t.Fatalf("re-seal of an opened session: %v", err)
		}
		s2, err := c.Open(again, testHost)
		if err != nil {
			t.Fatalf("re-open: %v", err)
		}
		if diff := cmp.Diff(s, s2); diff != "" {
			t.Fatalf("re-seal round trip (-first +second):\n%s", diff)
		}
	})
}

// FuzzDecodeSession fuzzes the plaintext decoder behind the AEAD (defence in
// depth against a key leak or a bug in sealing): a decoded session encodes to
// a canonical form no longer than its input that decodes to the same session.
func FuzzDecodeSession(f *testing.F) {
	s := Session{
		ID: NewID(), User: "alice", Email: "a@example.com", Groups: []string{"g1", ""},
		Provider: "local", Host: ".example.com", AuthTime: t0, IssuedAt: t0, LastSeen: t0.Add(time.Minute),
	}
	b, err := s.encode(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)-1])
	f.Add(append(b, 0))
	z, err := (&Session{ID: NewID()}).encode(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(z)
	f.Add([]byte{})
	f.Add([]byte{encodingVersion})
	f.Add(append([]byte{1}, b[1:]...))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSession(b)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("decode error %v is not errMalformed", err)
			}
			return
		}
		re, err := s.encode(nil)
		if err != nil {
			t.Fatalf("encode of a decoded session: %v", err)
		}
		if len(re) > len(b) {
			t.Fatalf("canonical encoding %d bytes is longer than input %d", len(re), len(b))
		}
		s2, err := decodeSession(re)
		if err != nil {
			t.Fatalf("decode of re-encoding: %v", err)
		}
		if diff := cmp.Diff(s, s2); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

func TestEncodingRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		s    Session
	}{
		{name: "zero_times_and_strings", s: Session{ID: NewID()}},
		{name: "full", s: Session{ID: NewID(), User: "bob", Email: "b@x", Groups: []string{"a", "", "ünïcode"},
			Provider: "oidc", Host: "app.example.com", AuthTime: t0, IssuedAt: t0.Add(time.Second), LastSeen: t0.Add(time.Hour)}},
		{name: "domain_bound", s: Session{ID: NewID(), User: "carol", Host: ".example.com", AuthTime: t0}},
		{name: "pre_epoch", s: Session{ID: NewID(), AuthTime: time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.s.encode(nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeSession(b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.s, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			if tc.s.AuthTime.IsZero() && !got.AuthTime.IsZero() {
				t.Errorf("zero AuthTime decoded as %v", got.AuthTime)
			}
		})
	}
}
