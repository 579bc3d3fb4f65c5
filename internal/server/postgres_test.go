package server_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/internal/apikey"
	"github.com/sekisho/sekisho/internal/testenv"
	"github.com/sekisho/sekisho/internal/testenv/pgtest"
)

// Two replicas with separate data dirs on one Postgres: an account added
// through one is there on the other, a session signed in on one is valid
// on the other, and a sign-out or a revoked key on one holds on the other
// within the revocation poll.
func TestTwoReplicasShareOnePostgres(t *testing.T) {
	t.Setenv("SEKISHO_TEST_DATABASE_URL", pgtest.Start(t))
	key := make([]byte, 32)
	rand.Read(key)
	t.Setenv("SEKISHO_TEST_SESSION_KEY", base64.StdEncoding.EncodeToString(key))
	cfg := `version: 1
store: {driver: postgres, url: env:SEKISHO_TEST_DATABASE_URL}
session: {keys: [env:SEKISHO_TEST_SESSION_KEY]}
pools: [{name: app, urls: ["{{UPSTREAM}}"]}]
routes:
  - {name: app, host: "*", path: /, pool: app, policy: {allow_authenticated: true}}
`
	a, b := testenv.Start(t, cfg), testenv.Start(t, cfg)
	if a.DataDir == b.DataDir {
		t.Fatal("the replicas share a data dir")
	}
	a.AddUser("alice", pw, "alice@example.com")
	cb := b.Login("alice", pw) // the account added through A signs in on B
	ub, _ := url.Parse(b.URL)
	ua, _ := url.Parse(a.URL)
	ca := a.Client()
	ca.Jar.SetCookies(ua, cb.Jar.Cookies(ub))
	if status, _, _ := a.Get(ca, "/x"); status != 200 {
		t.Fatalf("B's session on A = %d, want 200", status)
	}

	tok, rec, err := apikey.Generate(rand.Reader, apikey.Spec{Name: "ci", Routes: []string{"app"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Store().CreateAPIKey(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, b, 200, "/x", "Proxy-Authorization", "Bearer "+tok)

	// Sign out on A; the same cookie is refused on B.
	status, body, _ := a.Get(ca, "/.sekisho/logout")
	m := strings.SplitN(body, `name="csrf" value="`, 2)
	if status != 200 || len(m) != 2 {
		t.Fatalf("logout page: %d", status)
	}
	res, err := ca.PostForm(a.URL+"/.sekisho/logout", url.Values{"csrf": {m[1][:strings.IndexByte(m[1], '"')]}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if _, err := a.Store().RevokeAPIKey(context.Background(), "ci"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		s1, _, _ := b.Get(cb, "/x")
		s2, _, _ := b.Get(b.Client(), "/x", "Proxy-Authorization", "Bearer "+tok)
		if s1 == http.StatusFound && s2 == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after sign-out and revocation on A, B answers the session %d and the key %d, want 302 and 401", s1, s2)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
