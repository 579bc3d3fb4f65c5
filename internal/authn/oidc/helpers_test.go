package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sekisho/sekisho/internal/authn/bearer/jwtcheck/jwttest"
	"github.com/sekisho/sekisho/internal/reqinfo"
	"github.com/sekisho/sekisho/internal/session"
	"github.com/sekisho/sekisho/internal/store"
)

// memTokens is an in-memory store.OIDCTokens.
type memTokens struct {
	mu   sync.Mutex
	rows map[string]store.OIDCTokenRecord
}

func (m *memTokens) PutOIDCTokens(_ context.Context, t store.OIDCTokenRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rows == nil {
		m.rows = map[string]store.OIDCTokenRecord{}
	}
	m.rows[t.SessionID] = t
	return nil
}

func (m *memTokens) GetOIDCTokens(_ context.Context, id string) (store.OIDCTokenRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.rows[id]
	if !ok {
		return t, fmt.Errorf("row: %w", store.ErrNotFound)
	}
	return t, nil
}

func (m *memTokens) DeleteOIDCTokens(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.rows, id)
	return nil
}

func (m *memTokens) PruneOIDCTokens(context.Context, time.Time) (int64, error) { return 0, nil }

func (m *memTokens) get(id string) (store.OIDCTokenRecord, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.rows[id]
	return t, ok
}

// clock is a settable test clock that starts at the real time.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// gateway is a minimal gateway around a Handler: the OIDC endpoints, and
// /app, which answers the session's identity as JSON (401 without one).
type gateway struct {
	*httptest.Server
	h      *Handler
	codec  *session.Codec
	tokens *memTokens
	clock  *clock
}

// newGateway starts the gateway's listener; call setup once the provider's
// issuer is known.
func newGateway(t *testing.T) *gateway {
	t.Helper()
	g := &gateway{tokens: &memTokens{}, clock: &clock{}}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(reqinfo.With(r.Context(), &reqinfo.Info{ID: "req-test"}))
		if strings.HasPrefix(r.URL.Path, PathPrefix) {
			g.h.Serve(w, r)
			return
		}
		s, err := g.codec.Read(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s)
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *gateway) setup(t testing.TB, p ProviderOptions, mod func(*Options)) {
	t.Helper()
	key := make([]byte, session.KeySize)
	rand.Read(key)
	kr, err := session.NewKeyring([][]byte{key})
	if err != nil {
		t.Fatal(err)
	}
	g.codec, err = session.NewCodec(session.Options{Keyring: kr, Now: g.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Providers: []ProviderOptions{p},
		Sessions:  g.codec, Keyring: kr, Tokens: g.tokens,
		Origin:  func(r *http.Request) (string, string) { return "http", r.Host },
		Timeout: 5 * time.Second, Now: g.clock.Now, Logger: slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&opts)
	}
	g.h, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
}

// browser is a client with a cookie jar that follows redirects.
func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 30 * time.Second}
}

// noFollow returns a copy of c that stops at the first redirect.
func noFollow(c *http.Client) *http.Client {
	cc := *c
	cc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cc
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// fakeOP is an in-process provider whose token endpoint returns whatever ID
// token the test mints, for the bad-token cases.
type fakeOP struct {
	*httptest.Server
	key   *ecdsa.PrivateKey
	mu    sync.Mutex
	token func() (int, string) // status and body of the token endpoint
}

func newFakeOP(t *testing.T) *fakeOP {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	op := &fakeOP{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": op.URL, "authorization_endpoint": op.URL + "/authorize", "token_endpoint": op.URL + "/token",
			"jwks_uri": op.URL + "/keys", "id_token_signing_alg_values_supported": []string{"ES256"},
			"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
		})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		op.mu.Lock()
		f := op.token
		op.mu.Unlock()
		status, body := f()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	})
	op.Server = httptest.NewServer(mux)
	t.Cleanup(op.Close)
	return op
}

// mint signs claims with the OP's key (ES256, kid k1).
func (op *fakeOP) mint(t *testing.T, claims map[string]any) string {
	t.Helper()
	return jwttest.Sign(t, jose.ES256, op.key, "k1", claims)
}

// respond makes the token endpoint answer with the ID token id.
func (op *fakeOP) respond(idToken string) {
	op.mu.Lock()
	defer op.mu.Unlock()
	op.token = func() (int, string) {
		b, _ := json.Marshal(map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": idToken})
		return http.StatusOK, string(b)
	}
}

func (op *fakeOP) respondRaw(status int, body string) {
	op.mu.Lock()
	defer op.mu.Unlock()
	op.token = func() (int, string) { return status, body }
}

// startFlow calls /start with the browser and returns the authorization
// request's query (state, nonce, ...), without following it, and the flow
// cookie the browser got.
func startFlow(t *testing.T, c *http.Client, g *gateway, provider, rd string) (url.Values, *http.Cookie) {
	t.Helper()
	resp, body := get(t, noFollow(c), g.URL+StartURL(provider, rd))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("start: status %d, want 302; body:\n%s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	var flow *http.Cookie
	for _, ck := range resp.Cookies() {
		if strings.Contains(ck.Name, "sekisho-oidc-") {
			flow = ck
		}
	}
	if flow == nil {
		t.Fatal("start set no flow cookie")
	}
	return loc.Query(), flow
}
