package apikey

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sekisho/sekisho/internal/authn"
	"github.com/sekisho/sekisho/internal/authn/authntest"
	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/store"
	"github.com/sekisho/sekisho/internal/testclock"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is the settable test clock.
type clock = testclock.Clock

// countingStore is the real SQLite store, counting the calls the hot path
// must not make, and able to fail on demand.
type countingStore struct {
	*store.SQLite
	gets, touches atomic.Int64
	fail          atomic.Bool
}

var errDown = errors.New("store down (test)")

func (s *countingStore) GetAPIKey(ctx context.Context, id string) (store.APIKey, error) {
	s.gets.Add(1)
	if s.fail.Load() {
		return store.APIKey{}, errDown
	}
	return s.SQLite.GetAPIKey(ctx, id)
}

func (s *countingStore) TouchAPIKeys(ctx context.Context, used map[string]time.Time) error {
	s.touches.Add(1)
	return s.SQLite.TouchAPIKeys(ctx, used)
}

func (s *countingStore) APIKeyChangesSince(ctx context.Context, seq int64) ([]store.APIKeyChange, error) {
	if s.fail.Load() {
		return nil, errDown
	}
	return s.SQLite.APIKeyChangesSince(ctx, seq)
}

func openStore(t testing.TB, path string, clk *clock) *countingStore {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "sekisho.db")
	}
	st, err := store.OpenSQLiteOptions(path, store.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &countingStore{SQLite: st}
}

func mustCreate(t testing.TB, st store.APIKeys, spec Spec) string {
	t.Helper()
	key, rec, err := Generate(rand.Reader, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateAPIKey(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return key
}

func newVerifier(t testing.TB, st Source, clk *clock, o Options) *Verifier {
	t.Helper()
	o.Source, o.Now = st, clk.Now
	v, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	return v
}

// request builds a request as the pipeline hands it to Authenticate, on
// route.
func request(method, route, path string, headers ...string) (*http.Request, *authntest.Call) {
	r := httptest.NewRequest(method, "http://gw.example"+path, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	c := &authntest.Call{Request: authn.Request{Route: route}}
	return authntest.With(r, c), c
}

// flipBit returns key with one bit of its secret flipped, re-encoded so it
// still parses: only the hash comparison can catch it.
func flipBit(t *testing.T, key string, bit int) string {
	tok, err := ParseToken(key)
	if err != nil {
		t.Fatal(err)
	}
	tok.Secret[bit/8] ^= 1 << (bit % 8)
	return tok.String()
}

// flipIDBit returns key with the low bit of one id character flipped, at
// the first position where the result is still in the id alphabet.
func flipIDBit(t *testing.T, key string) string {
	for i := len(Prefix); i < len(Prefix)+IDLen; i++ {
		if c := key[i] ^ 1; strings.IndexByte(idAlphabet, c) >= 0 {
			return key[:i] + string(c) + key[i+1:]
		}
	}
	t.Fatal("no id character can be flipped within the alphabet")
	return ""
}

func TestAuthenticate(t *testing.T) {
	clk := testclock.New(t0)
	st := openStore(t, "", clk)
	good := mustCreate(t, st, Spec{Name: "ci-bot", Routes: []string{"flowise-api", "dify-api"}, Methods: []string{"POST", "GET"},
		PathPrefixes: []string{"/api/v1"}, ExpiresAt: t0.Add(90 * 24 * time.Hour)})
	anyScope := mustCreate(t, st, Spec{Name: "wide", Routes: []string{"flowise-api"}})
	revoked := mustCreate(t, st, Spec{Name: "old-bot", Routes: []string{"flowise-api"}})
	if _, err := st.RevokeAPIKey(context.Background(), "old-bot"); err != nil {
		t.Fatal(err)
	}
	expired := mustCreate(t, st, Spec{Name: "short", Routes: []string{"flowise-api"}, ExpiresAt: t0.Add(time.Hour)})
	clk.Advance(2 * time.Hour)
	v := newVerifier(t, st, clk, Options{AuthorizationRoutes: []string{"dify-api"}})
	goodTok, _ := ParseToken(good)
	ciBot := identity.Identity{Kind: identity.APIKey, User: "apikey:ci-bot", Provider: "apikey", SessionID: goodTok.ID, AuthTime: clk.Now(),
		Scope: &identity.Scope{Name: "ci-bot", Routes: []string{"flowise-api", "dify-api"}, Methods: []string{"POST", "GET"}, PathPrefixes: []string{"/api/v1"}}}
	unknownID := Prefix + "zzzzzzzzzzzz" + good[len(Prefix)+IDLen:]

	const pa, az = HeaderProxyAuthorization, HeaderAuthorization
	for _, tc := range []struct {
		name          string
		method, route string
		path          string
		headers       []string
		want          identity.Identity
		wantErr       error
		errHas        []string
		wantCredHdr   string
	}{
		{"valid_in_proxy_authorization", "POST", "flowise-api", "/api/v1/prediction/x", []string{pa, "Bearer " + good}, ciBot, nil, nil, pa},
		{"valid_lower_case_scheme", "GET", "flowise-api", "/api/v1", []string{pa, "bearer " + good}, ciBot, nil, nil, pa},
		{"valid_in_authorization_on_route_allowing_it", "GET", "dify-api", "/api/v1/x", []string{az, "Bearer " + good}, ciBot, nil, nil, az},
		{"any_method_and_path_when_unscoped", "DELETE", "flowise-api", "/admin", []string{pa, "Bearer " + anyScope}, identity.Identity{Kind: identity.APIKey, User: "apikey:wide", Provider: "apikey", SessionID: anyScope[len(Prefix) : len(Prefix)+IDLen], AuthTime: clk.Now(), Scope: &identity.Scope{Name: "wide", Routes: []string{"flowise-api"}}}, nil, nil, pa},
		{"no_credential", "GET", "flowise-api", "/api/v1", nil, identity.Identity{}, nil, nil, ""},
		{"basic_proxy_credential_is_not_ours", "GET", "flowise-api", "/api/v1", []string{pa, "Basic dXNlcjpwYXNz"}, identity.Identity{}, nil, nil, ""},
		{"one_bit_flipped_first_bit", "POST", "flowise-api", "/api/v1", []string{pa, "Bearer " + flipBit(t, good, 0)}, identity.Identity{}, ErrWrongSecret, []string{"ci-bot"}, pa},
		{"one_bit_flipped_last_bit", "POST", "flowise-api", "/api/v1", []string{pa, "Bearer " + flipBit(t, good, 255)}, identity.Identity{}, ErrWrongSecret, nil, pa},
		{"one_bit_flipped_middle_bit", "POST", "flowise-api", "/api/v1", []string{pa, "Bearer " + flipBit(t, good, 131)}, identity.Identity{}, ErrWrongSecret, nil, pa},
		{"one_bit_flipped_in_id_text", "POST", "flowise-api", "/api/v1", []string{pa, "Bearer " + flipIDBit(t, good)}, identity.Identity{}, ErrUnknown, nil, pa},
		{"unknown_id", "POST", "flowise-api", "/api/v1", []string{pa, "Bearer " + unknownID}, identity.Identity{}, ErrUnknown, nil, pa},
		{"truncated_key", "POST", "flowise-api", "/api/v1", []string{pa, "Bearer " + good[:TokenLen-1]}, identity.Identity{}, ErrMalformed, []string{"63 characters"}, pa},
		{"revoked", "GET", "flowise-api", "/", []string{pa, "Bearer " + revoked}, identity.Identity{}, ErrRevoked, []string{"old-bot"}, pa},
		{"expired", "GET", "flowise-api", "/", []string{pa, "Bearer " + expired}, identity.Identity{}, ErrExpired, []string{"short"}, pa},
		// The key's scope is authz's to decide (authz's scope test): the
		// verifier admits the key and hands its scope on in the identity.
		{"out_of_scope_left_to_authz_other_route", "POST", "open-webui", "/api/v1", []string{pa, "Bearer " + good}, ciBot, nil, nil, pa},
		{"out_of_scope_left_to_authz_no_route_known_fails_closed", "POST", "", "/api/v1", []string{pa, "Bearer " + good}, ciBot, nil, nil, pa},
		{"out_of_scope_left_to_authz_method_not_allowed", "DELETE", "flowise-api", "/api/v1", []string{pa, "Bearer " + good}, ciBot, nil, nil, pa},
		{"out_of_scope_left_to_authz_method_not_allowed_head_is_not_get", "HEAD", "flowise-api", "/api/v1", []string{pa, "Bearer " + good}, ciBot, nil, nil, pa},
		{"out_of_scope_left_to_authz_path_outside_prefix", "POST", "flowise-api", "/admin", []string{pa, "Bearer " + good}, ciBot, nil, nil, pa},
		{"out_of_scope_left_to_authz_path_outside_prefix_sibling_segment", "POST", "flowise-api", "/api/v10/x", []string{pa, "Bearer " + good}, ciBot, nil, nil, pa},
		{"out_of_scope_left_to_authz_path_outside_prefix_unnormalised_fails_closed", "POST", "flowise-api", "", []string{pa, "Bearer " + good}, ciBot, nil, nil, pa},
		{"two_keys_in_one_request", "POST", "dify-api", "/api/v1", []string{pa, "Bearer " + good, az, "Bearer " + anyScope}, identity.Identity{}, ErrAmbiguous, nil, az},
		{"app_key_in_authorization_on_route_allowing_it_passes_through", "POST", "dify-api", "/api/v1", []string{az, "Bearer app-abc123"}, identity.Identity{}, nil, nil, ""},
		{"authorization_header_on_route_not_allowing_it_passes_through_untouched", "POST", "flowise-api", "/api/v1", []string{az, "Bearer sk-flowise-own-key"}, identity.Identity{}, nil, nil, ""},
		{"authorization_header_on_route_not_allowing_it_passes_through_untouched_even_a_sekisho_key", "POST", "flowise-api", "/api/v1", []string{az, "Bearer " + good}, identity.Identity{}, nil, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, info := request(tc.method, tc.route, tc.path, tc.headers...)
			before := r.Header.Clone()
			got, err := authntest.Authenticate(v, httptest.NewRecorder(), r)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Authenticate error = %v, want %v", err, tc.wantErr)
			}
			for _, s := range tc.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %s", err, s)
				}
			}
			if err != nil && strings.Contains(err.Error(), good[len(Prefix)+IDLen+1:]) {
				t.Errorf("error %q contains the secret", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("identity (-want +got):\n%s", diff)
			}
			if info.CredentialHeader != tc.wantCredHdr {
				t.Errorf("CredentialHeader = %q, want %q", info.CredentialHeader, tc.wantCredHdr)
			}
			if diff := cmp.Diff(before, r.Header); diff != "" {
				t.Errorf("Authenticate changed the request headers (-before +after):\n%s", diff)
			}
		})
	}
	if n := st.gets.Load(); n != 2 {
		t.Errorf("the table made %d store look-ups, want 2 (the two unknown ids; cache hits make none)", n)
	}
}

func TestAttacksOnTheCache(t *testing.T) {
	t.Run("random_id_spray_does_not_hit_store_per_request", func(t *testing.T) {
		clk := testclock.New(t0)
		st := openStore(t, "", clk)
		v := newVerifier(t, st, clk, Options{MissLookupsPerSecond: 5, MissBurst: 10})
		const requests = 2000
		for i := range requests {
			_, rec, err := Generate(rand.Reader, Spec{Name: "spray", Routes: []string{"app"}})
			if err != nil {
				t.Fatal(err)
			}
			tok := fixedKey(rec.ID, byte(i))
			r, _ := request("GET", "app", "/", HeaderProxyAuthorization, "Bearer "+tok.String())
			if id, err := authntest.Authenticate(v, nil, r); !errors.Is(err, ErrUnknown) || id.Authenticated() {
				t.Fatalf("spray request %d: %v, %v; want ErrUnknown", i, id, err)
			}
			if i%200 == 199 {
				clk.Advance(time.Second) // 10 s of spraying in all
			}
		}
		// Burst 10 plus 5 per second for the 9 seconds that passed.
		if n := st.gets.Load(); n > 10+5*9 {
			t.Fatalf("%d random ids cost %d store look-ups, want at most %d", requests, n, 10+5*9)
		}
		same := fixedKey("qqqqqqqqqqqq", 1).String()
		clk.Advance(time.Minute / 2) // refill the bucket
		before := st.gets.Load()
		for range 100 {
			r, _ := request("GET", "app", "/", HeaderProxyAuthorization, "Bearer "+same)
			authntest.Authenticate(v, nil, r)
		}
		if n := st.gets.Load() - before; n != 1 {
			t.Fatalf("one unknown id sent 100 times cost %d look-ups, want 1 (negative cache)", n)
		}
	})

	t.Run("revocation_seen_by_other_replica_within_poll", func(t *testing.T) {
		clk := testclock.New(t0)
		path := filepath.Join(t.TempDir(), "sekisho.db")
		replica, cli := openStore(t, path, clk), openStore(t, path, clk)
		key := mustCreate(t, cli, Spec{Name: "ci-bot", Routes: []string{"app"}})
		v := newVerifier(t, replica, clk, Options{})
		auth := func() error {
			r, _ := request("GET", "app", "/", HeaderProxyAuthorization, "Bearer "+key)
			_, err := authntest.Authenticate(v, nil, r)
			return err
		}
		if err := auth(); err != nil {
			t.Fatalf("before revoke: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); v.Poll(ctx, 20*time.Millisecond) }()
		defer func() { cancel(); <-done }()
		if _, err := cli.RevokeAPIKey(context.Background(), "ci-bot"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for err := auth(); !errors.Is(err, ErrRevoked); err = auth() {
			if time.Now().After(deadline) {
				t.Fatalf("replica still accepts the revoked key after 20s of 20ms polls: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if n := replica.gets.Load(); n != 1 {
			t.Errorf("replica made %d look-ups, want 1 (the poll re-reading the revoked key)", n)
		}
	})

	t.Run("store_outage_does_not_readmit_revoked_key", func(t *testing.T) {
		clk := testclock.New(t0)
		st := openStore(t, "", clk)
		key := mustCreate(t, st, Spec{Name: "ci-bot", Routes: []string{"app"}})
		v := newVerifier(t, st, clk, Options{})
		st.RevokeAPIKey(context.Background(), "ci-bot")
		if err := v.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		st.fail.Store(true)
		if err := v.Sync(context.Background()); !errors.Is(err, errDown) {
			t.Fatalf("Sync with the store down = %v, want the store's error", err)
		}
		r, _ := request("GET", "app", "/", HeaderProxyAuthorization, "Bearer "+key)
		if _, err := authntest.Authenticate(v, nil, r); !errors.Is(err, ErrRevoked) {
			t.Fatalf("after a failed poll: %v, want ErrRevoked", err)
		}
	})
}

func TestKeyCreatedAfterStartIsFound(t *testing.T) {
	clk := testclock.New(t0)
	path := filepath.Join(t.TempDir(), "sekisho.db")
	replica, cli := openStore(t, path, clk), openStore(t, path, clk)
	v := newVerifier(t, replica, clk, Options{})

	// An id first seen as unknown, then created: the poll lifts the
	// negative entry at once, not after NegativeTTL.
	tok := fixedKey("newkeynewkey", 3)
	r, _ := request("GET", "app", "/", HeaderProxyAuthorization, "Bearer "+tok.String())
	if _, err := authntest.Authenticate(v, nil, r); !errors.Is(err, ErrUnknown) {
		t.Fatalf("before create: %v, want ErrUnknown", err)
	}
	h := tok.Hash()
	if err := cli.CreateAPIKey(context.Background(), store.APIKey{ID: tok.ID, Name: "late", SecretHash: h[:], Routes: []string{"app"}}); err != nil {
		t.Fatal(err)
	}
	if err := v.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if id, err := authntest.Authenticate(v, nil, r); err != nil || id.User != "apikey:late" {
		t.Fatalf("after create and poll: %v, %v", id, err)
	}

	// A key created since the last poll is loaded on first use, once.
	key := mustCreate(t, cli, Spec{Name: "fresh", Routes: []string{"app"}})
	before := replica.gets.Load()
	for i := range 3 {
		r, _ := request("GET", "app", "/", HeaderProxyAuthorization, "Bearer "+key)
		if id, err := authntest.Authenticate(v, nil, r); err != nil || id.User != "apikey:fresh" {
			t.Fatalf("request %d with a key created since the poll: %v, %v", i, id, err)
		}
	}
	if n := replica.gets.Load() - before; n != 1 {
		t.Fatalf("3 requests with a new key made %d look-ups, want 1", n)
	}
}

func TestFlushRecordsLastUseInBatches(t *testing.T) {
	clk := testclock.New(t0)
	st := openStore(t, "", clk)
	key := mustCreate(t, st, Spec{Name: "ci-bot", Routes: []string{"app"}})
	mustCreate(t, st, Spec{Name: "idle", Routes: []string{"app"}})
	v := newVerifier(t, st, clk, Options{})
	ctx := context.Background()
	for range 50 {
		clk.Advance(time.Second)
		r, _ := request("GET", "app", "/", HeaderProxyAuthorization, "Bearer "+key)
		if _, err := authntest.Authenticate(v, nil, r); err != nil {
			t.Fatal(err)
		}
	}
	if n := st.touches.Load(); n != 0 {
		t.Fatalf("50 requests wrote last-used %d times before a flush, want 0", n)
	}
	if err := v.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := st.touches.Load(); n != 1 {
		t.Fatalf("two flushes wrote %d batches, want 1 (nothing new for the second)", n)
	}
	// A poll that re-reads the key must not lose its pending use.
	clk.Advance(time.Minute)
	r, _ := request("GET", "app", "/", HeaderProxyAuthorization, "Bearer "+key)
	authntest.Authenticate(v, nil, r)
	st.RevokeAPIKey(ctx, "idle")
	if err := v.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	keys, err := st.ListAPIKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]time.Time{}
	for _, k := range keys {
		got[k.Name] = k.LastUsedAt
	}
	want := map[string]time.Time{"ci-bot": t0.Add(50*time.Second + time.Minute), "idle": {}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("last used (-want +got):\n%s", diff)
	}
}

func TestNewRequiresSource(t *testing.T) {
	if _, err := New(Options{}); err == nil || !strings.Contains(err.Error(), "Source") {
		t.Fatalf("New without a Source = %v", err)
	}
}

// BenchmarkAuthenticate measures a cache hit: header scan, parse, SHA-256,
// map look-up, constant-time compare and the scope checks. Compare with
// internal/session's BenchmarkRead (the cookie path).
func BenchmarkAuthenticate(b *testing.B) {
	clk := testclock.New(t0)
	st := openStore(b, "", clk)
	key := mustCreate(b, st, Spec{Name: "ci-bot", Routes: []string{"app"}, Methods: []string{"POST"}, PathPrefixes: []string{"/api/v1"}})
	for i := range 1000 { // a realistic cache, not a single entry
		mustCreate(b, st, Spec{Name: "other-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26), Routes: []string{"app"}})
	}
	v := newVerifier(b, st, clk, Options{})
	r, _ := request("POST", "app", "/api/v1/prediction", HeaderProxyAuthorization, "Bearer "+key)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := authntest.Authenticate(v, nil, r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A reload that turns auth.authorization_header off for a route must stop
// the gateway reading (and consuming) keys in Authorization there at once:
// the header then belongs to the app again. The attack: a key that leaked
// into an app's own Authorization header keeps working through the
// gateway after the operator turned that off.
func TestForRoutesReadsAuthorizationOnlyOnItsRoutes(t *testing.T) {
	clk := testclock.New(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	st := openStore(t, "", clk)
	key := mustCreate(t, st, Spec{Name: "bot", Routes: []string{"dify-api", "flowise-api"}})
	v := newVerifier(t, st, clk, Options{AuthorizationRoutes: []string{"dify-api"}})
	before, after := v.ForRoutes([]string{"dify-api"}), v.ForRoutes([]string{"flowise-api"})
	for _, tc := range []struct {
		name string
		a    interface {
			Authenticate(http.ResponseWriter, *http.Request, authn.Request) (authn.Result, error)
		}
		route    string
		wantUser string
	}{
		{"generation_with_authorization_on_reads_it", before, "dify-api", "apikey:bot"},
		{"generation_with_it_turned_off_leaves_it_to_the_app", after, "dify-api", ""},
		{"generation_that_turned_it_on_for_another_route_reads_it_there", after, "flowise-api", "apikey:bot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, info := request("GET", tc.route, "/", HeaderAuthorization, "Bearer "+key)
			id, err := authntest.Authenticate(tc.a, httptest.NewRecorder(), r)
			if err != nil || id.User != tc.wantUser {
				t.Fatalf("Authenticate = %q, %v; want %q", id.User, err, tc.wantUser)
			}
			if (info.CredentialHeader != "") != (tc.wantUser != "") {
				t.Errorf("CredentialHeader = %q with user %q", info.CredentialHeader, id.User)
			}
		})
	}
}
