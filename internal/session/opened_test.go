package session

import (
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/identity"
)

// The opened-value cache skips decryption for a cookie value seen before.
// These tests hold it to being only that: every rule Open enforces still
// applies to a value that is in the cache.

func TestOpenedCacheRevokedSessionStaysRefused(t *testing.T) {
	clk, rev := newClock(), NewRevocations()
	c := testCodec(t, Options{Now: clk.Now, Revocations: rev})
	s := c.New(alice(), testHost)
	value := issue(t, c, s).Value
	if _, err := c.Open(value, testHost); err != nil {
		t.Fatalf("first open: %v", err)
	}
	if _, ok := c.opened.get(value, c.keyring.ring.Load()); !ok {
		t.Fatal("an authentic value was not cached: the test would not exercise the cache")
	}
	rev.RevokeSession(s.ID, t0.Add(time.Hour))
	if _, err := c.Open(value, testHost); !errors.Is(err, ErrRevoked) {
		t.Fatalf("a revoked session read from the cache: err = %v, want ErrRevoked", err)
	}
}

func TestOpenedCacheExpiredSessionStaysRefused(t *testing.T) {
	clk := newClock()
	c := testCodec(t, Options{Now: clk.Now, IdleTimeout: time.Hour, Lifetime: 2 * time.Hour})
	value := issue(t, c, c.New(alice(), testHost)).Value
	if _, err := c.Open(value, testHost); err != nil {
		t.Fatalf("first open: %v", err)
	}
	clk.Advance(time.Hour + time.Second)
	if _, err := c.Open(value, testHost); !errors.Is(err, ErrExpired) {
		t.Fatalf("an idle-expired session read from the cache: err = %v, want ErrExpired", err)
	}
}

func TestOpenedCacheTamperedValueNotCachedNorAccepted(t *testing.T) {
	c := testCodec(t, Options{Now: newClock().Now})
	value := issue(t, c, c.New(alice(), testHost)).Value
	if _, err := c.Open(value, testHost); err != nil {
		t.Fatal(err)
	}
	b := []byte(value)
	b[len(b)/2] ^= 1
	tampered := string(b)
	for range 2 {
		if _, err := c.Open(tampered, testHost); !errors.Is(err, ErrInvalid) {
			t.Fatalf("tampered value: err = %v, want ErrInvalid", err)
		}
	}
	if _, ok := c.opened.get(tampered, c.keyring.ring.Load()); ok {
		t.Fatal("a value that failed authentication was cached")
	}
}

func TestOpenedCacheCallerCannotAlterCachedGroups(t *testing.T) {
	c := testCodec(t, Options{Now: newClock().Now})
	value := issue(t, c, c.New(alice(), testHost)).Value
	for i := range 2 {
		s, err := c.Open(value, testHost)
		if err != nil {
			t.Fatal(err)
		}
		if s.Groups[0] != "engineering" {
			t.Fatalf("open %d: groups = %v: an earlier caller's change reached the cache", i, s.Groups)
		}
		s.Groups[0] = "dify-admins-forged"
	}
}

func TestOpenedCacheIsBounded(t *testing.T) {
	c := testCodec(t, Options{Now: newClock().Now})
	for i := range maxOpened + 10 {
		id := alice()
		id.User = fmt.Sprint("user", i)
		if _, err := c.Open(issue(t, c, c.New(id, testHost)).Value, testHost); err != nil {
			t.Fatal(err)
		}
	}
	c.opened.mu.RLock()
	n := len(c.opened.m)
	c.opened.mu.RUnlock()
	if n > maxOpened {
		t.Fatalf("cache holds %d values, over the bound of %d", n, maxOpened)
	}
}

// The attack: a session key leaked, and the operator drops it by a reload;
// a cookie it sealed that the opened-cookie cache still holds must not
// work any longer.
func TestDroppedKeyCookieRefusedEvenWhenCached(t *testing.T) {
	oldKey, newKey := make([]byte, KeySize), make([]byte, KeySize)
	rand.Read(oldKey)
	rand.Read(newKey)
	ring, err := NewKeyring([][]byte{oldKey})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCodec(Options{Keyring: ring})
	if err != nil {
		t.Fatal(err)
	}
	s := c.New(identity.Identity{Kind: identity.Session, User: "alice", Provider: "local", AuthTime: time.Now()}, "app.example.com")
	value, err := c.Seal(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open(value, "app.example.com"); err != nil { // now cached
		t.Fatal(err)
	}
	if err := ring.Replace([][]byte{oldKey}); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.opened.get(value, ring.ring.Load()); !ok {
		t.Error("a reload with the same keys emptied the opened-cookie cache")
	}
	if err := ring.Replace([][]byte{newKey}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open(value, "app.example.com"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a cookie sealed with the dropped key opened: %v", err)
	}
}
