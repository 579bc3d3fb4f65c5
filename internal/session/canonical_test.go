package session_test

import (
	"testing"

	"github.com/sekisho/sekisho/internal/route"
	"github.com/sekisho/sekisho/internal/session"
)

// FuzzCanonicalHostMatchesRouter holds session.CanonicalHost to the form the
// router matches on: if they differed, a session could be bound to one name
// while the router picks the app by another.
func FuzzCanonicalHostMatchesRouter(f *testing.F) {
	for _, h := range []string{"", "app.example.com", "APP.Example.COM:8443", "app.example.com.", "[::1]:8080", "[::1]",
		"::1", "127.0.0.1:80", "a:b:c", "x.", "..", "[", "]:", "ÄPP.example.com", "host:"} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if got, want := session.CanonicalHost(h), route.CanonicalHost(h); got != want {
			t.Fatalf("session.CanonicalHost(%q) = %q, route.CanonicalHost = %q", h, got, want)
		}
	})
}
