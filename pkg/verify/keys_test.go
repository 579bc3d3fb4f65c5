package verify

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sekisho/sekisho/internal/authn/bearer/jwtcheck/jwttest"
)

func fetchingVerifier(t *testing.T, srv *jwttest.Server, clk *clock) *Verifier {
	t.Helper()
	v, err := New(Options{
		JWKSURL:    srv.JWKSURL(),
		Issuer:     testIssuer,
		Audience:   testAudience,
		HTTPClient: srv.Client(),
		Now:        clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestFetchLazyAndCached(t *testing.T) {
	k := newKey(t, "k1")
	srv := jwttest.NewServer(t, keySet(k))
	clk := newClock()
	v := fetchingVerifier(t, srv, clk)
	if n := srv.Fetches.Load(); n != 0 {
		t.Fatalf("New fetched %d times; want lazy fetch", n)
	}
	tok := signES(t, k, goodClaims())
	for range 5 {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Fetches.Load(); n != 1 {
		t.Errorf("fetches = %d after 5 verifies, want 1", n)
	}
}

// Forged kids must not make the app fetch the key set more than once per
// MinRefreshInterval.
func TestFetchUnknownKidRateLimited(t *testing.T) {
	k := newKey(t, "k1")
	srv := jwttest.NewServer(t, keySet(k))
	clk := newClock()
	v := fetchingVerifier(t, srv, clk)
	ctx := context.Background()
	if _, err := v.Verify(ctx, signES(t, k, goodClaims())); err != nil {
		t.Fatal(err)
	}
	forged := signES(t, newKey(t, "forged"), goodClaims())
	for range 100 {
		if _, err := v.Verify(ctx, forged); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("forged kid: err = %v, want ErrUnknownKey", err)
		}
	}
	if n := srv.Fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d after 100 forged kids within the interval, want 1", n)
	}
	clk.Advance(DefaultMinRefreshInterval)
	for range 100 {
		v.Verify(ctx, forged)
	}
	if n := srv.Fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d after the interval passed, want 2", n)
	}
}

// A key the gateway starts publishing (rotation) is found by the refetch an
// unknown kid triggers once the interval has passed.
func TestFetchNewKeyAfterRotation(t *testing.T) {
	oldKey, newK := newKey(t, "old"), newKey(t, "new")
	srv := jwttest.NewServer(t, keySet(oldKey))
	clk := newClock()
	v := fetchingVerifier(t, srv, clk)
	ctx := context.Background()
	if _, err := v.Verify(ctx, signES(t, oldKey, goodClaims())); err != nil {
		t.Fatal(err)
	}
	srv.SetKeys(keySet(newK, oldKey), http.StatusOK)
	clk.Advance(DefaultMinRefreshInterval)
	c := goodClaims()
	c["iat"], c["exp"] = clk.Now().Unix(), clk.Now().Add(5*time.Minute).Unix()
	if _, err := v.Verify(ctx, signES(t, newK, c)); err != nil {
		t.Fatalf("token from the new key: %v", err)
	}
	if _, err := v.Verify(ctx, signES(t, oldKey, c)); err != nil {
		t.Fatalf("token from the old key, still published: %v", err)
	}
}

// After KeySetTTL a dropped key stops verifying; a failed refetch keeps the
// old set rather than failing every request.
func TestFetchTTL(t *testing.T) {
	a, b := newKey(t, "a"), newKey(t, "b")
	ctx := context.Background()
	claimsAt := func(now time.Time) map[string]any {
		c := goodClaims()
		c["iat"], c["exp"] = now.Unix(), now.Add(5*time.Minute).Unix()
		return c
	}

	t.Run("dropped_key_stops_verifying", func(t *testing.T) {
		srv := jwttest.NewServer(t, keySet(a, b))
		clk := newClock()
		v := fetchingVerifier(t, srv, clk)
		if _, err := v.Verify(ctx, signES(t, b, claimsAt(clk.Now()))); err != nil {
			t.Fatal(err)
		}
		srv.SetKeys(keySet(a), http.StatusOK)
		clk.Advance(DefaultKeySetTTL)
		if _, err := v.Verify(ctx, signES(t, b, claimsAt(clk.Now()))); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("dropped key after TTL: err = %v, want ErrUnknownKey", err)
		}
	})
	t.Run("gateway_down_keeps_old_keys", func(t *testing.T) {
		srv := jwttest.NewServer(t, keySet(a))
		clk := newClock()
		v := fetchingVerifier(t, srv, clk)
		if _, err := v.Verify(ctx, signES(t, a, claimsAt(clk.Now()))); err != nil {
			t.Fatal(err)
		}
		srv.SetKeys(jose.JSONWebKeySet{}, http.StatusServiceUnavailable)
		clk.Advance(DefaultKeySetTTL)
		if _, err := v.Verify(ctx, signES(t, a, claimsAt(clk.Now()))); err != nil {
			t.Fatalf("failed refetch dropped the cached keys: %v", err)
		}
		if n := srv.Fetches.Load(); n != 2 {
			t.Errorf("fetches = %d, want 2", n)
		}
	})
}

func TestFetchBadKeySet(t *testing.T) {
	tests := []struct {
		name   string
		set    jose.JSONWebKeySet
		status int
	}{
		{name: "status_500", status: http.StatusInternalServerError},
		{name: "empty_set", status: http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := newKey(t, "k1")
			srv := jwttest.NewServer(t, tc.set)
			srv.SetKeys(tc.set, tc.status)
			v := fetchingVerifier(t, srv, newClock())
			_, err := v.Verify(context.Background(), signES(t, k, goodClaims()))
			if !errors.Is(err, ErrUnknownKey) {
				t.Fatalf("err = %v, want ErrUnknownKey", err)
			}
		})
	}
}

// Many requests arriving before the first fetch share one fetch.
func TestFetchConcurrentSingleFetch(t *testing.T) {
	k := newKey(t, "k1")
	srv := jwttest.NewServer(t, keySet(k))
	v := fetchingVerifier(t, srv, newClock())
	tok := signES(t, k, goodClaims())
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Verify(context.Background(), tok); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := srv.Fetches.Load(); n != 1 {
		t.Errorf("fetches = %d for 16 concurrent first requests, want 1", n)
	}
}
